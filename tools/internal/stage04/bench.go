package stage04

import (
	"context"
	"fmt"
	"time"

	"github.com/sysdesign-course/course/tools/internal/bench"
	"github.com/sysdesign-course/course/tools/internal/fault"
	"github.com/sysdesign-course/course/tools/internal/load"
	"github.com/sysdesign-course/course/tools/internal/report"
)

// BenchParams size `make stage 4 bench`: the /ping rounds, then the is-prime ones.
type BenchParams struct {
	bench.Params
	PrimeClients  int
	PrimeRequests int // per is-prime round; counted, not timed (see bench.RoundOf)
}

// BenchDefaults take about two minutes.
var BenchDefaults = BenchParams{Params: bench.Params{Workers: 32, Rounds: 3, Warmup: time.Second, Round: 4 * time.Second},
	PrimeClients: 8, PrimeRequests: 48}

// Bench compares, in one run: our balancer and nginx in front of the same two servers
// (GET /ping: the proxies' own cost), and one server against two on is-prime (GET
// /is-prime/N through our balancer: the scaling the CPU limits allow).
func Bench(ctx context.Context, bp BenchParams, p Params, c fault.Cluster, lbURL, nginxURL string) (report.Table, []report.Bars, error) {
	client := load.NewClient(bp.Workers, 10*time.Second)
	ours, theirs := bench.NewMeasurement("our balancer, /ping"), bench.NewMeasurement("nginx, /ping")
	for r := range bp.Rounds {
		pair := []struct {
			m   *bench.Measurement
			url string
		}{{ours, lbURL}, {theirs, nginxURL}}
		for i := range pair {
			x := pair[(i+r)%2]
			if _, err := bench.Round(ctx, x.m, load.Get(client, x.url+"/ping"), bp.Workers, bp.Warmup, bp.Round); err != nil {
				return report.Table{}, nil, err
			}
		}
	}

	hosts, err := c.Replicas(ctx, p.Service)
	if err != nil || len(hosts) != 2 {
		return report.Table{}, nil, fmt.Errorf("need two servers, found %d (%v)", len(hosts), err)
	}
	prime := load.Get(client, fmt.Sprintf("%s/is-prime/%d", lbURL, p.N))
	two, one := bench.NewMeasurement("2 servers, is-prime"), bench.NewMeasurement("1 server, is-prime")
	for range bp.Rounds {
		if _, err := bench.RoundOf(ctx, two, prime, bp.PrimeClients, bp.PrimeClients, bp.PrimeRequests, time.Minute); err != nil {
			return report.Table{}, nil, err
		}
		// A graceful stop: the server deregisters, so the balancer sends everything to the other.
		if err := c.StopReplica(ctx, p.Service, hosts[1]); err != nil {
			return report.Table{}, nil, err
		}
		if _, err := bench.RoundOf(ctx, one, prime, bp.PrimeClients, bp.PrimeClients, bp.PrimeRequests, time.Minute); err != nil {
			return report.Table{}, nil, err
		}
		if err := c.Start(ctx, p.Service); err != nil {
			return report.Table{}, nil, err
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := c.WaitHealthy(wctx, p.Service)
		cancel()
		if err != nil {
			return report.Table{}, nil, err
		}
		time.Sleep(time.Second) // registered and checked up by the balancer
	}
	eff := two.ReqPerSec() / (2 * one.ReqPerSec())
	verdict := "meets"
	if eff < 0.9 {
		verdict = "misses"
	}
	t := report.Table{
		Title:   fmt.Sprintf("%d keep-alive connections on /ping, %d clients on is-prime/%d; %d alternating rounds (%s each on /ping, %d requests each on is-prime); servers limited to %.1f CPU each", bp.Workers, bp.PrimeClients, p.N, bp.Rounds, bp.Round, bp.PrimeRequests, p.ServerCPUs),
		Columns: bench.Columns,
		Rows:    [][]string{bench.Row(ours), bench.Row(theirs), bench.Row(one), bench.Row(two)},
		Notes: []string{
			fmt.Sprintf("our balancer vs nginx: throughput x%.2f, %+.2f ms at p50, %+.2f ms at p99", ours.ReqPerSec()/theirs.ReqPerSec(), ours.P(50)-theirs.P(50), ours.P(99)-theirs.P(99)),
			fmt.Sprintf("two servers vs one on is-prime: %.1f vs %.1f req/s = %.0f%% of ideal scaling (target at least 90%%: %s; the original Flask project reached 80%%: 20.2 -> 32.4 req/s)",
				two.ReqPerSec(), one.ReqPerSec(), eff*100, verdict),
			"generator cores: CPU the load generator itself used.",
		},
	}
	labels := []string{"ours /ping", "nginx /ping", "1 server prime", "2 servers prime"}
	ms := []*bench.Measurement{ours, theirs, one, two}
	var rps, p50, p99 []float64
	for _, m := range ms {
		rps, p50, p99 = append(rps, m.ReqPerSec()), append(p50, m.P(50)), append(p99, m.P(99))
	}
	bars := []report.Bars{
		{Title: "/ping through each proxy", Unit: "req/s", Labels: labels[:2], Groups: []report.BarGroup{{Name: "req/s", Values: rps[:2]}}},
		{Title: "is-prime, 1 vs 2 servers", Unit: "req/s", Labels: labels[2:], Groups: []report.BarGroup{{Name: "req/s", Values: rps[2:]}}},
		{Title: "latency", Unit: "ms", Labels: labels, Groups: []report.BarGroup{{Name: "p50", Values: p50}, {Name: "p99", Values: p99}}},
	}
	return t, bars, nil
}
