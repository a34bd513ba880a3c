package stage06

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sysdesign-course/course/tools/internal/check"
	"github.com/sysdesign-course/course/tools/internal/check/checktest"
)

// The fake is the stage-06 stack in process. Two nodes elect a holder of the VIP as
// keepalived does (the higher priority among those eligible; a node whose HAProxy is
// frozen is not eligible while its track script runs; a backup takes over a takeover
// after the holder went away; a node that cannot send adverts to its peer leaves the
// peer to take the VIP too). The VIP is an HTTP front that hands each request to the
// holder's "HAProxy": round robin over the replicas it knows, a failed try retried on
// another, and active checks that mark a replica down after two failed probes. Requests
// that reach no holder, or a frozen one, hang until the client gives up, as packets to a
// dead or stopped node do.

// flaws are the known-broken variants; the zero value is a correct stack.
type flaws struct {
	trackOff     bool // no track script: a frozen HAProxy keeps the VIP
	slowFailover bool // the backup waits far longer than the check allows before taking over
	flappy       bool // the VIP hops between the nodes now and then under load
	noRetry      bool // a GET that reached a dead replica is the client's 502
	noDNS        bool // the replicas are the ones known at start: scaling adds nothing
	noSplit      bool // the backup never takes the VIP while its master lives (it hears it another way)
	nopreempt    bool // PREEMPT=false: configured, and obeyed
	takesBack    bool // PREEMPT=false configured, but the returning master takes the VIP back anyway
}

const (
	takeover     = 150 * time.Millisecond // about 3 adverts of 50 ms
	inter        = 80 * time.Millisecond  // the fake HAProxy's active check interval
	resolveEvery = time.Second            // its DNS refresh: a dead replica stays a slot until then
)

var fast = Params{Nodes: [2]string{"lb1", "lb2"}, VIP: "10.206.6.10", Service: "server", StatsPort: 8404,
	Rate: 40, Timeout: 500 * time.Millisecond, Fair: 0.5, Steady: 1500 * time.Millisecond, Failover: 2 * time.Second,
	Hang: 2500 * time.Millisecond, Detect: 1500 * time.Millisecond, ScaleTo: 5, Rejoin: 3 * time.Second, Quiet: 300 * time.Millisecond}

type node struct {
	name, addr             string
	prio                   int
	alive, frozen, blocked bool
	gone                   time.Time // when it stopped being eligible (zero while it is)
	killed                 bool      // it went silently (SIGKILL), not with a goodbye advert
	back                   time.Time // when it became eligible again
	transitions            []string
}

type fake struct {
	flaws
	cluster *checktest.Cluster
	client  *http.Client // the fake HAProxy's, to the replicas

	mu      sync.Mutex
	nodes   [2]*node
	holders map[string]bool
	dns     []string         // the replicas HAProxy resolved last (flaws.noDNS: at start only)
	fails   map[string]int   // consecutive failed probes per replica
	next    atomic.Uint64    // round robin
	front   *httptest.Server // the VIP
	stats   [2]*httptest.Server
}

func newFake(t *testing.T, fl flaws) *fake {
	f := &fake{flaws: fl, holders: map[string]bool{}, fails: map[string]int{}}
	f.cluster = checktest.NewCluster(t, checktest.ClusterConfig{Service: "server", Replicas: 3, Handler: checktest.ReadReplica, CPUs: 1})
	f.client = &http.Client{Timeout: 300 * time.Millisecond, Transport: &http.Transport{DialContext: f.cluster.Dial(150 * time.Millisecond)}}
	f.nodes = [2]*node{{name: "lb1", addr: "10.206.6.11", prio: 150, alive: true}, {name: "lb2", addr: "10.206.6.12", prio: 100, alive: true}}
	f.dns, _ = f.cluster.Replicas(context.Background(), "server")
	f.front = httptest.NewServer(http.HandlerFunc(f.serveVIP))
	t.Cleanup(f.front.Close)
	for i := range f.nodes {
		f.stats[i] = httptest.NewServer(http.HandlerFunc(f.serveStats))
		t.Cleanup(f.stats[i].Close)
	}
	ctx, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	go f.run(ctx)
	return f
}

