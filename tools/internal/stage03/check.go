// Package stage03 proves stage 03's concepts on a live stack: nginx spreads requests fairly
// over the replicas, a killed replica costs no failed GET (nginx retries elsewhere and then
// stops trying it), a restarted one gets traffic again, and new replicas join after a scale.
package stage03

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sysdesign-course/course/tools/internal/check"
	"github.com/sysdesign-course/course/tools/internal/fault"
	"github.com/sysdesign-course/course/tools/internal/load"
)

// Params size the steps.
type Params struct {
	Service, Proxy string
	Workers        int
	Rate           float64       // requests per second during the fault steps
	Fair           float64       // each replica gets at least this fraction of an even share
	Slow           time.Duration // a request this slow paid for a try on a dead replica
	ScaleTo        int
	// How long the runs last (tests shorten them): each run measuring the spread
	// (fair-share, scale-out), the load before and after the kill, each run looking for
	// the restarted replica, and how long it has to get traffic again.
	Spread, BeforeKill, AfterKill, Probe, Rejoin time.Duration
}

// Defaults are what `make stage 3 check` uses.
var Defaults = Params{Service: "server", Proxy: "nginx", Workers: 8, Rate: 150, Fair: 0.6, Slow: 900 * time.Millisecond, ScaleTo: 5,
	Spread: 3 * time.Second, BeforeKill: 2 * time.Second, AfterKill: 7 * time.Second, Probe: 2 * time.Second, Rejoin: 12 * time.Second}

const doc = "docs/03-replicas.md"

// Steps returns stage 03's check; the cluster is the stack's Docker API.
func Steps(p Params, c fault.Cluster) []check.Step {
	return []check.Step{
		{
			Name: "fair-share", Title: "under steady load every replica serves a fair share of the requests",
			Doc:  doc + "#load-balancing",
			Hint: "nginx makes one peer of each address that \"server\" resolves to when it starts or reloads: check the upstream block in stages/03-replicas/nginx.conf and that the replicas are healthy (make stage 3 ps).",
			Run:  func(ctx context.Context, e *check.Env) check.Verdict { return fairShare(ctx, e, p, c) },
		},
		{
			Name: "kill-replica", Title: "killing a replica under load fails no GET request, and nginx stops trying it after the first failure",
			Doc:  doc + "#passive-health-checks-and-retries",
			Hint: "retries come from proxy_next_upstream (error timeout) with a short proxy_connect_timeout; taking a dead peer out comes from max_fails and fail_timeout on the upstream server line.",
			Run:  func(ctx context.Context, e *check.Env) check.Verdict { return killReplica(ctx, e, p, c) },
		},
		{
			Name: "scale-out", Title: fmt.Sprintf("after scaling to %d replicas and reloading nginx, the new replicas receive traffic", p.ScaleTo),
			Doc:  doc + "#scaling",
			Hint: "nginx resolves the service name only when it starts or reloads: make stage 3 scale N reloads it after compose adds the replicas.",
			Run:  func(ctx context.Context, e *check.Env) check.Verdict { return scaleOut(ctx, e, p, c) },
		},
	}
}

// sample is one request of a load run.
type sample struct {
	at       time.Time
	latency  time.Duration
	instance string
	err      error
}

// run sends GET /users/{hot} through the proxy and keeps every outcome.
func run(ctx context.Context, e *check.Env, p Params, d time.Duration, rate float64) []sample {
	var mu sync.Mutex
	var out []sample
	op := func(ctx context.Context) (string, error) {
		r, err := e.Get(ctx, "users via nginx", fmt.Sprintf("/users/%d", rand.IntN(100)+1))
		if err != nil && ctx.Err() != nil {
			return "", err // cut short by the end of the run, not a failure of the stack
		}
		s := sample{at: time.Now(), err: err}
		if err == nil {
			s.latency, s.instance = r.Latency, r.Header.Get("X-Served-By")
			if r.Status != 200 {
				s.err = load.StatusError{Code: r.Status}
			}
		}
		mu.Lock()
		out = append(out, s)
		mu.Unlock()
		return s.instance, s.err
	}
	_, _ = load.Run(ctx, load.Options{Workers: p.Workers, Duration: d, Rate: rate}, op)
	return out
}

func tally(samples []sample) (by map[string]int, failed map[string]int) {
	by, failed = map[string]int{}, map[string]int{}
	for _, s := range samples {
		if s.err != nil {
			failed[load.Classify(s.err)]++
			continue
		}
		by[s.instance]++
	}
	return by, failed
}

func shares(by map[string]int) string {
	keys := make([]string, 0, len(by))
	for k := range by {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s:%d", k, by[k])
	}
	return strings.Join(parts, " ")
}

func fairShare(ctx context.Context, e *check.Env, p Params, c fault.Cluster) check.Verdict {
	replicas, v, ok := check.AwaitRotation(ctx, e, c, p.Service, check.Settled.Within)
	if !ok {
		return v
	}
	samples := run(ctx, e, p, p.Spread, 0)
	by, failed := tally(samples)
	if len(failed) > 0 { // before counting replicas: a stack with no balancer fails here
		return check.Failed("no failed requests through "+e.Target, fmt.Sprintf("%s of %d requests failed", check.Counts(failed), len(samples)))
	}
	if len(replicas) < 2 {
		return check.NotProven("need at least two running %s replicas, found %d", p.Service, len(replicas))
	}
	if short := check.Unfair(by, replicas, p.Fair); len(short) > 0 {
		return check.Failed(fmt.Sprintf("each of the %d replicas serves at least %.0f%% of an even share", len(replicas), p.Fair*100),
			strings.Join(short, "; ")+" — all: "+shares(by))
	}
	return check.Passed("%d requests over %d replicas: %s", len(samples), len(replicas), shares(by))
}

