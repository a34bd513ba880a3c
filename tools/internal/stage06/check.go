// Package stage06 proves stage 06's concepts on a live stack: two HAProxy nodes share a
// virtual IP through keepalived, so the entry point survives losing a node, a hung HAProxy
// and a dead replica, and the pair behaves as configured when a node comes back or when
// the nodes cannot hear each other (split brain).
package stage06

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sysdesign-course/course/tools/internal/check"
	"github.com/sysdesign-course/course/tools/internal/load"
)

// Stack is what the check needs from Docker; *fault.Docker is one.
type Stack interface {
	check.ReplicaLister
	KillReplica(ctx context.Context, service, host string) error
	Kill(ctx context.Context, service string) error
	Start(ctx context.Context, service string) error
	WaitHealthy(ctx context.Context, service string) error
	Scale(ctx context.Context, service string, n int) error
	Output(ctx context.Context, service string, cmd ...string) (string, error)
}

// Params size the steps.
type Params struct {
	Nodes     [2]string // the lb services, the higher priority first
	VIP       string
	Service   string        // the replicas HAProxy balances
	StatsPort int           // each node's stats page and monitor URI
	Rate      float64       // requests per second through the VIP while faults happen
	Timeout   time.Duration // each such request's own limit
	Fair      float64       // each replica gets at least this fraction of an even share
	Steady    time.Duration // the no-flap window
	Failover  time.Duration // the VIP must have moved, and service resumed, within this
	Hang      time.Duration // the same when the holder's HAProxy hangs
	Detect    time.Duration // a killed replica is marked down by HAProxy within this
	ScaleTo   int
	Rejoin    time.Duration // new replicas get traffic within this, without a reload
	Quiet     time.Duration // a VIP with no transition for this long has settled
}

// Defaults are what `make stage 6 check` uses.
var Defaults = Params{Nodes: [2]string{"lb1", "lb2"}, VIP: "10.206.6.10", Service: "server", StatsPort: 8404,
	Rate: 50, Timeout: 2 * time.Second, Fair: 0.6, Steady: 20 * time.Second, Failover: 5 * time.Second,
	Hang: 8 * time.Second, Detect: 2500 * time.Millisecond, ScaleTo: 5, Rejoin: 10 * time.Second, Quiet: 3 * time.Second}

const doc = "docs/06-vip.md"