// run is keepalived on both nodes and HAProxy's active checks, every few milliseconds.
func (f *fake) run(ctx context.Context) {
	elect, probe, resolve := time.NewTicker(10*time.Millisecond), time.NewTicker(inter), time.NewTicker(resolveEvery)
	defer elect.Stop()
	defer probe.Stop()
	defer resolve.Stop()
	flap := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-elect.C:
			f.mu.Lock()
			f.elect(time.Now(), &flap)
			f.mu.Unlock()
		case <-probe.C:
			f.check(ctx)
		case <-resolve.C:
			if names, err := f.cluster.Replicas(ctx, "server"); err == nil && !f.noDNS {
				f.mu.Lock()
				f.dns = names
				f.mu.Unlock()
			}
		}
	}
}

func (f *fake) eligible(n *node) bool { return n.alive && !(n.frozen && !f.trackOff) }

// elect moves the VIP as VRRP would; the caller holds mu.
func (f *fake) elect(now time.Time, flap *time.Time) {
	// A backup takes over a takeover after a node leaving with a goodbye advert (priority
	// 0: a FAULT); after one that vanished (SIGKILL) it waits the master-down interval.
	downWait := takeover
	if f.slowFailover { // just over what the check allows, so the steps after it find a holder
		downWait = fast.Failover + 500*time.Millisecond
	}
	for _, n := range f.nodes {
		switch ok := f.eligible(n); {
		case !ok && n.gone.IsZero():
			n.gone, n.back = now, time.Time{}
			f.set(n, false)
		case ok && !n.gone.IsZero():
			n.gone, n.back = time.Time{}, now
		}
	}
	a, b := f.nodes[0], f.nodes[1]
	for _, pair := range [][2]*node{{a, b}, {b, a}} {
		n, peer := pair[0], pair[1]
		if !f.eligible(n) || f.holders[n.name] {
			continue
		}
		wait := takeover
		if peer.killed {
			wait = downWait
		}
		peerGone := !f.holders[peer.name] && (peer.gone.IsZero() || now.Sub(peer.gone) >= wait) ||
			f.holders[peer.name] && peer.blocked && !f.noSplit
		preempts := f.holders[peer.name] && n.prio > peer.prio && !n.back.IsZero() && now.Sub(n.back) >= takeover &&
			(!f.nopreempt || f.takesBack)
		if f.holders[peer.name] && peer.blocked && !f.noSplit {
			f.set(n, true) // it hears no adverts: it believes its peer dead
		} else if peerGone && !f.holders[peer.name] || preempts {
			f.set(peer, false)
			f.set(n, true)
		}
	}
	if f.flappy && now.Sub(*flap) > 700*time.Millisecond && f.eligible(a) && f.eligible(b) {
		*flap = now
		f.set(a, !f.holders[a.name])
		f.set(b, !f.holders[a.name])
	}
	if f.holders[a.name] && f.holders[b.name] && !a.blocked && !b.blocked { // adverts flow again: the lower one yields
		f.set(b, false)
	}
}

func (f *fake) set(n *node, holds bool) {
	if f.holders[n.name] == holds {
		return
	}
	f.holders[n.name] = holds
	state := "BACKUP"
	if holds {
		state = "MASTER"
	}
	n.transitions = append(n.transitions, time.Now().Format(time.RFC3339Nano)+" "+n.name+" "+state)
}

// known are the replicas the fake HAProxy balances; the caller holds mu.
func (f *fake) known() []string { return f.dns }

// check probes every replica's /readyz: two failures in a row mark it down.
func (f *fake) check(ctx context.Context) {
	f.mu.Lock()
	names := slices.Clone(f.known())
	f.mu.Unlock()
	for _, r := range names {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r+"/readyz", nil)
		resp, err := f.client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		f.mu.Lock()
		if err != nil || resp.StatusCode != http.StatusOK {
			f.fails[r]++
		} else {
			f.fails[r] = 0
		}
		f.mu.Unlock()
	}
}