func killReplica(ctx context.Context, e *check.Env, p Params, c fault.Cluster) check.Verdict {
	replicas, v, ok := check.AwaitRotation(ctx, e, c, p.Service, check.Settled.Within)
	if !ok {
		return v
	}
	if len(replicas) < 2 {
		return check.NotProven("need at least two running %s replicas, found %d", p.Service, len(replicas))
	}
	victim := replicas[len(replicas)-1]
	var samples []sample
	var wg sync.WaitGroup
	wg.Go(func() { samples = run(ctx, e, p, p.BeforeKill+p.AfterKill, p.Rate) })
	time.Sleep(p.BeforeKill)
	killedAt := time.Now()
	if err := c.KillReplica(ctx, p.Service, victim); err != nil {
		wg.Wait()
		return check.NotProven("could not kill %s: %v", victim, err)
	}
	restarted := false
	defer func() { // a step that fails before the restart still leaves every replica to the next one
		if !restarted {
			_ = c.Start(context.WithoutCancel(ctx), p.Service)
		}
	}()
	wg.Wait()

	after := 0
	var slow []time.Time
	failed := map[string]int{}
	for _, s := range samples {
		if s.err != nil {
			failed[load.Classify(s.err)]++
			continue
		}
		if s.at.After(killedAt) {
			after++
			if s.latency >= p.Slow {
				slow = append(slow, s.at)
			}
		}
	}
	if after == 0 {
		return check.NotProven("no request completed after the kill")
	}
	if len(failed) > 0 {
		return check.Failed(fmt.Sprintf("zero failed GETs while %s is killed (nginx retries them on another replica)", victim),
			fmt.Sprintf("%s of %d requests failed", check.Counts(failed), len(samples)))
	}
	// After nginx first hits the dead replica (a slow, retried request), it must leave it
	// alone for fail_timeout: only a probe now and then may pay the connect timeout again.
	slowAfterDetection := 0
	if len(slow) > 0 {
		for _, t := range slow[1:] {
			if t.After(slow[0]) {
				slowAfterDetection++
			}
		}
	}
	limit := max(2, after/50)
	if slowAfterDetection > limit {
		return check.Failed(fmt.Sprintf("after the first failure, at most %d requests slowed by tries on the dead replica", limit),
			fmt.Sprintf("%d of %d requests took %s or more", slowAfterDetection, after, p.Slow)).
			WithHint("nginx keeps sending requests to the dead replica: set max_fails and fail_timeout on the upstream server line so one failure takes it out.")
	}

	// Start it again: it must rejoin.
	restarted = true
	if err := c.Start(ctx, p.Service); err != nil {
		return check.Failed(victim+" starts again", err.Error())
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := c.WaitHealthy(wctx, p.Service)
	cancel()
	if err != nil {
		return check.Failed(victim+" healthy again", err.Error())
	}
	var back []sample
	for deadline := time.Now().Add(p.Rejoin); time.Now().Before(deadline); {
		back = run(ctx, e, p, p.Probe, p.Rate)
		if by, _ := tally(back); by[victim] > 0 {
			_, f := tally(back)
			if len(f) > 0 {
				return check.Failed("no failed requests once the replica is back", check.Counts(f))
			}
			return check.Passed("0 failed of %d requests around the kill of %s (%d slowed by a retry after detection); back in rotation after restart: %s",
				len(samples), victim, slowAfterDetection, shares(by))
		}
	}
	by, _ := tally(back)
	return check.Failed(fmt.Sprintf("%s receives traffic again within %s of being healthy", victim, p.Rejoin), "it got none: "+shares(by)).
		WithHint("if its address changed on restart, nginx still points at the old one: nginx resolves names only at start or reload.")
}

func scaleOut(ctx context.Context, e *check.Env, p Params, c fault.Cluster) check.Verdict {
	before, v, ok := check.AwaitRotation(ctx, e, c, p.Service, check.Settled.Within)
	if !ok {
		return v
	}
	defer func() { // leave the stack as it was
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 60*time.Second)
		defer cancel()
		_ = c.Scale(cctx, p.Service, len(before))
		_ = c.Exec(cctx, p.Proxy, "nginx", "-s", "reload")
	}()
	if err := c.Scale(ctx, p.Service, p.ScaleTo); err != nil {
		return check.NotProven("could not scale %s to %d: %v", p.Service, p.ScaleTo, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	err := c.WaitHealthy(wctx, p.Service)
	cancel()
	if err != nil {
		return check.NotProven("the new replicas did not become healthy: %v", err)
	}
	if err := c.Exec(ctx, p.Proxy, "nginx", "-s", "reload"); err != nil {
		return check.Failed("nginx -s reload succeeds", err.Error())
	}
	// The new replicas are waited for (bounded): that they then get traffic is the point,
	// so a wait that runs out is not inconclusive: the measurement below fails it.
	after, _, _ := check.AwaitRotation(ctx, e, c, p.Service, p.Rejoin)
	samples := run(ctx, e, p, p.Spread, 0)
	by, failed := tally(samples)
	if len(failed) > 0 {
		return check.Failed("no failed requests after the scale", check.Counts(failed))
	}
	var missing []string
	for _, r := range after {
		if by[r] == 0 {
			missing = append(missing, r)
		}
	}
	if len(missing) > 0 {
		return check.Failed(fmt.Sprintf("all %d replicas receive traffic", len(after)), fmt.Sprintf("%s got none: %s", strings.Join(missing, ", "), shares(by)))
	}
	return check.Passed("scaled %d -> %d replicas, every one served: %s", len(before), len(after), shares(by))
}
