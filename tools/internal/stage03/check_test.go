package stage03

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/sysdesign-course/course/tools/internal/check"
	"github.com/sysdesign-course/course/tools/internal/check/checktest"
)

// The fake is the stage-03 stack in process: three replicas (the real httpserver, so
// X-Served-By is the real one) behind a front standing in for nginx as
// stages/03-replicas/nginx.conf sets it up: round robin over the peers it resolved at
// start or reload, a failed try retried on another peer, and a peer that failed once left
// alone for failTimeout, then probed by one request. A killed replica's address stops
// answering, so a try on it costs connectTimeout, as in Docker.
//
// Timings are shortened, and sized so the correct fake passes on a loaded machine under
// -race: two workers, so at most one other request is caught on the dead replica when
// the first one detects it, plus one probe after failTimeout, which stays within
// kill-replica's allowance of two; a try on a dead replica (600 ms) is well above Slow,
// and Slow well above any hiccup of a healthy request (10 ms of work).
const (
	connectTimeout = 600 * time.Millisecond // proxy_connect_timeout
	failTimeout    = time.Second            // fail_timeout, short so a restarted replica is probed soon
	tries          = 3                      // proxy_next_upstream_tries
)

var fast = Params{Service: "server", Proxy: "nginx", Workers: 2, Rate: 100, Fair: 0.6, Slow: 450 * time.Millisecond, ScaleTo: 5,
	Spread: time.Second, BeforeKill: 500 * time.Millisecond, AfterKill: 2 * time.Second, Probe: 500 * time.Millisecond, Rejoin: 4 * time.Second}

// flaws are the known-broken variants of the fake nginx; the zero value is a correct one.
type flaws struct {
	heavyFirst bool          // the first server line has weight=4: the others get a sixth each
	noRetry    bool          // no proxy_next_upstream: a failed try is the client's 502
	noEjection bool          // no max_fails: the dead replica is tried again on every pass
	noReload   bool          // nginx -s reload does not resolve the replicas again
	lateJoin   time.Duration // the last replica enters rotation this long after the start
}

type peer struct {
	addr   string
	joinAt time.Time
	fails  int       // failed tries in a row
	until  time.Time // while fails > 0, out of rotation until then
}

// front is the fake nginx.
type front struct {
	flaws
	cluster *checktest.Cluster
	client  *http.Client

	mu    sync.Mutex
	peers []*peer
	turns []*peer // the peers in round-robin order, a heavy one several times
	next  int
}

// newStack starts the replicas and the front, and returns the cluster and the front's URL.
func newStack(t *testing.T, fl flaws) (*checktest.Cluster, string) {
	f := &front{flaws: fl}
	f.cluster = checktest.NewCluster(t, checktest.ClusterConfig{
		Service: "server", Replicas: 3, Handler: checktest.ReadReplica, Work: 10 * time.Millisecond, CPUs: 1,
		Exec: func(service string, cmd []string) error {
			if service != "nginx" || !slices.Equal(cmd, []string{"nginx", "-s", "reload"}) {
				return fmt.Errorf("unexpected %s in %s", cmd, service)
			}
			if !fl.noReload {
				f.reload()
			}
			return nil
		},
	})
	f.client = &http.Client{Transport: &http.Transport{DialContext: f.cluster.Dial(connectTimeout), MaxIdleConnsPerHost: 16}}
	f.reload()
	f.peers[len(f.peers)-1].joinAt = time.Now().Add(fl.lateJoin)
	ts := httptest.NewServer(f)
	t.Cleanup(ts.Close)
	return f.cluster, ts.URL
}

// reload resolves the replicas again: new peers, their failure counts forgotten.
func (f *front) reload() {
	names, _ := f.cluster.Replicas(context.Background(), "server")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.peers, f.turns = nil, nil
	for i, n := range names {
		p := &peer{addr: n}
		f.peers = append(f.peers, p)
		weight := 1
		if i == 0 && f.heavyFirst {
			weight = 4
		}
		for range weight {
			f.turns = append(f.turns, p)
		}
	}
}

