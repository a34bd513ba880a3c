package stage03

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/sysdesign-course/course/tools/internal/bench"
	"github.com/sysdesign-course/course/tools/internal/fault"
	"github.com/sysdesign-course/course/tools/internal/load"
	"github.com/sysdesign-course/course/tools/internal/report"
)

// BenchDefaults take about a minute.
var BenchDefaults = bench.Params{Workers: 32, Rounds: 3, Warmup: time.Second, Round: 3 * time.Second}

// Bench sends the same load (GET /users/:id over a hot set) straight to one replica and
// through nginx, first with three replicas behind nginx, then with one. Rounds alternate
// within each phase. nginx with one replica against that same replica direct is the
// proxy's own cost; nginx with three against nginx with one is what replicas add on
// this machine's cores.
func Bench(ctx context.Context, p bench.Params, c fault.Cluster, proxyURL string) (report.Table, []report.Bars, error) {
	client := load.NewClient(p.Workers, 5*time.Second)
	users := func(base string) load.Op {
		return func(ctx context.Context) (string, error) {
			return load.Get(client, fmt.Sprintf("%s/users/%d", base, rand.IntN(100)+1))(ctx)
		}
	}
	replicas, err := c.Replicas(ctx, "server")
	if err != nil {
		return report.Table{}, nil, err
	}
	defer func() { // leave the stack as it was
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 60*time.Second)
		defer cancel()
		_ = c.Scale(cctx, "server", len(replicas))
		_ = c.WaitHealthy(cctx, "server")
		_ = c.Exec(cctx, "nginx", "nginx", "-s", "reload")
	}()
	phase := func(n int) (direct, proxied *bench.Measurement, err error) {
		if err := c.Scale(ctx, "server", n); err != nil {
			return nil, nil, err
		}
		wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		if err := c.WaitHealthy(wctx, "server"); err != nil {
			return nil, nil, err
		}
		if err := c.Exec(ctx, "nginx", "nginx", "-s", "reload"); err != nil {
			return nil, nil, err
		}
		now, err := c.Replicas(ctx, "server")
		if err != nil {
			return nil, nil, err
		}
		direct = bench.NewMeasurement(fmt.Sprintf("direct to 1 replica (%d running)", n))
		proxied = bench.NewMeasurement(fmt.Sprintf("nginx over %d replica(s)", n))
		pair := []struct {
			m  *bench.Measurement
			op load.Op
		}{{direct, users("http://" + now[0] + ":8080")}, {proxied, users(proxyURL)}}
		for r := range p.Rounds {
			for i := range pair {
				x := pair[(i+r)%2]
				if _, err := bench.Round(ctx, x.m, x.op, p.Workers, p.Warmup, p.Round); err != nil {
					return nil, nil, err
				}
			}
		}
		return direct, proxied, nil
	}
	direct3, nginx3, err := phase(max(len(replicas), 3))
	if err != nil {
		return report.Table{}, nil, err
	}
	direct1, nginx1, err := phase(1)
	if err != nil {
		return report.Table{}, nil, err
	}
	t := report.Table{
		Title:   fmt.Sprintf("GET /users/:id (hot set), %d keep-alive connections, %d alternating rounds of %s per target", p.Workers, p.Rounds, p.Round),
		Columns: bench.Columns,
		Rows:    [][]string{bench.Row(direct3), bench.Row(nginx3), bench.Row(direct1), bench.Row(nginx1)},
		Notes: []string{
			fmt.Sprintf("nginx's own cost (1 replica, proxied vs direct): throughput x%.2f, +%.2f ms at p50, +%.2f ms at p99",
				nginx1.ReqPerSec()/direct1.ReqPerSec(), nginx1.P(50)-direct1.P(50), nginx1.P(99)-direct1.P(99)),
			fmt.Sprintf("3 replicas vs 1 through nginx: throughput x%.2f (every replica, Postgres, nginx and the load generator share this machine's %s)",
				nginx3.ReqPerSec()/nginx1.ReqPerSec(), "2 cores"),
			"generator cores: CPU the load generator itself used.",
		},
	}
	return t, bench.Charts([]string{"direct (3 up)", "nginx x3", "direct (1 up)", "nginx x1"},
		[]*bench.Measurement{direct3, nginx3, direct1, nginx1}), nil
}
