package stage02

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/sysdesign-course/course/tools/internal/bench"
	"github.com/sysdesign-course/course/tools/internal/load"
	"github.com/sysdesign-course/course/tools/internal/report"
)

// BenchDefaults take about 40 s.
var BenchDefaults = bench.Params{Workers: 32, Rounds: 4, Warmup: time.Second, Round: 4 * time.Second}

// Bench measures GET /users/:id with ids drawn uniformly from all users and from the hot
// set, in alternating rounds, and the pool's statistics over each: the baseline that the
// cache stage is compared with. metrics is the server's /metrics, on its admin listener.
func Bench(ctx context.Context, p bench.Params, target, metrics string) (report.Table, []report.Bars, error) {
	client := load.NewClient(p.Workers, 5*time.Second)
	type mode struct {
		m     *bench.Measurement
		ids   int
		stats map[string]float64 // pool counters summed over this mode's rounds
	}
	modes := []*mode{
		{m: bench.NewMeasurement(fmt.Sprintf("uniform over %d users", Users)), ids: Users, stats: map[string]float64{}},
		{m: bench.NewMeasurement(fmt.Sprintf("hot set of %d users", Hot)), ids: Hot, stats: map[string]float64{}},
	}
	counters := []string{"db_pool_acquires_total", "db_pool_empty_acquires_total", "db_pool_acquire_seconds_total", "db_pool_new_conns_total"}
	for r := range p.Rounds {
		for i := range modes {
			md := modes[(i+r)%2] // alternate which goes first
			op := func(ctx context.Context) (string, error) {
				return load.Get(client, fmt.Sprintf("%s/users/%d", target, rand.IntN(md.ids)+1))(ctx)
			}
			before, err := bench.Scrape(ctx, client, metrics)
			if err != nil {
				return report.Table{}, nil, err
			}
			if _, err := bench.Round(ctx, md.m, op, p.Workers, p.Warmup, p.Round); err != nil {
				return report.Table{}, nil, err
			}
			after, err := bench.Scrape(ctx, client, metrics)
			if err != nil {
				return report.Table{}, nil, err
			}
			for _, c := range counters {
				md.stats[c] += after[c] - before[c] // includes the warm-up: the pool's view of both
			}
			md.stats["db_pool_max_conns"] = after["db_pool_max_conns"]
		}
	}
	t := report.Table{
		Title:   fmt.Sprintf("GET /users/:id, %d keep-alive connections, %d alternating rounds of %s per mode, no cache", p.Workers, p.Rounds, p.Round),
		Columns: append(append([]string{}, bench.Columns...), "pool waits", "mean acquire ms"),
	}
	var labels []string
	var ms []*bench.Measurement
	for _, md := range modes {
		acq := md.stats["db_pool_acquires_total"]
		wait := 0.0
		if acq > 0 {
			wait = md.stats["db_pool_acquire_seconds_total"] / acq * 1000
		}
		t.Rows = append(t.Rows, append(bench.Row(md.m),
			fmt.Sprintf("%.1f%%", 100*md.stats["db_pool_empty_acquires_total"]/max(acq, 1)), fmt.Sprintf("%.3f", wait)))
		labels, ms = append(labels, md.m.Name), append(ms, md.m)
	}
	t.Notes = []string{
		fmt.Sprintf("pool: at most %.0f connections per server (DB_MAX_CONNS); pool waits = acquires that found no idle connection and had to wait or dial; mean acquire = time a request waited for a connection.", modes[0].stats["db_pool_max_conns"]),
		"10,000 users fit in Postgres' shared buffers, so hot and uniform reads cost about the same here: what stage 05's cache saves is the round trip and the query, not disk reads.",
		"generator cores: CPU the load generator itself used; the server and Postgres share the machine's other cores.",
	}
	return t, bench.Charts(labels, ms), nil
}
