package stage05

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/sysdesign-course/course/tools/internal/bench"
	"github.com/sysdesign-course/course/tools/internal/load"
	"github.com/sysdesign-course/course/tools/internal/report"
)

// BenchStack is what the bench needs from Docker: the replicas to switch and scrape, and
// the CPU time of the containers. *fault.Docker is one.
type BenchStack interface {
	Replicas(ctx context.Context, service string) ([]string, error)
	CPUTime(ctx context.Context, service string) (time.Duration, error)
}

// BenchDefaults take about a minute and a half (the profile's rounds with the cache off
// are slow on purpose).
var BenchDefaults = bench.Params{Workers: 32, Rounds: 3, Warmup: time.Second, Round: 3 * time.Second}

// cpuServices are the containers whose CPU the bench reports.
var cpuServices = []string{"postgres", "server", "redis"}

// side is one read with the cache on or off, summed over its rounds.
type side struct {
	m       *bench.Measurement
	wall    time.Duration
	queries float64
	hits    float64
	reads   float64
	cpu     map[string]time.Duration
	rps     []float64 // per round, for the ratio's median
}

func (s *side) perSec(x float64) float64 { return x / s.wall.Seconds() }

func (s *side) cores(service string) float64 { return s.cpu[service].Seconds() / s.wall.Seconds() }

// Bench compares the same stack with its cache on and off, switched at run time on every
// replica (PUT /admin/cache on each replica's admin listener, which nginx does not forward),
// for two hot reads: a user by primary key, and a profile, whose rank counts every user's
// messages. Rounds alternate on and off so drift on a noisy machine hits both alike.
func Bench(ctx context.Context, p bench.Params, s BenchStack, params Params, proxyURL string) (report.Table, []report.Bars, error) {
	client := load.NewClient(p.Workers, 10*time.Second)
	replicas, err := s.Replicas(ctx, params.Service)
	if err != nil {
		return report.Table{}, nil, err
	}
	set := func(ctx context.Context, on bool) error { return Switch(ctx, client, params.Admin, replicas, on) }
	defer func() { _ = set(context.WithoutCancel(ctx), true) }() // leave the cache on

	reads := []struct{ name, path string }{
		{"GET /users/:id", "/users/%d"},
		{"GET /users/:id/profile", "/users/%d/profile"},
	}
	var sides [][2]*side // per read: [on, off]
	for _, rd := range reads {
		pair := [2]*side{}
		for i, label := range []string{"cache on", "cache off"} {
			pair[i] = &side{m: bench.NewMeasurement(rd.name + ", " + label), cpu: map[string]time.Duration{}}
		}
		op := func(ctx context.Context) (string, error) {
			return load.Get(client, proxyURL+fmt.Sprintf(rd.path, rand.IntN(hotUsers)+1))(ctx)
		}
		for r := range p.Rounds {
			for i := range 2 {
				sd, on := pair[(i+r)%2], (i+r)%2 == 0
				if err := set(ctx, on); err != nil {
					return report.Table{}, nil, err
				}
				if err := measureSide(ctx, p, s, params, client, replicas, sd, op); err != nil {
					return report.Table{}, nil, err
				}
			}
		}
		sides = append(sides, pair)
	}
	return benchTable(p, sides), benchCharts(sides), nil
}

// measureSide runs one round and adds what the stack did meanwhile to sd.
func measureSide(ctx context.Context, p bench.Params, s BenchStack, params Params, client *http.Client, replicas []string, sd *side, op load.Op) error {
	// Sample after the warm-up: the first round with the cache on fills it (hundreds of
	// profile reads), and the last slow reads of a round with it off finish meanwhile.
	if err := bench.Warmup(ctx, op, p.Workers, p.Warmup); err != nil {
		return err
	}
	cpu0, err := cpuTimes(ctx, s)
	if err != nil {
		return err
	}
	m0, err := scrapeReplicas(ctx, client, params, replicas)
	if err != nil {
		return err
	}
	start := time.Now()
	rps, err := bench.Measure(ctx, sd.m, op, p.Workers, p.Round)
	if err != nil {
		return err
	}
	sd.wall += time.Since(start)
	sd.rps = append(sd.rps, rps)
	m1, err := scrapeReplicas(ctx, client, params, replicas)
	if err != nil {
		return err
	}
	cpu1, err := cpuTimes(ctx, s)
	if err != nil {
		return err
	}
	for _, svc := range cpuServices {
		sd.cpu[svc] += cpu1[svc] - cpu0[svc]
	}
	sd.queries += bench.Sum(m1, "db_queries_total") - bench.Sum(m0, "db_queries_total")
	c := diff(m0, m1)
	sd.hits += c.hits
	sd.reads += c.total
	return nil
}

func cpuTimes(ctx context.Context, s BenchStack) (map[string]time.Duration, error) {
	out := map[string]time.Duration{}
	for _, svc := range cpuServices {
		d, err := s.CPUTime(ctx, svc)
		if err != nil {
			return nil, err
		}
		out[svc] = d
	}
	return out, nil
}

