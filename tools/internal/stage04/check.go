// Package stage04 runs the prime-LB project's three-phase failover test against our own
// balancer, then proves its weighted and least-connections strategies.
package stage04

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sysdesign-course/course/tools/internal/check"
	"github.com/sysdesign-course/course/tools/internal/fault"
	"github.com/sysdesign-course/course/tools/internal/load"
	"github.com/sysdesign-course/course/tools/internal/report"
)

// Params size the steps.
type Params struct {
	Service              string
	Admin                string // the balancer's admin URL
	Port                 string // ends the servers' URLs on the balancer; empty where the hosts carry it
	N                    int64  // the prime every request checks
	Clients              int
	Phase                time.Duration
	Detect               time.Duration // the killed server must be marked down within this
	ServerCPUs, SlowCPUs float64
}

// Defaults are what `make stage 4 check` uses.
var Defaults = Params{Service: "server", Admin: "http://lb:8081", Port: ":8080", N: 25_000_009, Clients: 8,
	Phase: 8 * time.Second, Detect: 1500 * time.Millisecond, ServerCPUs: 0.5, SlowCPUs: 0.1}

const doc = "docs/04-prime-lb.md"

// Phase is one phase's numbers, as printed and saved in the report.
type Phase struct {
	Name      string           `json:"name"`
	Requests  int64            `json:"requests"`
	Successes int64            `json:"successes"`
	Failures  int64            `json:"failures"`
	ReqPerSec float64          `json:"req_per_s"`
	P50MS     float64          `json:"p50_ms"`
	P99MS     float64          `json:"p99_ms"`
	ByServer  map[string]int64 `json:"by_server"`
	Errors    map[string]int64 `json:"errors,omitempty"`
}

func (p Phase) String() string {
	return fmt.Sprintf("%d requests, %d ok, %d failed, %.1f req/s, p50 %.0f ms, p99 %.0f ms, per server %v",
		p.Requests, p.Successes, p.Failures, p.ReqPerSec, p.P50MS, p.P99MS, p.ByServer)
}

// state is shared by the steps of one run: the servers and what each phase measured.
type state struct {
	mu     sync.Mutex
	hosts  []string
	Phases []Phase
}

// Steps returns stage 04's check (phases 1-3 in order, then the strategies) and a
// function that tabulates the phases once they ran.
func Steps(p Params, c fault.Cluster) ([]check.Step, func() report.Table) {
	st := &state{}
	return []check.Step{
		{
			Name: "phase-1", Title: fmt.Sprintf("both servers up: %d clients checking is-prime/%d, no request fails, both serve", p.Clients, p.N),
			Doc:  doc + "#the-three-phases",
			Hint: "both servers must have registered with the balancer (make stage 4 logs; http://127.0.0.1:8401/stats).",
			Run:  func(ctx context.Context, e *check.Env) check.Verdict { return phase1(ctx, e, p, c, st) },
		},
		{
			Name: "phase-2", Title: fmt.Sprintf("server 2 killed mid-load: no request fails, and it is marked down within %s", p.Detect),
			Doc:  doc + "#health-checks-active-and-passive",
			Hint: "the balancer must retry an idempotent request that could not reach its backend on another one (LB_RETRIES) and take the dead backend out: active checks (LB_HEALTH_INTERVAL, LB_FALL) or passive ejection (LB_PASSIVE_ERRORS).",
			Run:  func(ctx context.Context, e *check.Env) check.Verdict { return phase2(ctx, e, p, c, st) },
		},
		{
			Name: "phase-3", Title: "server 2 started again: it is marked up, both serve, no request fails",
			Doc:  doc + "#the-three-phases",
			Hint: "a restarted server registers again and active checks bring it back after LB_RISE passing checks; with active checks off it never comes back.",
			Run:  func(ctx context.Context, e *check.Env) check.Verdict { return phase3(ctx, e, p, c, st) },
		},
		{
			Name: "weighted", Title: "with weights 3:1 the smooth weighted strategy sends 75% of requests to the heavy server (±10 points)",
			Doc:  doc + "#strategies",
			Hint: "see pickLocked's Weighted case in shared/balancer/strategy.go and PUT /config in admin.go.",
			Run:  func(ctx context.Context, e *check.Env) check.Verdict { return weighted(ctx, e, p, st) },
		},
		{
			Name: "least-conn", Title: "least connections sends fewer requests to a server made slow (CPU cut to a fifth)",
			Doc:  doc + "#strategies",
			Hint: "least-conn must compare in-flight counts (Backend.inFlight), which the proxy raises and lowers around every request.",
			Run:  func(ctx context.Context, e *check.Env) check.Verdict { return leastConn(ctx, e, p, c, st) },
		},
	}, st.table
}