func (f *fake) holder() *node {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range f.nodes {
		if f.holders[n.name] && !n.frozen {
			return n
		}
	}
	return nil
}

// serveVIP is the virtual address: the holder's HAProxy, or silence.
func (f *fake) serveVIP(w http.ResponseWriter, r *http.Request) {
	if f.holder() == nil {
		<-r.Context().Done() // nobody answers: the client's timeout ends it
		return
	}
	f.mu.Lock()
	var up []string
	for _, name := range f.known() {
		if f.fails[name] < 2 {
			up = append(up, name)
		}
	}
	f.mu.Unlock()
	tries := 3
	if f.noRetry {
		tries = 1
	}
	start := f.next.Add(1)
	for i := 0; i < tries && len(up) > 0; i++ {
		name := up[(start+uint64(i))%uint64(len(up))] // a retry goes to another replica (redispatch)
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, "http://"+name+r.URL.RequestURI(), nil)
		resp, err := f.client.Do(req)
		if err != nil {
			continue
		}
		defer resp.Body.Close()
		w.Header().Set("X-Served-By", resp.Header.Get("X-Served-By"))
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
		return
	}
	http.Error(w, "bad gateway", http.StatusBadGateway)
}

// serveStats is a node's stats CSV: one row per server slot.
func (f *fake) serveStats(w http.ResponseWriter, _ *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fmt.Fprintln(w, "# pxname,svname,status")
	for i, name := range f.known() {
		status := "UP"
		if f.fails[name] >= 2 {
			status = "DOWN"
		}
		fmt.Fprintf(w, "servers,srv%d,%s\n", i+1, status)
	}
	fmt.Fprintln(w, "servers,BACKEND,UP")
}

func (f *fake) node(name string) (*node, error) {
	for _, n := range f.nodes {
		if n.name == name {
			return n, nil
		}
	}
	return nil, fmt.Errorf("no service %q", name)
}

// The Stack: the nodes by name, the replicas through the cluster.

func (f *fake) Replicas(ctx context.Context, service string) ([]string, error) {
	return f.cluster.Replicas(ctx, service)
}
func (f *fake) KillReplica(ctx context.Context, service, host string) error {
	return f.cluster.KillReplica(ctx, service, host)
}
func (f *fake) Scale(ctx context.Context, service string, n int) error {
	return f.cluster.Scale(ctx, service, n)
}

func (f *fake) Kill(_ context.Context, service string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.node(service)
	if err == nil {
		n.alive, n.frozen, n.blocked, n.killed = false, false, false, true
	}
	return err
}

