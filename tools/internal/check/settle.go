package check

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sysdesign-course/course/tools/internal/fault"
)

// A check runs after whatever the learner just did: a replica killed and started again,
// Redis paused, a scale. Proving a concept on a stack that is still settling blames the
// stage for the restart, so every check and bench starts with a preflight that waits,
// bounded, for a settled stack, and answers inconclusive, naming what is unsettled, when
// the stack does not settle.

// Observer reports every container of the stack under test; fault.Docker implements it.
type Observer interface {
	Stack(ctx context.Context) ([]fault.Container, error)
}

// ReplicaLister names a service's running replicas as X-Served-By shows them;
// fault.Cluster has it.
type ReplicaLister interface {
	Replicas(ctx context.Context, service string) ([]string, error)
}

// Settle is what a settled stack means for one stage.
type Settle struct {
	Stage    int           // for the commands the verdict suggests
	Replicas string        // the service the entry point balances over; "" when it is one server
	Probe    string        // the path every replica must answer through the entry point
	Quiet    time.Duration // no container (re)started more recently than this
	Within   time.Duration // how long to wait before answering inconclusive
	Poll     time.Duration // pause between two looks
	// Recent bounds how long a replica that does not answer through the entry point is
	// waited for after it started: longer than a balancer's passive-health timeout (nginx's
	// fail_timeout) and a slow start. One running longer than that and still left out is
	// not settling: the balancer is wrong, and the steps fail it.
	Recent time.Duration
	// Rejoin says how a replica gets back into the balancer's rotation, for a preflight
	// that gave up waiting for one (course.toml's rejoin).
	Rejoin string
}

// Settled is what `make stage N check` and `bench` wait for.
var Settled = Settle{Probe: "/ping", Quiet: 3 * time.Second, Within: 30 * time.Second, Poll: 250 * time.Millisecond, Recent: time.Minute}

// PreflightStep is the name the preflight's result carries in a report.
const PreflightStep = "preflight"

// Preflight waits until every container of the stack is running and healthy, none
// (re)started within s.Quiet, and every running replica of s.Replicas answers s.Probe
// through the entry point. It prints
// one line when it has to wait, and passes, or answers inconclusive after s.Within naming
// every container that is not settled.
func Preflight(ctx context.Context, e *Env, obs Observer, s Settle, out io.Writer, prefix string) Verdict {
	start := time.Now()
	rot := newRotation(e, s.Probe)
	announced := false
	for {
		running, unsettled := look(ctx, e, obs, s, rot, time.Now())
		waited := time.Since(start)
		if len(unsettled) == 0 {
			v := Passed("%d containers running and healthy", running)
			if n := len(rot.hosts); n > 0 {
				v.Seen += fmt.Sprintf(", %d of %d %s replicas answer through %s", len(rot.seen), n, s.Replicas, e.Target)
			}
			if announced {
				v.Seen += fmt.Sprintf(" (settled after %s)", waited.Round(100*time.Millisecond))
			}
			return v
		}
		if !announced {
			fmt.Fprintf(out, "[%s] preflight: waiting up to %s for the stack to settle: %s\n", prefix, s.Within, strings.Join(unsettled, "; "))
			announced = true
		}
		if waited >= s.Within || !Pause(ctx, s.Poll) {
			if s.Rejoin != "" && strings.Contains(strings.Join(unsettled, ";"), "rotation yet") {
				unsettled = append(unsettled, "if it never rejoins: "+s.Rejoin)
			}
			return NotProven("the stack did not settle within %s, so the check would prove nothing: %s. Look with make stage %[3]d ps and make stage %[3]d logs, or start afresh: make stage %[3]d down, then up",
				waited.Round(100*time.Millisecond), strings.Join(unsettled, "; "), s.Stage)
		}
	}
}