// table is the phases side by side, as the original project reported them.
func (st *state) table() report.Table {
	st.mu.Lock()
	defer st.mu.Unlock()
	t := report.Table{Title: "phases (is-prime through the balancer)",
		Columns: []string{"phase", "requests", "successes", "failures", "req/s", "p50 ms", "p99 ms"}}
	for _, ph := range st.Phases {
		t.Rows = append(t.Rows, []string{ph.Name, fmt.Sprint(ph.Requests), fmt.Sprint(ph.Successes), fmt.Sprint(ph.Failures),
			fmt.Sprintf("%.1f", ph.ReqPerSec), fmt.Sprintf("%.0f", ph.P50MS), fmt.Sprintf("%.0f", ph.P99MS)})
	}
	return t
}

// runPhase sends is-prime requests from p.Clients clients for d; a request succeeds only
// with a 200 that says the number is prime.
func runPhase(ctx context.Context, e *check.Env, p Params, name string, d time.Duration) Phase {
	path := fmt.Sprintf("/is-prime/%d", p.N)
	op := func(ctx context.Context) (string, error) {
		r, err := e.Get(ctx, "is-prime", path)
		if err != nil {
			return "", err
		}
		var body struct{ Prime bool }
		if r.Status != http.StatusOK {
			return "", load.StatusError{Code: r.Status}
		}
		if json.Unmarshal(r.Body, &body) != nil || !body.Prime {
			return "", fmt.Errorf("wrong answer: %s", check.Short(r.Body))
		}
		return r.Header.Get("X-Served-By"), nil
	}
	res, _ := load.Run(ctx, load.Options{Workers: p.Clients, Duration: d}, op)
	return Phase{Name: name, Requests: res.OK + res.Failed, Successes: res.OK, Failures: res.Failed, ReqPerSec: res.Throughput(),
		P50MS: report.MS(res.Latency.ValueAtQuantile(50)), P99MS: report.MS(res.Latency.ValueAtQuantile(99)),
		ByServer: res.ByInstance, Errors: res.Errors}
}

func (st *state) add(ph Phase) {
	st.mu.Lock()
	st.Phases = append(st.Phases, ph)
	st.mu.Unlock()
}

// backend is one row of the balancer's stats JSON.
type backend struct {
	State string
	Total int64
}

// stats reads the balancer's stats JSON: backend host -> state.
func stats(ctx context.Context, e *check.Env, p Params) (map[string]string, error) {
	all, err := backends(ctx, e, p)
	out := map[string]string{}
	for h, b := range all {
		out[h] = b.State
	}
	return out, err
}

// backends reads the balancer's stats JSON: backend host -> state and requests sent.
func backends(ctx context.Context, e *check.Env, p Params) (map[string]backend, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.Admin+"/stats.json", nil)
	if err != nil {
		return nil, err
	}
	resp, err := e.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var s struct {
		Backends []struct {
			URL, State string
			Total      int64
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return nil, fmt.Errorf("stats.json: %w", err)
	}
	out := map[string]backend{}
	for _, b := range s.Backends {
		host := strings.TrimSuffix(strings.TrimPrefix(b.URL, "http://"), p.Port)
		out[host] = backend{State: b.State, Total: b.Total}
	}
	return out, nil
}

