package stage01

import (
	"context"
	"fmt"
	"time"

	"github.com/sysdesign-course/course/tools/internal/bench"
	"github.com/sysdesign-course/course/tools/internal/load"
	"github.com/sysdesign-course/course/tools/internal/report"
)

// BenchDefaults take about 50 s. This machine's throughput drifts by tens of percent from
// second to second, so short alternating rounds and the median of per-round ratios say
// more than one long run each.
var BenchDefaults = bench.Params{Workers: 32, Rounds: 6, Warmup: time.Second, Round: 3 * time.Second}

// Bench measures GET /ping on the echo server and on the plain net/http baseline, in
// alternating rounds so that any drift of the machine hits both alike.
func Bench(ctx context.Context, p bench.Params, serverURL, baselineURL string, cpus float64) (report.Table, []report.Bars, error) {
	echo, std := bench.NewMeasurement("echo (server)"), bench.NewMeasurement("net/http (nethttp)")
	client := load.NewClient(p.Workers, 5*time.Second)
	ratios := make([]float64, 0, p.Rounds)
	for r := range p.Rounds {
		pair := []*bench.Measurement{echo, std}
		urls := []string{serverURL, baselineURL}
		if r%2 == 1 {
			pair[0], pair[1], urls[0], urls[1] = pair[1], pair[0], urls[1], urls[0]
		}
		var rate [2]float64
		for i, m := range pair {
			rps, err := bench.Round(ctx, m, load.Get(client, urls[i]+"/ping"), p.Workers, p.Warmup, p.Round)
			if err != nil {
				return report.Table{}, nil, err
			}
			rate[i] = rps
		}
		if r%2 == 1 {
			rate[0], rate[1] = rate[1], rate[0]
		}
		ratios = append(ratios, rate[0]/rate[1])
	}
	// Latency at a fixed rate near capacity, counted from each request's intended send time
	// and from its actual send: the gap is what a closed-loop generator hides (the stalls
	// of a CPU-limited server delay every request due meanwhile, not one per worker).
	paced := 0.8 * echo.ReqPerSec()
	open, err := load.Run(ctx, load.Options{Workers: p.Workers, Rate: paced, Duration: p.Round}, load.Get(client, serverURL+"/ping"))
	if err != nil {
		return report.Table{}, nil, err
	}
	ratio := bench.Median(ratios)
	verdict := "meets"
	if ratio < 0.9 {
		verdict = "misses"
	}
	limit := "no CPU limit"
	if cpus > 0 {
		limit = fmt.Sprintf("each server limited to %.1f CPU", cpus)
	}
	t := report.Table{
		Title:   fmt.Sprintf("GET /ping, %d keep-alive connections, %d alternating rounds of %s per server, %s", p.Workers, p.Rounds, p.Round, limit),
		Columns: bench.Columns,
		Rows:    [][]string{bench.Row(echo), bench.Row(std)},
		Notes: []string{
			fmt.Sprintf("echo / net/http throughput: median of %d per-round ratios %.2f (rounds: %s; target at least 0.90: %s)", len(ratios), ratio, bench.Floats(ratios), verdict),
			fmt.Sprintf("echo adds %.3f ms at p50 and %.3f ms at p99", echo.P(50)-std.P(50), echo.P(99)-std.P(99)),
			"generator cores: CPU the load generator itself used; close to the cores left over by the servers' limit, it was the bottleneck, not the server.",
			fmt.Sprintf("echo at a fixed %.0f req/s (80%% of its throughput) for %s, open loop: p99 %.2f ms from each request's intended send time, %.2f ms from its actual send (what a closed-loop generator would report); p99.9 %.2f vs %.2f ms",
				paced, p.Round, report.MS(open.Latency.ValueAtQuantile(99)), report.MS(open.Sent.ValueAtQuantile(99)),
				report.MS(open.Latency.ValueAtQuantile(99.9)), report.MS(open.Sent.ValueAtQuantile(99.9))),
		},
	}
	return t, bench.Charts([]string{"echo", "net/http"}, []*bench.Measurement{echo, std}), nil
}