// look takes one look at the stack: how many containers run, and what is not settled.
func look(ctx context.Context, e *Env, obs Observer, s Settle, rot *rotation, now time.Time) (int, []string) {
	cs, err := obs.Stack(ctx)
	if err != nil {
		return 0, []string{"its state cannot be read: " + err.Error()}
	}
	if len(cs) == 0 {
		return 0, []string{"it has no containers: is the stage up? (make stage N up)"}
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].Name < cs[j].Name })
	var unsettled, hosts []string
	started := map[string]time.Time{}
	running := 0
	for _, c := range cs {
		if c.State == "running" {
			running++
			if c.Service == s.Replicas {
				hosts = append(hosts, c.Host)
				started[c.Host] = c.StartedAt
			}
		}
		if why := containerState(c, now, s.Quiet); why != "" {
			unsettled = append(unsettled, short(c.Name, c.Service)+" "+why)
		}
	}
	if len(unsettled) > 0 || s.Replicas == "" || !hasEntry(cs, entry(e.Target)) {
		// Asking the entry point is pointless while containers settle, and it is the
		// steps' business when the stack has no such balancer (a negative control).
		return running, unsettled
	}
	if len(hosts) == 0 {
		return running, []string{"no " + s.Replicas + " replica is running"}
	}
	for _, h := range rot.await(ctx, hosts) {
		if age := now.Sub(started[h]); age < s.Recent {
			unsettled = append(unsettled, fmt.Sprintf("%s replica %s started %s ago and is not in %s's rotation yet",
				s.Replicas, h, age.Truncate(time.Second), entry(e.Target)))
		}
	}
	return running, unsettled
}

// hasEntry reports whether the stack has the entry point: a service of that name, or an
// address (a virtual IP, which no container names).
func hasEntry(cs []fault.Container, host string) bool {
	return net.ParseIP(host) != nil || slices.ContainsFunc(cs, func(c fault.Container) bool { return c.Service == host })
}

// containerState says why one container is not settled, or "".
func containerState(c fault.Container, now time.Time, quiet time.Duration) string {
	switch c.State {
	case "running":
	case "paused":
		return "is paused (docker unpause it)"
	case "restarting":
		return fmt.Sprintf("is restarting (restarted %d times)", c.Restarts)
	case "created":
		return "was created but has not started"
	default:
		return fmt.Sprintf("is %s (exit code %d)", c.State, c.ExitCode)
	}
	switch c.Health {
	case "starting":
		return "is running but its healthcheck has not passed yet"
	case "unhealthy":
		return "is unhealthy"
	}
	if age := now.Sub(c.StartedAt); age < quiet {
		return fmt.Sprintf("started %s ago", age.Round(100*time.Millisecond))
	}
	return ""
}

// short names a container for people: server-2 rather than course-03-replicas-server-2.
func short(name, service string) string {
	if i := strings.LastIndex(name, "-"+service+"-"); i >= 0 {
		return name[i+1:]
	}
	return name
}

// entry names the entry point by its host: nginx, lb, server.
func entry(target string) string {
	if u, err := url.Parse(target); err == nil && u.Hostname() != "" {
		return u.Hostname()
	}
	return target
}

// AwaitRotation waits, bounded by within, until every running replica of service that
// started recently (Settled.Recent, as e.Stack reports) answers through the entry point,
// and returns the running replicas. Steps that measure every replica (a fair share, a hit
// ratio) call it before they count, so a replica that has just come back is waited for
// instead of being blamed. A replica left out for longer is not waited for: the step
// measures, and fails the balancer. Without e.Stack nothing is known to be recent, so
// nothing is waited for. ok is false with an inconclusive verdict naming the recent
// replicas that never answered.
func AwaitRotation(ctx context.Context, e *Env, l ReplicaLister, service string, within time.Duration) (hosts []string, v Verdict, ok bool) {
	rot := newRotation(e, Settled.Probe)
	deadline := time.Now().Add(within)
	for {
		hosts, err := l.Replicas(ctx, service)
		if err != nil {
			return nil, NotProven("listing %s replicas: %v", service, err), false
		}
		if len(hosts) == 0 {
			return nil, NotProven("no %s replica is running", service), false
		}
		waiting := recent(ctx, e, service, rot.await(ctx, hosts))
		if len(waiting) == 0 {
			return hosts, Verdict{}, true
		}
		if time.Now().After(deadline) || !Pause(ctx, Settled.Poll) {
			return hosts, NotProven("%s replicas %s started recently and did not answer through %s within %s (none of %d requests): they are not in its rotation yet, so this step would measure fewer replicas than run",
				service, strings.Join(waiting, ", "), entry(e.Target), within, rot.sent), false
		}
	}
}