func (f *fake) Start(ctx context.Context, service string) error {
	if service == "server" {
		return f.cluster.Start(ctx, service)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.node(service)
	if err == nil {
		n.alive, n.killed = true, false
	}
	return err
}

func (f *fake) WaitHealthy(ctx context.Context, service string) error {
	if service == "server" {
		return f.cluster.WaitHealthy(ctx, service)
	}
	return nil
}

// act carries out a command that changes a node; the caller holds mu.
func (f *fake) act(n *node, all string) error {
	switch {
	case strings.Contains(all, "kill -STOP"):
		n.frozen = true
	case strings.Contains(all, "kill -CONT"):
		n.frozen = false
	case strings.HasPrefix(all, "ip neigh replace"):
		n.blocked = true
	case strings.HasPrefix(all, "ip neigh del"):
		n.blocked = false
	default:
		return fmt.Errorf("unexpected %q in %s", all, n.name)
	}
	return nil
}

func (f *fake) Output(_ context.Context, service string, cmd ...string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.node(service)
	if err != nil || !n.alive {
		return "", errors.Join(err, fmt.Errorf("%s is not running", service))
	}
	all := strings.Join(cmd, " ")
	switch {
	case all == "ip -4 -o addr show dev eth0":
		out := "2: eth0    inet " + n.addr + "/24 brd 10.206.6.255 scope global eth0\n"
		if f.holders[n.name] {
			out += "2: eth0    inet " + fast.VIP + "/24 scope global secondary eth0\n"
		}
		return out, nil
	case all == "true":
		return "", nil
	case all == "printenv PREEMPT":
		return fmt.Sprint(!f.nopreempt && !f.takesBack), nil
	case all == "cat /run/vrrp-transitions":
		return strings.Join(n.transitions, "\n"), nil
	case strings.HasPrefix(all, "bash -c ip -4 -o addr show dev eth0"):
		return n.addr + "\n", nil
	}
	return "", f.act(n, all)
}

// env reaches the VIP and each node's stats page at the names the check uses.
func (f *fake) env() *check.Env {
	e := checktest.Env("http://"+fast.VIP+":8080", 8)
	route := map[string]string{fast.VIP + ":8080": f.front.Listener.Addr().String(),
		"lb1:8404": f.stats[0].Listener.Addr().String(), "lb2:8404": f.stats[1].Listener.Addr().String()}
	e.Client.Transport = &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if to, ok := route[addr]; ok {
			addr = to
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	return e
}

func runCheck(t *testing.T, fl flaws) (map[string]check.Result, check.Outcome, string) {
	f := newFake(t, fl)
	time.Sleep(3 * takeover) // lb1 wins the first election
	return checktest.Run("stage-6", Steps(fast, f), f.env())
}

func TestCheckPassesOnACorrectStack(t *testing.T) {
	t.Parallel()
	results, outcome, out := runCheck(t, flaws{})
	checktest.Passes(t, 8, results, outcome, out)
}

func TestCheckPassesWithNopreempt(t *testing.T) {
	t.Parallel()
	results, outcome, out := runCheck(t, flaws{nopreempt: true})
	checktest.Passes(t, 8, results, outcome, out)
	if !slices.Contains(strings.Fields(results["failback"].Seen), "backup") {
		t.Errorf("failback should say the old master stayed backup: %s", results["failback"].Seen)
	}
}

// Each known-broken stack must fail exactly the step that proves what it breaks.
func TestCheckFailsOnKnownBrokenStacks(t *testing.T) {
	t.Parallel()
	checktest.FailEach(t, doc+"#", []checktest.Broken[flaws]{
		{Name: "no track script", Flaws: flaws{trackOff: true}, Failing: "haproxy-hangs", Hint: "track script", Actual: "holders"},
		{Name: "slow failover", Flaws: flaws{slowFailover: true}, Failing: "master-killed", Hint: "advert_int", Actual: "holders"},
		{Name: "flapping", Flaws: flaws{flappy: true}, Failing: "no-flap", Hint: "advert_int", Actual: "transitions"},
		{Name: "no retries", Flaws: flaws{noRetry: true}, Failing: "backend-dies", Hint: "redispatch", Actual: "failed"},
		{Name: "no DNS", Flaws: flaws{noDNS: true}, Failing: "scale-out", Hint: "resolvers", Actual: "got nothing"},
		{Name: "no split brain", Flaws: flaws{noSplit: true}, Failing: "split-brain", Hint: "unicast_peer", Actual: "holders"},
		{Name: "nopreempt ignored", Flaws: flaws{takesBack: true}, Failing: "failback", Hint: "nopreempt", Actual: "took the VIP back"},
	}, runCheck)
}

func TestGapIsTheLongestTimeWithoutASuccess(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	bad := errors.New("timeout")
	samples := []sample{{at(-3000), nil, nil}, {at(-20), nil, nil}, {at(0), bad, bad}, {at(20), nil, nil}, {at(40), bad, bad}, {at(60), bad, bad}, {at(700), nil, nil}, {at(720), nil, nil}}
	failed, total, longest := gap(samples, at(0))
	if failed != 3 || total != 8 || longest != 680*time.Millisecond {
		t.Errorf("gap = %d failed of %d, longest %s; want 3 of 8, 680ms", failed, total, longest)
	}
	if _, _, longest := gap(samples[:6], at(0)); longest != 40*time.Millisecond {
		t.Errorf("a gap still open at the end counts to the last request: want 40ms, got %s", longest)
	}
	if _, _, longest := gap(samples[:1], at(0)); longest != -1 {
		t.Errorf("nothing around the fault: want -1, got %s", longest)
	}
}