// Steps returns stage 06's check.
func Steps(p Params, s Stack) []check.Step {
	return []check.Step{
		{
			Name: "one-holder", Title: "exactly one node holds the VIP, and requests through it spread over every replica",
			Doc:  doc + "#vrrp-one-address-two-nodes",
			Hint: "both nodes run keepalived with state BACKUP and different priorities (stages/06-vip/lb/lb.sh); HAProxy's server-template fills its slots from Docker's DNS (stages/06-vip/lb/haproxy.cfg). A weight or drain set through the runtime API stays until you set it back (set weight servers/srvN 100, set server servers/srvN state ready) or the node restarts.",
			Run:  func(ctx context.Context, e *check.Env) check.Verdict { return oneHolder(ctx, e, p, s) },
		},
		{
			Name: "no-flap", Title: fmt.Sprintf("under %s of steady load the VIP stays put: no VRRP transition", p.Steady),
			Doc:  doc + "#failover-time",
			Hint: "adverts too frequent for a busy machine make a backup think the master died: advert_int in lb.sh, and the transitions in make stage 6 logs.",
			Run:  func(ctx context.Context, e *check.Env) check.Verdict { return noFlap(ctx, e, p, s) },
		},
		{
			Name: "master-killed", Title: fmt.Sprintf("SIGKILL of the master under load: the VIP moves and requests succeed again within %s", p.Failover),
			Doc:  doc + "#failover-time",
			Hint: "the backup takes over after 3 missed adverts (advert_int) plus the skew: check unicast_peer and virtual_router_id in lb.sh, and that both nodes run keepalived (make stage 6 logs).",
			Run:  func(ctx context.Context, e *check.Env) check.Verdict { return masterKilled(ctx, e, p, s) },
		},
		{
			Name: "failback", Title: "the old master returns and the configured behaviour holds: it takes the VIP back (preempt) or stays backup (nopreempt)",
			Doc:  doc + "#preemption",
			Hint: "PREEMPT=true lets the higher priority take the VIP back, PREEMPT=false writes nopreempt (lb.sh); both need state BACKUP.",
			Run:  func(ctx context.Context, e *check.Env) check.Verdict { return failback(ctx, e, p, s) },
		},
		{
			Name: "haproxy-hangs", Title: fmt.Sprintf("HAProxy frozen in the holder while keepalived lives: the VIP moves and service resumes within %s", p.Hang),
			Doc:  doc + "#track-scripts",
			Hint: "only a track script that asks HAProxy itself (curl to its monitor-uri) sees a hung HAProxy: check vrrp_script and track_script in lb.sh, and TRACK=on.",
			Run:  func(ctx context.Context, e *check.Env) check.Verdict { return haproxyHangs(ctx, e, p, s) },
		},
		{
			Name: "backend-dies", Title: fmt.Sprintf("a replica killed under load through the VIP: no GET fails, and HAProxy marks it down within %s", p.Detect),
			Doc:  doc + "#the-haproxy-config-line-by-line",
			Hint: "retries with redispatch resend a failed GET to another replica (retries, retry-on, option redispatch); active checks take the dead one out (check inter 500ms fall 2).",
			Run:  func(ctx context.Context, e *check.Env) check.Verdict { return backendDies(ctx, e, p, s) },
		},
		{
			Name: "scale-out", Title: fmt.Sprintf("after scaling to %d replicas, with no reload, the new replicas get traffic within %s", p.ScaleTo, p.Rejoin),
			Doc:  doc + "#scaling-without-a-reload",
			Hint: "HAProxy learns new replicas from Docker's DNS only through a resolvers section and server-template ... resolvers docker (haproxy.cfg).",
			Run:  func(ctx context.Context, e *check.Env) check.Verdict { return scaleOut(ctx, e, p, s) },
		},
		{
			Name: "split-brain", Title: "with VRRP blocked between the nodes both take the VIP (split brain), and one gives it up once they hear each other again",
			Doc:  doc + "#split-brain",
			Hint: "with unicast peers, a node that hears no adverts becomes master: see unicast_peer in lb.sh; once adverts flow again the lower priority must step back.",
			Run:  func(ctx context.Context, e *check.Env) check.Verdict { return splitBrain(ctx, e, p, s) },
		},
	}
}

// holders returns the nodes whose eth0 carries the VIP; a node that cannot be asked (it
// is dead) holds nothing.
func holders(ctx context.Context, p Params, s Stack) []string {
	var out []string
	for _, n := range p.Nodes {
		addrs, err := s.Output(ctx, n, "ip", "-4", "-o", "addr", "show", "dev", "eth0")
		if err == nil && strings.Contains(addrs, " "+p.VIP+"/") {
			out = append(out, n)
		}
	}
	return out
}