// scrapeReplicas sums every replica's metrics; unlike the check's, a replica that does not
// answer is an error: the bench's figures would be wrong.
func scrapeReplicas(ctx context.Context, client *http.Client, p Params, replicas []string) (map[string]float64, error) {
	sum := map[string]float64{}
	for _, r := range replicas {
		m, err := bench.Scrape(ctx, client, p.Admin(r)+"/metrics")
		if err != nil {
			return nil, err
		}
		for k, v := range m {
			sum[k] += v
		}
	}
	return sum, nil
}

// Switch turns the cache on or off on every replica, through the endpoint on each one's
// admin listener (admin maps a replica's hostname to that listener's base URL).
func Switch(ctx context.Context, client *http.Client, admin func(host string) string, replicas []string, on bool) error {
	for _, r := range replicas {
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, admin(r)+"/admin/cache",
			strings.NewReader(fmt.Sprintf(`{"enabled": %t}`, on)))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("switching the cache on %s: %w", r, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("switching the cache on %s: HTTP %d (is this the stage-05 stack?)", r, resp.StatusCode)
		}
	}
	return nil
}

func benchTable(p bench.Params, sides [][2]*side) report.Table {
	t := report.Table{
		Title: fmt.Sprintf("hot reads (%d users) through nginx, cache on vs off, %d keep-alive connections, %d alternating rounds of %s each",
			hotUsers, p.Workers, p.Rounds, p.Round),
		Columns: []string{"read", "req/s", "p50 ms", "p99 ms", "failed", "DB queries/s", "hits", "postgres CPU", "servers CPU", "redis CPU"},
	}
	pct := func(x float64) string { return fmt.Sprintf("%.0f%%", 100*x) }
	for _, pair := range sides {
		for _, sd := range pair {
			hit := "-" // the cache is off: nothing to count
			if strings.HasSuffix(sd.m.Name, "cache on") {
				hit = pct(sd.hits / max(sd.reads, 1))
			}
			t.Rows = append(t.Rows, []string{sd.m.Name, fmt.Sprintf("%.0f", sd.m.ReqPerSec()), fmt.Sprintf("%.2f", sd.m.P(50)),
				fmt.Sprintf("%.2f", sd.m.P(99)), fmt.Sprint(sd.m.Failed), fmt.Sprintf("%.0f", sd.perSec(sd.queries)), hit,
				pct(sd.cores("postgres")), pct(sd.cores("server")), pct(sd.cores("redis"))})
		}
	}
	for _, pair := range sides {
		on, off := pair[0], pair[1]
		ratios := make([]float64, len(on.rps))
		for i := range on.rps {
			ratios[i] = on.rps[i] / max(off.rps[i], 1e-9) // Round fails a side with no success
		}
		fewer := 1 - (on.queries/max(on.m.ReqPerSec()*on.wall.Seconds(), 1))/max(off.queries/max(off.m.ReqPerSec()*off.wall.Seconds(), 1), 1e-9)
		name, _, _ := strings.Cut(on.m.Name, ",")
		t.Notes = append(t.Notes, fmt.Sprintf("%s: cache on / off throughput x%.1f (median of per-round ratios %s); %.1f%% fewer database queries per request; Postgres CPU %s -> %s of a core",
			name, bench.Median(ratios), bench.Floats(ratios), 100*fewer, pct(off.cores("postgres")), pct(on.cores("postgres"))))
	}
	t.Notes = append(t.Notes,
		"CPU is a share of one core over the measured part of each round (servers: all replicas summed); the machine has 2 cores for everything, the load generator included.",
		"a primary-key read costs Postgres about as little as a Redis read, so nginx and HTTP bound both sides; the profile's rank costs Postgres tens of milliseconds, which the cache saves on every hit.")
	return t
}

func benchCharts(sides [][2]*side) []report.Bars {
	var labels []string
	var ms []*bench.Measurement
	var qps, pg, srv []float64
	for i, pair := range sides {
		for j, sd := range pair {
			// short labels: the full names do not fit under the bars
			labels = append(labels, []string{"user", "profile"}[min(i, 1)]+[]string{" on", " off"}[j])
			ms = append(ms, sd.m)
			qps = append(qps, sd.perSec(sd.queries))
			pg, srv = append(pg, 100*sd.cores("postgres")), append(srv, 100*sd.cores("server"))
		}
	}
	return append(bench.Charts(labels, ms),
		report.Bars{Title: "database queries", Unit: "queries/s", Labels: labels, Groups: []report.BarGroup{{Name: "queries/s", Values: qps}}},
		report.Bars{Title: "CPU", Unit: "% of a core", Labels: labels, Groups: []report.BarGroup{{Name: "postgres", Values: pg}, {Name: "servers", Values: srv}}})
}
