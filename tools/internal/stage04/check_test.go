package stage04

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sysdesign-course/course/shared/balancer"
	"github.com/sysdesign-course/course/shared/httpserver"
	"github.com/sysdesign-course/course/shared/prime"
	"github.com/sysdesign-course/course/shared/registrar"
	"github.com/sysdesign-course/course/tools/internal/check"
	"github.com/sysdesign-course/course/tools/internal/check/checktest"
)

// The fake is the stage-04 stack in process: the real balancer (shared/balancer, proxy and
// admin) in front of two servers (the real httpserver and is-prime) that register through
// the real registrar whenever they start, as the stage's server does. A server's name is
// its address, so Params.Port is empty. A request costs a server work/CPUs of waiting
// rather than of CPU, so the check's CPU cut slows one server without loading the machine,
// and a small N keeps the prime test itself negligible.
const work = 12500 * time.Microsecond // 25 ms per request at the stage's 0.5 CPU, 125 ms at 0.1

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// correct is the stage's balancer configuration, with checks every 100 ms instead of 500.
func correct() balancer.Config {
	return balancer.Config{Strategy: string(balancer.RoundRobin), HealthPath: "/healthz", HealthInterval: 100 * time.Millisecond,
		HealthTimeout: time.Second, Rise: 2, Fall: 3, PassiveErrors: 3, PassiveWindow: 10 * time.Second,
		Retries: 1, ConnectTimeout: 500 * time.Millisecond, ResponseTimeout: 5 * time.Second}
}

// flaws are the known-broken variants; the zero value is the stage's stack.
type flaws struct {
	lateRegistration bool                   // server 2 does not register when it first starts, only once restarted
	config           func(*balancer.Config) // changes the balancer's configuration
	editConfig       func(map[string]any)   // rewrites PUT /config bodies before the balancer reads them
	// The strategies need server 2 back: a balancer that never brings it back fails them
	// too, for the same cause, so only the phases run.
	phasesOnly bool
}

// newStack starts the balancer and the servers, and returns the cluster, the check's
// shortened Params and the balancer's URL.
func newStack(t *testing.T, fl flaws) (*checktest.Cluster, Params, string) {
	cfg := correct()
	if fl.config != nil {
		fl.config(&cfg)
	}
	lb, err := balancer.New(cfg, quiet)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go lb.RunHealthChecks(ctx)
	var adminHandler http.Handler = lb.Admin()
	if fl.editConfig != nil {
		adminHandler = rewriteConfig(adminHandler, fl.editConfig)
	}
	admin := httptest.NewServer(adminHandler)
	t.Cleanup(admin.Close)
	proxy := httptest.NewServer(lb)
	t.Cleanup(proxy.Close)

	var starts atomic.Int32
	cluster := checktest.NewCluster(t, checktest.ClusterConfig{
		Service: "server", Replicas: 2, Handler: server, Work: work, CPUs: Defaults.ServerCPUs,
		Started: func(r *checktest.Replica) {
			if starts.Add(1) == 2 && fl.lateRegistration {
				return
			}
			reg := registrar.Config{BalancerURL: admin.URL, SelfURL: "http://" + r.Name, Weight: 1}
			assert.NoError(t, registrar.Register(ctx, reg, quiet))
		},
	})
	p := Params{Service: "server", Admin: admin.URL, N: 10_007, Clients: 4, Phase: time.Second,
		Detect: time.Second, ServerCPUs: Defaults.ServerCPUs, SlowCPUs: Defaults.SlowCPUs}
	return cluster, p, proxy.URL
}

// server is the stage-04 server's is-prime path.
func server(name string) http.Handler {
	s := httpserver.New(httpserver.Config{Instance: name}, quiet)
	prime.Register(s.Echo)
	return s.Echo
}

// rewriteConfig passes PUT /config bodies through edit before h sees them.
func rewriteConfig(h http.Handler, edit func(map[string]any)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && r.URL.Path == "/config" {
			var body map[string]any
			if json.NewDecoder(r.Body).Decode(&body) == nil {
				edit(body)
			}
			b, _ := json.Marshal(body)
			r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
		}
		h.ServeHTTP(w, r)
	})
}

func runCheck(t *testing.T, fl flaws) (map[string]check.Result, check.Outcome, string) {
	cluster, p, target := newStack(t, fl)
	steps, _ := Steps(p, cluster)
	if fl.phasesOnly {
		steps = steps[:3]
	}
	return checktest.Run("stage-4", steps, checktest.Env(target, p.Clients))
}

func TestCheckPassesOnTheCourseBalancer(t *testing.T) {
	t.Parallel()
	results, outcome, out := runCheck(t, flaws{})
	checktest.Passes(t, 5, results, outcome, out)
}

// Each known-broken stack must fail exactly the step that proves what it breaks, with the
// hint that points at the cause, and pass the others.
func TestCheckFailsOnKnownBrokenStacks(t *testing.T) {
	t.Parallel()
	checktest.FailEach(t, doc+"#", []checktest.Broken[flaws]{
		{Name: "server 2 registers only when restarted", Flaws: flaws{lateRegistration: true},
			Failing: "phase-1", Hint: "registered with the balancer", Actual: "per server"},
		{Name: "health checks, passive ejection and retries off (the negative control)", Flaws: flaws{config: func(c *balancer.Config) {
			c.HealthInterval, c.PassiveErrors, c.Retries = 0, 0, 0
		}}, Failing: "phase-2", Hint: "LB_RETRIES", Actual: "failed"},
		{Name: "a dead server marked down only after 50 failed checks", Flaws: flaws{config: func(c *balancer.Config) {
			c.PassiveErrors, c.Fall = 0, 50
		}}, Failing: "phase-2", Hint: "LB_PASSIVE_ERRORS", Actual: "still up"},
		{Name: "active checks off", Flaws: flaws{config: func(c *balancer.Config) { c.HealthInterval = 0 }, phasesOnly: true},
			Failing: "phase-3", Hint: "LB_RISE", Actual: "down"},
		{Name: "weights never reach the strategy", Flaws: flaws{editConfig: func(b map[string]any) { delete(b, "weights") }},
			Failing: "weighted", Hint: "Weighted case", Actual: "%"},
		{Name: "least-conn runs round robin", Flaws: flaws{editConfig: func(b map[string]any) {
			if b["strategy"] == string(balancer.LeastConn) {
				b["strategy"] = string(balancer.RoundRobin)
			}
		}}, Failing: "least-conn", Hint: "in-flight counts", Actual: "%"},
	}, runCheck)
}
