package stage06

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/sysdesign-course/course/tools/internal/bench"
	"github.com/sysdesign-course/course/tools/internal/check"
	"github.com/sysdesign-course/course/tools/internal/load"
	"github.com/sysdesign-course/course/tools/internal/report"
)

// BenchParams size stage 06's bench: failovers, then HAProxy beside nginx.
type BenchParams struct {
	bench.Params
	Kills int // failovers measured, each a SIGKILL of the node holding the VIP
}

// BenchDefaults take about two minutes.
var BenchDefaults = BenchParams{Params: bench.Params{Workers: 32, Rounds: 3, Warmup: time.Second, Round: 3 * time.Second}, Kills: 5}

// failover is one kill's numbers.
type failover struct {
	moved, gap              time.Duration
	sent, failed, retryFail int
	why                     map[string]int // first attempts' failures by kind
}

// Bench kills the VIP's holder bp.Kills times under load (starting it again in between)
// and measures how long the VIP took to move, how long no request succeeded, and how
// many requests failed, for a client that gives up at once and for one that retries once.
// Then it sends the same reads through the VIP (HAProxy) and through nginx over the same
// replicas, in alternating rounds.
func Bench(ctx context.Context, bp BenchParams, p Params, s Stack, target, nginxURL string) (report.Table, []report.Bars, error) {
	e := &check.Env{Target: target, Timeline: report.NewTimeline(250 * time.Millisecond), Client: load.NewClient(16, 5*time.Second)}
	var runs []failover
	for range bp.Kills {
		f, err := failoverOnce(ctx, e, p, s)
		if err != nil {
			return report.Table{}, nil, err
		}
		runs = append(runs, f)
	}

	client := load.NewClient(bp.Workers, 5*time.Second)
	users := func(base string) load.Op {
		return func(ctx context.Context) (string, error) {
			return load.Get(client, fmt.Sprintf("%s/users/%d", base, rand.IntN(100)+1))(ctx)
		}
	}
	haproxy, nginx := bench.NewMeasurement("HAProxy (the VIP)"), bench.NewMeasurement("nginx (stage 03's config)")
	pair := []struct {
		m  *bench.Measurement
		op load.Op
	}{{haproxy, users(target)}, {nginx, users(nginxURL)}}
	for r := range bp.Rounds {
		for i := range pair {
			x := pair[(i+r)%2]
			if _, err := bench.Round(ctx, x.m, x.op, bp.Workers, bp.Warmup, bp.Round); err != nil {
				return report.Table{}, nil, err
			}
		}
	}

	stat := func(f func(failover) time.Duration) (p50, worst time.Duration) {
		var xs []time.Duration
		for _, r := range runs {
			xs = append(xs, f(r))
		}
		slices.Sort(xs)
		return xs[len(xs)/2], xs[len(xs)-1]
	}
	moved50, movedMax := stat(func(f failover) time.Duration { return f.moved })
	gap50, gapMax := stat(func(f failover) time.Duration { return f.gap })
	sent, failed, retryFail := 0, 0, 0
	why := map[string]int{}
	for _, r := range runs {
		sent, failed, retryFail = sent+r.sent, failed+r.failed, retryFail+r.retryFail
		for k, n := range r.why {
			why[k] += n
		}
	}
	verdict := "meets"
	if movedMax > time.Second {
		verdict = "misses"
	}
	t := report.Table{
		Title:   fmt.Sprintf("GET /users/:id (hot set), %d keep-alive connections, %d alternating rounds of %s per target; then %d failovers", bp.Workers, bp.Rounds, bp.Round, bp.Kills),
		Columns: bench.Columns,
		Rows:    [][]string{bench.Row(haproxy), bench.Row(nginx)},
		Notes: []string{
			fmt.Sprintf("HAProxy / nginx throughput x%.2f, %+.2f ms at p50, %+.2f ms at p99 (both over the same replicas; HAProxy is reached through the VIP)",
				haproxy.ReqPerSec()/nginx.ReqPerSec(), haproxy.P(50)-nginx.P(50), haproxy.P(99)-nginx.P(99)),
			fmt.Sprintf("VIP moved after SIGKILL of its holder: p50 %s, max %s over %d kills (target at most 1s: %s)", check.MS(moved50), check.MS(movedMax), len(runs), verdict),
			fmt.Sprintf("no request through the VIP succeeded for: p50 %s, max %s", check.MS(gap50), check.MS(gapMax)),
			fmt.Sprintf("failed requests per failover, at %.0f requests/s on fresh connections: %.1f giving up at once (%s), %.1f retrying once after %s (%d requests in all)",
				p.Rate, float64(failed)/float64(len(runs)), check.Counts(why), float64(retryFail)/float64(len(runs)), retryAfter, sent),
		},
	}
	var moves, gaps []float64
	labels := make([]string, len(runs))
	for i, r := range runs {
		labels[i] = fmt.Sprintf("kill %d", i+1)
		moves, gaps = append(moves, report.MS(r.moved.Microseconds())), append(gaps, report.MS(r.gap.Microseconds()))
	}
	bars := append(bench.Charts([]string{"HAProxy", "nginx"}, []*bench.Measurement{haproxy, nginx}),
		report.Bars{Title: "failovers", Unit: "ms", Labels: labels, Groups: []report.BarGroup{{Name: "VIP moved", Values: moves}, {Name: "no success", Values: gaps}}})
	return t, bars, nil
}

// failoverOnce kills the VIP's holder under load, measures, and starts it again, leaving
// the pair as it found it (with preemption the old master takes the VIP back).
func failoverOnce(ctx context.Context, e *check.Env, p Params, s Stack) (failover, error) {
	h, ok := stable(ctx, p, s, p.Quiet, 30*time.Second)
	if !ok {
		return failover{}, fmt.Errorf("the VIP did not settle on one node: holders %v", h)
	}
	master, backup := h[0], other(p, h[0])
	var killed, moved time.Time
	samples, err := underLoadRetrying(ctx, e, p, 1, 2*time.Second, 3*time.Second, func() error {
		killed = time.Now()
		if err := s.Kill(ctx, master); err != nil {
			return err
		}
		_, moved, _ = awaitHolders(ctx, p, s, 10*time.Second, func(h []string) bool { return slices.Equal(h, []string{backup}) })
		return nil
	})
	if err != nil {
		return failover{}, fmt.Errorf("killing %s: %w", master, err)
	}
	if err := s.Start(ctx, master); err != nil {
		return failover{}, err
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := s.WaitHealthy(wctx, master); err != nil {
		return failover{}, err
	}
	if moved.IsZero() {
		return failover{}, fmt.Errorf("the VIP did not move to %s within 10s of killing %s", backup, master)
	}
	f := failover{moved: moved.Sub(killed), why: map[string]int{}}
	f.failed, f.sent, f.gap = gap(samples, killed)
	for _, x := range samples {
		if x.err != nil {
			f.why[load.Classify(x.err)]++
		}
		if x.final != nil {
			f.retryFail++
		}
	}
	return f, nil
}