func configure(ctx context.Context, e *check.Env, p Params, body any) error {
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, p.Admin+"/config", bytes.NewReader(b))
	if err != nil {
		return err
	}
	resp, err := e.Client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("PUT /config: HTTP %d", resp.StatusCode)
	}
	return nil
}

func phase1(ctx context.Context, e *check.Env, p Params, c fault.Cluster, st *state) check.Verdict {
	hosts, v, ok := check.AwaitRotation(ctx, e, c, p.Service, check.Settled.Within)
	if !ok {
		return v
	}
	if len(hosts) != 2 {
		return check.NotProven("the three phases need exactly two servers, found %d", len(hosts))
	}
	st.hosts = hosts
	e.Timeline.Mark("phase 1: both up")
	ph := runPhase(ctx, e, p, "phase 1: both up", p.Phase)
	st.add(ph)
	switch {
	case ph.Successes == 0:
		return check.Failed("is-prime answers through the balancer", fmt.Sprintf("none did: %v", ph.Errors))
	case ph.Failures > 0:
		return check.Failed("zero failed requests", ph.String())
	case ph.ByServer[hosts[0]] == 0 || ph.ByServer[hosts[1]] == 0:
		return check.Failed("both servers serve", ph.String())
	}
	return check.Passed("%s", ph)
}

