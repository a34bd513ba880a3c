package stage07

import (
	"context"
	"fmt"
	"time"

	"github.com/sysdesign-course/course/tools/internal/check"
	"github.com/sysdesign-course/course/tools/internal/load"
	"github.com/sysdesign-course/course/tools/internal/report"
)

// BenchStack is what the bench needs beyond the check's Stack.
type BenchStack interface {
	Stack
	Scale(ctx context.Context, service string, n int) error
	Memory(ctx context.Context, service string) (uint64, error)
}

// BenchParams size stage 07's bench.
type BenchParams struct {
	Light      time.Duration // each RPC latency series
	Burst      time.Duration // each /ping-under-load series
	Workers    []int         // worker counts for jobs/s
	JobsPerCPU int           // jobs per worker in each jobs/s run
}

// BenchDefaults take about two minutes.
var BenchDefaults = BenchParams{Light: 5 * time.Second, Burst: 8 * time.Second, Workers: []int{1, 2, 4}, JobsPerCPU: 10}

// Bench measures RPC latency, /ping under a burst of prime checks with the queue (through
// the VIP) beside a server that computes them itself (localURL, stage 04 style), jobs/s
// with 1, 2 and 4 workers, and the broker's CPU and memory over the run.
func Bench(ctx context.Context, bp BenchParams, p Params, s BenchStack, target, localURL string) (report.Table, []report.Bars, error) {
	start := time.Now()
	brokerCPU0, err := s.CPUTime(ctx, p.Broker)
	if err != nil {
		return report.Table{}, nil, err
	}
	e := &check.Env{Target: target, Timeline: report.NewTimeline(250 * time.Millisecond), Client: load.NewClient(64, 10*time.Second)}
	t := report.Table{Title: "stage 07: RabbitMQ request/reply and jobs", Columns: []string{"measure", "p50", "p99", "notes"}}

	// RPC latency, from each request's intended send time, at a rate the workers keep up with.
	for _, n := range []int64{97, p.HeavyN} {
		client := load.NewClient(16, p.Deadline+time.Second)
		res, err := load.Run(ctx, load.Options{Name: fmt.Sprintf("rpc-%d", n), Workers: 16, Duration: bp.Light, Rate: 5, Timeline: e.Timeline},
			load.Get(client, fmt.Sprintf("%s/is-prime/%d", target, n)))
		if err != nil {
			return t, nil, err
		}
		t.Rows = append(t.Rows, []string{fmt.Sprintf("GET /is-prime/%d at 5/s", n), ms(res.Latency.ValueAtQuantile(50)), ms(res.Latency.ValueAtQuantile(99)),
			fmt.Sprintf("%d requests, %d failed", res.Latency.TotalCount(), failures(res))})
	}

	// /ping beside a burst: the same rate, first to the workers, then to a computing server.
	var took time.Duration
	if r, _, err := isPrime(ctx, e, "rpc", p.HeavyN); err == nil {
		took = time.Duration(r.TookMS) * time.Millisecond
	}
	workers, err := s.Replicas(ctx, p.Workers)
	if err != nil || took <= 0 {
		return t, nil, fmt.Errorf("sizing the burst: %d workers, one check took %s (%v)", len(workers), took, err)
	}
	burstRate := min(1.5*float64(len(workers))*p.WorkerCPUs*float64(time.Second)/float64(took), 60)
	queued, err := burst(ctx, e, p, burstRate, bp.Burst)
	if err != nil {
		return t, nil, err
	}
	local, err := burst(ctx, &check.Env{Target: localURL, Timeline: e.Timeline, Client: e.Client}, p, burstRate, bp.Burst)
	if err != nil {
		return t, nil, err
	}
	for _, x := range []struct {
		name string
		r    burstResult
	}{{"queue: workers compute", queued}, {"local: the server computes", local}} {
		t.Rows = append(t.Rows, []string{fmt.Sprintf("/ping at 50/s beside %.0f is-prime/s, %s", burstRate, x.name), "", check.MS(x.r.ping99),
			fmt.Sprintf("%d pings, %d failed; prime checks: %d answered, %d 504, %d 503, %d other", x.r.pings, x.r.pingErrors, x.r.answered, x.r.timedOut, x.r.refused, x.r.other)})
	}

	// Jobs per second by worker count, against the ideal (n times one worker).
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		_ = s.Scale(cctx, p.Workers, len(workers))
	}()
	var perSec []float64
	var labels []string
	for _, n := range bp.Workers {
		if err := s.Scale(ctx, p.Workers, n); err != nil {
			return t, nil, err
		}
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := s.WaitHealthy(wctx, p.Workers)
		cancel()
		if err != nil {
			return t, nil, err
		}
		th, err := rate(ctx, e, p, s, bp.JobsPerCPU*n)
		if err != nil {
			return t, nil, err
		}
		r := th.perSec
		perSec, labels = append(perSec, r), append(labels, fmt.Sprintf("%d workers", n))
		ideal := float64(n) * perSec[0] / float64(bp.Workers[0])
		t.Rows = append(t.Rows, []string{fmt.Sprintf("jobs/s with %d worker(s) at %.1f CPU", n, p.WorkerCPUs), "", "",
			fmt.Sprintf("%.1f jobs/s, x%.2f of ideal; workers used %.0f%% of their CPU limits", r, r/ideal, 100*th.cpuShare(p, n))})
	}

	brokerCPU1, _ := s.CPUTime(ctx, p.Broker)
	mem, _ := s.Memory(ctx, p.Broker)
	t.Notes = append(t.Notes,
		fmt.Sprintf("/ping p99 beside the burst: %s with the queue, %s with the server computing (x%.1f)", check.MS(queued.ping99), check.MS(local.ping99), float64(local.ping99)/float64(max(queued.ping99, time.Microsecond))),
		fmt.Sprintf("broker: %.2f CPU on average over the bench (%s), %.0f MiB of memory at the end", (brokerCPU1-brokerCPU0).Seconds()/time.Since(start).Seconds(), time.Since(start).Round(time.Second), float64(mem)/(1<<20)),
		"latencies count from each request's intended send time (open loop); jobs/s counts from the first job finished to the last")
	bars := []report.Bars{
		{Title: "/ping p99 beside a burst of prime checks", Unit: "ms", Labels: []string{"queue (workers)", "local (server)"},
			Groups: []report.BarGroup{{Name: "p99", Values: []float64{report.MS(queued.ping99.Microseconds()), report.MS(local.ping99.Microseconds())}}}},
		{Title: "jobs per second", Unit: "jobs/s", Labels: labels, Groups: []report.BarGroup{{Name: "jobs/s", Values: perSec}}},
	}
	return t, bars, nil
}

func ms(us int64) string { return check.MS(time.Duration(us) * time.Microsecond) }

func failures(r *load.Result) int64 {
	var n int64
	for _, c := range r.Errors {
		n += c
	}
	return n
}