// pick returns the next peer in turn that is in rotation and not tried yet. A peer whose
// failTimeout ran out is picked by one request, which starts a new timeout: nginx's probe.
func (f *front) pick(tried []*peer) *peer {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	for range f.turns {
		p := f.turns[f.next%len(f.turns)]
		f.next++
		if slices.Contains(tried, p) || now.Before(p.joinAt) || p.fails > 0 && now.Before(p.until) {
			continue
		}
		if p.fails > 0 {
			p.until = now.Add(failTimeout)
		}
		return p
	}
	return nil
}

func (f *front) done(p *peer, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case err == nil:
		p.fails = 0
	case !f.noEjection:
		p.fails++
		p.until = time.Now().Add(failTimeout)
	}
}

func (f *front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var tried []*peer
	for range tries {
		p := f.pick(tried)
		if p == nil {
			break
		}
		tried = append(tried, p)
		resp, body, err := f.forward(r, p)
		if r.Context().Err() != nil {
			return // the client went away: not the peer's failure (nginx's 499)
		}
		f.done(p, err)
		if err == nil {
			for k, v := range resp.Header {
				w.Header()[k] = v
			}
			w.WriteHeader(resp.StatusCode)
			_, _ = w.Write(body)
			return
		}
		if f.noRetry {
			break
		}
	}
	http.Error(w, "502 Bad Gateway", http.StatusBadGateway)
}

func (f *front) forward(r *http.Request, p *peer) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(r.Context(), r.Method, "http://"+p.addr+r.URL.RequestURI(), nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

func runCheck(t *testing.T, fl flaws) (map[string]check.Result, check.Outcome, string) {
	cluster, target := newStack(t, fl)
	return checktest.Run("stage-3", Steps(fast, cluster), checktest.Env(target, fast.Workers))
}

func TestCheckPassesOnACorrectStack(t *testing.T) {
	t.Parallel()
	results, outcome, out := runCheck(t, flaws{})
	checktest.Passes(t, 3, results, outcome, out)
}

// Each known-broken nginx must fail exactly the step that proves what it breaks, with the
// hint that points at the cause, and pass the others.
func TestCheckFailsOnKnownBrokenStacks(t *testing.T) {
	t.Parallel()
	checktest.FailEach(t, doc+"#", []checktest.Broken[flaws]{
		{Name: "weight 4 on the first replica", Flaws: flaws{heavyFirst: true},
			Failing: "fair-share", Hint: "upstream block", Actual: "even share"},
		{Name: "no retry on a dead replica", Flaws: flaws{noRetry: true},
			Failing: "kill-replica", Hint: "proxy_next_upstream", Actual: "requests failed"},
		{Name: "no passive ejection", Flaws: flaws{noEjection: true},
			Failing: "kill-replica", Hint: "keeps sending requests to the dead replica", Actual: "or more"},
		{Name: "reload does not pick up new replicas", Flaws: flaws{noReload: true},
			Failing: "scale-out", Hint: "reloads it after compose adds", Actual: "got none"},
	}, runCheck)
}

// A replica still starting, not yet in the front's rotation, is not the stack's fault:
// fair-share must not fail on it (it may wait for it, or say it could not prove anything).
func TestFairShareDoesNotFailOnAReplicaStillStarting(t *testing.T) {
	t.Parallel()
	cluster, target := newStack(t, flaws{lateJoin: 1500 * time.Millisecond})
	env := checktest.Env(target, fast.Workers)
	env.Stack = cluster // the check sees that the replica has just started, and waits for it
	results, _, out := checktest.Run("stage-3", Steps(fast, cluster)[:1], env)
	assert.Equal(t, check.Pass, results["fair-share"].Outcome, out)
}

// The negative control in course.toml: stage 02's stack, one server and no nginx. Nothing
// answers at the target, and fair-share must fail on it, not call it inconclusive because
// it found one replica.
func TestFairShareFailsWithoutABalancer(t *testing.T) {
	t.Parallel()
	cluster := checktest.NewCluster(t, checktest.ClusterConfig{Service: "server", Replicas: 1, Handler: checktest.ReadReplica, CPUs: 1})
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	env := checktest.Env(dead.URL, fast.Workers)
	env.Stack = cluster
	results, _, out := checktest.Run("stage-3", Steps(fast, cluster)[:1], env)
	assert.Equal(t, check.Fail, results["fair-share"].Outcome, out)
	assert.Contains(t, results["fair-share"].Actual, "connection refused", out)
}