func phase2(ctx context.Context, e *check.Env, p Params, c fault.Cluster, st *state) check.Verdict {
	if len(st.hosts) != 2 {
		return check.NotProven("phase 1 did not find two servers")
	}
	victim := st.hosts[1]
	e.Timeline.Mark("phase 2: server 2 killed")
	var ph Phase
	var wg sync.WaitGroup
	wg.Go(func() { ph = runPhase(ctx, e, p, "phase 2: server 2 killed", p.Phase) })
	time.Sleep(500 * time.Millisecond) // requests in flight on both servers when it dies
	killedAt := time.Now()
	if err := c.KillReplica(ctx, p.Service, victim); err != nil {
		wg.Wait()
		return check.NotProven("could not kill %s: %v", victim, err)
	}
	detected := time.Duration(-1)
	for time.Since(killedAt) < 3*p.Detect {
		if s, err := stats(ctx, e, p); err == nil && s[victim] != "up" {
			detected = time.Since(killedAt)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	wg.Wait()
	st.add(ph)
	switch {
	case ph.Failures > 0:
		return check.Failed("zero failed requests while server 2 dies (retried on server 1)", ph.String())
	case detected < 0 || detected > p.Detect:
		got := "still up after " + check.MS(3*p.Detect)
		if detected > 0 {
			got = "marked down after " + check.MS(detected)
		}
		return check.Failed(fmt.Sprintf("%s marked down within %s on /stats.json", victim, check.MS(p.Detect)), got)
	}
	return check.Passed("%s; %s marked down %s after the kill", ph, victim, check.MS(detected))
}

func phase3(ctx context.Context, e *check.Env, p Params, c fault.Cluster, st *state) check.Verdict {
	if len(st.hosts) != 2 {
		return check.NotProven("phase 1 did not find two servers")
	}
	victim := st.hosts[1]
	if err := c.Start(ctx, p.Service); err != nil {
		return check.Failed("server 2 starts again", err.Error())
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := c.WaitHealthy(wctx, p.Service)
	cancel()
	if err != nil {
		return check.Failed("server 2 healthy again", err.Error())
	}
	e.Timeline.Mark("phase 3: server 2 back")
	ph := runPhase(ctx, e, p, "phase 3: server 2 back", p.Phase)
	st.add(ph)
	s, err := stats(ctx, e, p)
	switch {
	case ph.Failures > 0:
		return check.Failed("zero failed requests", ph.String())
	case err != nil:
		return check.Failed("the balancer's /stats.json", err.Error())
	case s[victim] != "up":
		return check.Failed(victim+" marked up again on /stats.json", fmt.Sprintf("%v", s))
	case ph.ByServer[victim] == 0 || ph.ByServer[st.hosts[0]] == 0:
		return check.Failed("both servers serve again", ph.String())
	}
	return check.Passed("%s", ph)
}

// share runs a phase and returns the fraction of requests the balancer sent to host,
// from its own counters: completions in a fixed window would undercount the busier
// server, whose queued requests are cut off when the window ends.
func share(ctx context.Context, e *check.Env, p Params, name, host string) (float64, Phase, error) {
	before, err := backends(ctx, e, p)
	if err != nil {
		return 0, Phase{}, err
	}
	ph := runPhase(ctx, e, p, name, p.Phase)
	after, err := backends(ctx, e, p)
	if err != nil {
		return 0, ph, err
	}
	total := int64(0)
	for h, b := range after {
		total += b.Total - before[h].Total
	}
	if total == 0 {
		return 0, ph, fmt.Errorf("the balancer counted no requests")
	}
	return float64(after[host].Total-before[host].Total) / float64(total), ph, nil
}

func weighted(ctx context.Context, e *check.Env, p Params, st *state) check.Verdict {
	if len(st.hosts) != 2 {
		return check.NotProven("phase 1 did not find two servers")
	}
	heavy, light := st.hosts[0], st.hosts[1]
	url := func(h string) string { return "http://" + h + p.Port }
	if err := configure(ctx, e, p, map[string]any{"strategy": "weighted", "weights": map[string]int{url(heavy): 3, url(light): 1}}); err != nil {
		return check.NotProven("could not switch to weighted: %v", err)
	}
	defer func() {
		_ = configure(context.WithoutCancel(ctx), e, p, map[string]any{"strategy": "round-robin", "weights": map[string]int{url(heavy): 1, url(light): 1}})
	}()
	e.Timeline.Mark("weighted 3:1")
	got, ph, err := share(ctx, e, p, "weighted 3:1", heavy)
	if err != nil {
		return check.Failed("the balancer's /stats.json counters", err.Error())
	}
	if ph.Failures > 0 {
		return check.Failed("zero failed requests", ph.String())
	}
	if got < 0.65 || got > 0.85 {
		return check.Failed("75% ± 10 points of requests on the weight-3 server", fmt.Sprintf("%.0f%% (%v)", got*100, ph.ByServer))
	}
	return check.Passed("weights 3:1 -> the balancer sent %.0f%% / %.0f%% (%s)", got*100, (1-got)*100, ph)
}

func leastConn(ctx context.Context, e *check.Env, p Params, c fault.Cluster, st *state) check.Verdict {
	if len(st.hosts) != 2 {
		return check.NotProven("phase 1 did not find two servers")
	}
	fast, slow := st.hosts[0], st.hosts[1]
	if err := c.SetCPUs(ctx, p.Service, slow, p.SlowCPUs); err != nil {
		return check.NotProven("could not slow %s down: %v", slow, err)
	}
	defer func() { _ = c.SetCPUs(context.WithoutCancel(ctx), p.Service, slow, p.ServerCPUs) }()
	if err := configure(ctx, e, p, map[string]any{"strategy": "least-conn"}); err != nil {
		return check.NotProven("could not switch to least-conn: %v", err)
	}
	defer func() { _ = configure(context.WithoutCancel(ctx), e, p, map[string]any{"strategy": "round-robin"}) }()
	e.Timeline.Mark("least-conn, server 2 slowed")
	got, ph, err := share(ctx, e, p, "least-conn, server 2 slowed", slow)
	if err != nil {
		return check.Failed("the balancer's /stats.json counters", err.Error())
	}
	if ph.Failures > 0 {
		return check.Failed("zero failed requests", ph.String())
	}
	if got >= 0.35 {
		return check.Failed("under 35% of requests on the slowed server (round robin would give it 50%)", fmt.Sprintf("%.0f%% (%v)", got*100, ph.ByServer))
	}
	return check.Passed("the balancer sent the slowed server %.0f%% of requests, %s the other %.0f%% (%s)", got*100, fast, (1-got)*100, ph)
}