// awaitHolders polls until want(holders) or within passes, and returns the last answer
// and when want first held.
func awaitHolders(ctx context.Context, p Params, s Stack, within time.Duration, want func([]string) bool) ([]string, time.Time, bool) {
	deadline := time.Now().Add(within)
	for {
		h := holders(ctx, p, s)
		if want(h) {
			return h, time.Now(), true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return h, time.Time{}, false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func one(h []string) bool { return len(h) == 1 }

// stable waits, bounded by within, until one node holds the VIP and no transition has
// happened for quiet: after a step that moved the VIP, the returning node may still take
// it back (preemption), and a step that measures requests must not count that switch.
func stable(ctx context.Context, p Params, s Stack, quiet, within time.Duration) ([]string, bool) {
	deadline := time.Now().Add(within)
	count := func() (n int) {
		for _, node := range p.Nodes {
			n += len(transitions(ctx, s, node))
		}
		return n
	}
	for time.Now().Before(deadline) && ctx.Err() == nil {
		h0, t0 := holders(ctx, p, s), count()
		time.Sleep(quiet)
		if h1 := holders(ctx, p, s); one(h1) && slices.Equal(h0, h1) && count() == t0 {
			return h1, true
		}
	}
	return holders(ctx, p, s), false
}

func other(p Params, node string) string {
	if node == p.Nodes[0] {
		return p.Nodes[1]
	}
	return p.Nodes[0]
}

// transitions reads a node's VRRP transitions, one line each (see lb/vrrp-notify).
func transitions(ctx context.Context, s Stack, node string) []string {
	out, err := s.Output(ctx, node, "cat", "/run/vrrp-transitions")
	if err != nil {
		return nil
	}
	return strings.Fields(strings.ReplaceAll(out, " ", "_"))
}

func oneHolder(ctx context.Context, e *check.Env, p Params, s Stack) check.Verdict {
	// After a failover, a pause or a restart the pair settles within seconds; a pair that
	// has not after 15 s is wrong (two masters, or one that never stays).
	h, ok := stable(ctx, p, s, p.Quiet, 15*time.Second)
	if !ok {
		return check.Failed("exactly one node holds "+p.VIP+", steadily", fmt.Sprintf("holders %v, not settled after 15s", h))
	}
	replicas, v, ok := check.AwaitRotation(ctx, e, s, p.Service, check.Settled.Within)
	if !ok {
		return v
	}
	res, _ := load.Run(ctx, load.Options{Workers: 8, Duration: 3 * time.Second}, get(e))
	if res.Failed > 0 {
		return check.Failed("no failed requests through the VIP", fmt.Sprintf("%d of %d failed: %v", res.Failed, res.OK+res.Failed, res.Errors))
	}
	if short := check.Unfair(res.ByInstance, replicas, p.Fair); len(short) > 0 {
		return check.Failed(fmt.Sprintf("each of the %d replicas serves at least %.0f%% of an even share", len(replicas), 100*p.Fair), strings.Join(short, "; "))
	}
	return check.Passed("%s holds %s; %d requests over %d replicas: %v", h[0], p.VIP, res.OK, len(replicas), res.ByInstance)
}

// get is a load op: GET /ping through the VIP, accepting only a 200.
func get(e *check.Env) load.Op {
	return func(ctx context.Context) (string, error) {
		r, err := e.Get(ctx, "via the VIP", "/ping")
		if err != nil {
			return "", err
		}
		if r.Status != http.StatusOK {
			return "", load.StatusError{Code: r.Status}
		}
		return r.Header.Get("X-Served-By"), nil
	}
}

func noFlap(ctx context.Context, e *check.Env, p Params, s Stack) check.Verdict {
	// Start from a settled pair, so that a switch the learner caused just before (an
	// unpaused master taking its VIP back) is not counted as a flap.
	if h, ok := stable(ctx, p, s, p.Quiet, 15*time.Second); !ok {
		return check.NotProven("the VIP did not settle on one node: holders %v", h)
	}
	before := map[string]int{}
	for _, n := range p.Nodes {
		before[n] = len(transitions(ctx, s, n))
	}
	h0 := holders(ctx, p, s)
	res, _ := load.Run(ctx, load.Options{Workers: 8, Duration: p.Steady, Rate: p.Rate * 4}, get(e))
	var flaps []string
	for _, n := range p.Nodes {
		if t := transitions(ctx, s, n); len(t) > before[n] {
			flaps = append(flaps, n+": "+strings.Join(t[before[n]:], ", "))
		}
	}
	h1 := holders(ctx, p, s)
	if len(flaps) > 0 || !slices.Equal(h0, h1) {
		return check.Failed("no VRRP transition, the same holder throughout", fmt.Sprintf("holders %v -> %v; transitions: %s", h0, h1, strings.Join(flaps, "; ")))
	}
	if res.Failed > 0 {
		return check.Failed("no failed request under steady load", fmt.Sprintf("%d of %d failed: %v", res.Failed, res.OK+res.Failed, res.Errors))
	}
	return check.Passed("%s held the VIP for %s of load (%d requests, p99 %s), no transition", h1[0], p.Steady, res.OK, check.MS(time.Duration(res.Latency.ValueAtQuantile(99))*time.Microsecond))
}

// sample is one request of a fault's load: when it was sent, and whether it succeeded
// (err), and, for a client that retries once, whether the retry did (final).
type sample struct {
	at         time.Time
	err, final error
}

// underLoad sends GET /ping through the VIP at p.Rate on fresh connections (a client that
// reconnects, as most do after a failover) while fault runs, then for after more.
func underLoad(ctx context.Context, e *check.Env, p Params, before, after time.Duration, fault func() error) ([]sample, error) {
	return underLoadRetrying(ctx, e, p, 0, before, after, fault)
}

// retryAfter is how long a retrying client waits before it tries again: long enough for
// a failover to be over, as a client's backoff would be.
const retryAfter = 500 * time.Millisecond

// underLoadRetrying is underLoad for a client that retries a failed request up to retries
// times, after retryAfter, on a new connection.
func underLoadRetrying(ctx context.Context, e *check.Env, p Params, retries int, before, after time.Duration, fault func() error) ([]sample, error) {
	u := e.Unpooled()
	u.Client.Timeout = p.Timeout
	lctx, stop := context.WithCancel(ctx)
	var mu sync.Mutex
	var out []sample
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = load.Run(lctx, load.Options{Workers: 16, Duration: 10 * time.Minute, Rate: p.Rate}, func(ctx context.Context) (string, error) {
			at := time.Now()
			_, err := get(u)(ctx)
			final := err
			for range retries {
				if final == nil || !check.Pause(ctx, retryAfter) {
					break
				}
				_, final = get(u)(ctx)
			}
			if ctx.Err() == nil {
				mu.Lock()
				out = append(out, sample{at, err, final})
				mu.Unlock()
			}
			return "", final
		})
	}()
	time.Sleep(before)
	err := fault()
	time.Sleep(after)
	stop()
	<-done
	slices.SortFunc(out, func(a, b sample) int { return a.at.Compare(b.at) })
	return out, err
}

// gap measures a fault at t: the requests that failed, and the service gap: the longest
// time between two requests that succeeded (by when they were due), from a second before
// the fault on. At 50 requests a second a healthy stack's gap is 20 ms; a failover's is
// how long clients saw nothing work. -1 when nothing succeeded around t.
func gap(samples []sample, t time.Time) (failed, total int, longest time.Duration) {
	longest = -1
	var last time.Time
	for _, s := range samples {
		total++
		if s.err != nil {
			failed++
			continue
		}
		if !last.IsZero() && s.at.After(t) {
			longest = max(longest, s.at.Sub(last))
		}
		if s.at.After(t.Add(-time.Second)) {
			last = s.at
		}
	}
	// A gap still open when the load ended counts up to the last request sent.
	if n := len(samples); n > 0 && !last.IsZero() && samples[n-1].err != nil {
		longest = max(longest, samples[n-1].at.Sub(last))
	}
	return failed, total, longest
}

// kinds tallies the failures of samples by kind.
func kinds(samples []sample) string {
	m := map[string]int{}
	for _, s := range samples {
		if s.err != nil {
			m[load.Classify(s.err)]++
		}
	}
	return check.Counts(m)
}

func masterKilled(ctx context.Context, e *check.Env, p Params, s Stack) check.Verdict {
	h, ok := stable(ctx, p, s, p.Quiet, 15*time.Second)
	if !ok {
		return check.NotProven("the VIP did not settle on one node: holders %v", h)
	}
	master, backup := h[0], other(p, h[0])
	var killed, moved time.Time
	samples, err := underLoad(ctx, e, p, 2*time.Second, 3*time.Second, func() error {
		killed = time.Now()
		if err := s.Kill(ctx, master); err != nil {
			return err
		}
		_, moved, _ = awaitHolders(ctx, p, s, p.Failover, func(h []string) bool { return slices.Equal(h, []string{backup}) })
		return nil
	})
	if err != nil {
		return check.NotProven("could not kill %s: %v", master, err)
	}
	failed, total, longest := gap(samples, killed)
	if moved.IsZero() {
		return check.Failed(fmt.Sprintf("%s holds the VIP within %s of the kill", backup, p.Failover), fmt.Sprintf("holders: %v", holders(ctx, p, s)))
	}
	if longest < 0 || longest > p.Failover {
		return check.Failed(fmt.Sprintf("requests through the VIP succeed again within %s", p.Failover), fmt.Sprintf("longest gap between successes %s; %d of %d failed: %s", longest, failed, total, kinds(samples)))
	}
	return check.Passed("killed %s: %s held the VIP after %s; no request succeeded for %s; %d of %d requests failed",
		master, backup, check.MS(moved.Sub(killed)), check.MS(longest), failed, total)
}

func failback(ctx context.Context, e *check.Env, p Params, s Stack) check.Verdict {
	h := holders(ctx, p, s)
	dead := ""
	for _, n := range p.Nodes {
		if _, err := s.Output(ctx, n, "true"); err != nil {
			dead = n
		}
	}
	if dead == "" || len(h) != 1 {
		return check.NotProven("needs one node down and the other holding the VIP (master-killed leaves it so); holders %v", h)
	}
	preempt := true // both nodes have the same setting; the live one tells
	if v, err := s.Output(ctx, other(p, dead), "printenv", "PREEMPT"); err == nil && strings.TrimSpace(v) == "false" {
		preempt = false
	}
	var started time.Time
	var back bool
	var took time.Time
	samples, err := underLoad(ctx, e, p, time.Second, 2*time.Second, func() error {
		started = time.Now()
		if err := s.Start(ctx, dead); err != nil {
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := s.WaitHealthy(wctx, dead); err != nil {
			return err
		}
		_, took, back = awaitHolders(ctx, p, s, 6*time.Second, func(h []string) bool { return slices.Equal(h, []string{dead}) })
		return nil
	})
	if err != nil {
		return check.NotProven("could not start %s again: %v", dead, err)
	}
	failed, total, _ := gap(samples, started)
	switch {
	case preempt && dead == p.Nodes[0] && !back:
		return check.Failed(dead+" (the higher priority) takes the VIP back: PREEMPT=true", fmt.Sprintf("holders %v", holders(ctx, p, s)))
	case !preempt && back:
		return check.Failed(dead+" stays backup: PREEMPT=false (nopreempt)", fmt.Sprintf("it took the VIP back after %s", check.MS(took.Sub(started))))
	case back:
		return check.Passed("%s started again and took the VIP back (preempt) %s later; %d of %d requests failed around the switch", dead, check.MS(took.Sub(started)), failed, total)
	}
	if h := holders(ctx, p, s); len(h) != 1 {
		return check.Failed("exactly one holder after the failback", fmt.Sprintf("holders %v", h))
	}
	return check.Passed("%s started again and stayed backup (nopreempt or lower priority); %d of %d requests failed meanwhile", dead, failed, total)
}

// run runs a command in a node and marks it on the chart under a short label: the
// commands themselves are too long to read there.
func run(ctx context.Context, e *check.Env, s Stack, label, node string, cmd ...string) error {
	e.Timeline.Mark(label)
	_, err := s.Output(ctx, node, cmd...)
	return err
}

// freeze stops (or continues) every haproxy process of a node. The lb image has no pkill:
// /proc names them.
func freeze(ctx context.Context, e *check.Env, s Stack, node, signal string) error {
	verb := map[string]string{"STOP": "freeze", "CONT": "thaw"}[signal]
	return run(ctx, e, s, verb+" HAProxy in "+node, node, "bash", "-c",
		`for p in /proc/[0-9]*; do [ "$(cat $p/comm 2>/dev/null)" = haproxy ] && kill -`+signal+` "${p#/proc/}"; done; true`)
}

func haproxyHangs(ctx context.Context, e *check.Env, p Params, s Stack) check.Verdict {
	h, ok := stable(ctx, p, s, p.Quiet, 15*time.Second)
	if !ok {
		return check.NotProven("the VIP did not settle on one node: holders %v", h)
	}
	holder, peer := h[0], other(p, h[0])
	defer func() { _ = freeze(context.WithoutCancel(ctx), e, s, holder, "CONT") }()
	var frozen, moved time.Time
	samples, err := underLoad(ctx, e, p, time.Second, 2*time.Second, func() error {
		frozen = time.Now()
		if err := freeze(ctx, e, s, holder, "STOP"); err != nil {
			return err
		}
		_, moved, _ = awaitHolders(ctx, p, s, p.Hang, func(h []string) bool { return slices.Equal(h, []string{peer}) })
		return nil
	})
	if err != nil {
		return check.NotProven("could not freeze HAProxy in %s: %v", holder, err)
	}
	failed, total, longest := gap(samples, frozen)
	if moved.IsZero() || longest < 0 || longest > p.Hang {
		return check.Failed(fmt.Sprintf("%s takes the VIP and requests succeed again within %s", peer, p.Hang),
			fmt.Sprintf("holders %v; longest gap between successes %s; %d of %d requests failed", holders(ctx, p, s), longest, failed, total))
	}
	return check.Passed("froze HAProxy in %s: %s held the VIP after %s; no request succeeded for %s; %d of %d requests failed",
		holder, peer, check.MS(moved.Sub(frozen)), check.MS(longest), failed, total)
}

// slots reads a node's HAProxy stats CSV: server slot -> status (UP, DOWN, MAINT, ...).
func slots(ctx context.Context, e *check.Env, p Params, node string) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s:%d/stats;csv", node, p.StatsPort), nil)
	if err != nil {
		return nil, err
	}
	resp, err := e.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	r := csv.NewReader(io.LimitReader(resp.Body, 1<<20))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil || len(rows) == 0 {
		return nil, fmt.Errorf("stats CSV: %v", err)
	}
	col := slices.Index(rows[0], "status")
	if col < 0 {
		return nil, fmt.Errorf("stats CSV has no status column")
	}
	out := map[string]string{}
	for _, row := range rows[1:] {
		if len(row) > col && row[0] == "servers" && row[1] != "BACKEND" {
			out[row[1]] = row[col]
		}
	}
	return out, nil
}

func up(sl map[string]string) []string {
	var out []string
	for k, v := range sl {
		if strings.HasPrefix(v, "UP") {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func backendDies(ctx context.Context, e *check.Env, p Params, s Stack) check.Verdict {
	replicas, v, ok := check.AwaitRotation(ctx, e, s, p.Service, check.Settled.Within)
	if !ok {
		return v
	}
	h, ok := stable(ctx, p, s, p.Quiet, 15*time.Second)
	if !ok {
		return check.NotProven("the VIP did not settle on one node: holders %v", h)
	}
	before, err := slots(ctx, e, p, h[0])
	if err != nil {
		return check.NotProven("reading %s's stats: %v", h[0], err)
	}
	victim := replicas[len(replicas)-1]
	var killed time.Time
	var detected time.Duration = -1
	samples, err := underLoad(ctx, e, p, time.Second, time.Second, func() error {
		killed = time.Now()
		if err := s.KillReplica(ctx, p.Service, victim); err != nil {
			return err
		}
		for time.Since(killed) < 2*p.Detect && ctx.Err() == nil {
			if now, err := slots(ctx, e, p, h[0]); err == nil && len(up(now)) < len(up(before)) {
				detected = time.Since(killed)
				return nil
			}
			time.Sleep(50 * time.Millisecond)
		}
		return nil
	})
	defer func() { // the replica comes back for the steps after this one
		_ = s.Start(context.WithoutCancel(ctx), p.Service)
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = s.WaitHealthy(wctx, p.Service)
	}()
	if err != nil {
		return check.NotProven("could not kill %s: %v", victim, err)
	}
	failed, total, _ := gap(samples, killed)
	if failed > 0 {
		return check.Failed("no failed GET while a replica dies (retried on another)", fmt.Sprintf("%d of %d failed: %s", failed, total, kinds(samples)))
	}
	if detected < 0 || detected > p.Detect {
		return check.Failed(fmt.Sprintf("HAProxy marks %s down within %s", victim, p.Detect), fmt.Sprintf("not within %s; slots up before: %v", 2*p.Detect, up(before))).
			WithHint("active checks find a dead replica after fall x inter: default-server check inter 500ms fall 2 in haproxy.cfg.")
	}
	return check.Passed("killed %s: 0 failed of %d GETs through the VIP; %s marked it down %s after the kill", victim, total, h[0], check.MS(detected))
}

func scaleOut(ctx context.Context, e *check.Env, p Params, s Stack) check.Verdict {
	before, v, ok := check.AwaitRotation(ctx, e, s, p.Service, check.Settled.Within)
	if !ok {
		return v
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 60*time.Second)
		defer cancel()
		_ = s.Scale(cctx, p.Service, len(before))
	}()
	if err := s.Scale(ctx, p.Service, p.ScaleTo); err != nil {
		return check.NotProven("could not scale %s to %d: %v", p.Service, p.ScaleTo, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	err := s.WaitHealthy(wctx, p.Service)
	cancel()
	if err != nil {
		return check.NotProven("the new replicas did not become healthy: %v", err)
	}
	healthy := time.Now()
	after, err := s.Replicas(ctx, p.Service)
	if err != nil {
		return check.NotProven("listing replicas: %v", err)
	}
	seen := map[string]int64{}
	for time.Since(healthy) < p.Rejoin && ctx.Err() == nil {
		res, _ := load.Run(ctx, load.Options{Workers: 8, Duration: time.Second}, get(e))
		for k, n := range res.ByInstance {
			seen[k] += n
		}
		if !slices.ContainsFunc(after, func(r string) bool { return seen[r] == 0 }) {
			return check.Passed("scaled %d -> %d replicas with no reload: all served within %s of being healthy: %v", len(before), len(after), time.Since(healthy).Round(100*time.Millisecond), seen)
		}
	}
	var missing []string
	for _, r := range after {
		if seen[r] == 0 {
			missing = append(missing, r)
		}
	}
	return check.Failed(fmt.Sprintf("every one of the %d replicas serves within %s, with no reload", len(after), p.Rejoin), fmt.Sprintf("%s got nothing: %v", strings.Join(missing, ", "), seen))
}

func splitBrain(ctx context.Context, e *check.Env, p Params, s Stack) check.Verdict {
	h, ok := stable(ctx, p, s, p.Quiet, 15*time.Second)
	if !ok {
		return check.NotProven("the VIP did not settle on one node: holders %v", h)
	}
	master, peer := h[0], other(p, h[0])
	peerAddr, err := s.Output(ctx, peer, "bash", "-c", `ip -4 -o addr show dev eth0 | awk '{ sub("/.*", "", $4); print $4; exit }'`)
	if err != nil {
		return check.NotProven("reading %s's address: %v", peer, err)
	}
	// The master's packets to its peer go to a MAC address nobody has, so its adverts no
	// longer arrive and the peer believes it dead. (A blackhole route would not do:
	// keepalived sends on a socket bound to eth0, which only eth0's routes serve.)
	addr := strings.TrimSpace(peerAddr)
	if err := run(ctx, e, s, "cut "+master+" -> "+peer, master, "ip", "neigh", "replace", addr, "lladdr", "02:00:00:00:06:66", "dev", "eth0", "nud", "permanent"); err != nil {
		return check.NotProven("could not block %s -> %s: %v", master, peer, err)
	}
	blocked := time.Now()
	both, at, split := awaitHolders(ctx, p, s, 5*time.Second, func(h []string) bool { return len(h) == 2 })
	if err := run(context.WithoutCancel(ctx), e, s, "reconnect "+master+" -> "+peer, master, "ip", "neigh", "del", addr, "dev", "eth0"); err != nil {
		return check.NotProven("could not unblock %s -> %s: %v", master, peer, err)
	}
	unblocked := time.Now()
	if !split {
		return check.Failed("both nodes hold the VIP while they cannot hear each other", fmt.Sprintf("holders %v", both))
	}
	healed, hat, ok := awaitHolders(ctx, p, s, 10*time.Second, one)
	if !ok {
		return check.Failed("one holder again once adverts flow", fmt.Sprintf("holders %v after 10s", healed))
	}
	return check.Passed("cut %s -> %s: both held %s after %s (split brain detected); reconnected: %s alone after %s",
		master, peer, p.VIP, check.MS(at.Sub(blocked)), healed[0], check.MS(hat.Sub(unblocked)))
}