// recent keeps the replicas among hosts that started within Settled.Recent.
func recent(ctx context.Context, e *Env, service string, hosts []string) []string {
	if len(hosts) == 0 || e.Stack == nil {
		return nil
	}
	cs, err := e.Stack.Stack(ctx)
	if err != nil {
		return hosts // cannot tell: wait, bounded
	}
	var out []string
	for _, c := range cs {
		if c.Service == service && slices.Contains(hosts, c.Host) && time.Since(c.StartedAt) < Settled.Recent {
			out = append(out, c.Host)
		}
	}
	return out
}

// rotation probes the entry point and remembers which replicas answered, so that a
// strategy that is not round robin (weighted, least connections) still shows every
// replica over a few rounds.
type rotation struct {
	e     *Env
	probe string
	hosts []string
	seen  map[string]bool // replicas that answered 2xx, by X-Served-By
	sent  int
}

func newRotation(e *Env, probe string) *rotation { return &rotation{e: e, probe: probe} }

// await sends one round of probes (three per replica, a few at a time) and returns the
// replicas not seen since the set of replicas last changed. While no probe has been
// answered at all it returns none: a balancer that answers nothing is not settling, it is
// broken, and the steps say how.
func (r *rotation) await(ctx context.Context, hosts []string) []string {
	hosts = slices.Sorted(slices.Values(hosts))
	if !slices.Equal(hosts, r.hosts) {
		r.hosts, r.seen, r.sent = hosts, map[string]bool{}, 0
	}
	jobs := make(chan struct{}, 3*len(hosts))
	for range cap(jobs) {
		jobs <- struct{}{}
	}
	close(jobs)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range min(len(hosts)+1, 8) {
		wg.Go(func() {
			for range jobs {
				rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				resp, err := r.e.Get(rctx, PreflightStep, r.probe)
				cancel()
				mu.Lock()
				r.sent++
				if err == nil && resp.Status < 300 {
					r.seen[resp.Header.Get("X-Served-By")] = true
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(r.seen) == 0 {
		return nil
	}
	var missing []string
	for _, h := range r.hosts {
		if !r.seen[h] {
			missing = append(missing, h)
		}
	}
	return missing
}

// Pause waits d, or returns false when ctx ends first.
func Pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// RunSettled runs the preflight as the check's first step, then, once the stack has
// settled, the stage's steps; on a stack that never settled they do not run and the check
// is inconclusive.
func RunSettled(ctx context.Context, prefix string, obs Observer, s Settle, steps []Step, env *Env, out io.Writer) ([]Result, Outcome) {
	pre := Step{Name: PreflightStep, Title: "the stack has settled: every container running and healthy, every replica answering",
		Run: func(ctx context.Context, e *Env) Verdict { return Preflight(ctx, e, obs, s, out, prefix) }}
	results, outcome := Run(ctx, prefix, []Step{pre}, env, out)
	if outcome != Pass {
		fmt.Fprintf(out, "[%s] the stage's steps did not run: they would have measured a stack in the middle of a change\n", prefix)
		return results, outcome
	}
	more, outcome := Run(ctx, prefix, steps, env, out)
	return append(results, more...), outcome
}
