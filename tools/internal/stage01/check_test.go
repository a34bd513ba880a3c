package stage01

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sysdesign-course/course/shared/httpserver"
	"github.com/sysdesign-course/course/shared/probe"
	"github.com/sysdesign-course/course/shared/slowquery"
	"github.com/sysdesign-course/course/tools/internal/bench"
	"github.com/sysdesign-course/course/tools/internal/check"
	"github.com/sysdesign-course/course/tools/internal/check/checktest"
	"github.com/sysdesign-course/course/tools/internal/load"
	"github.com/sysdesign-course/course/tools/internal/report"
)

// fixture is an in-process server that the fake injector can stop and start, gracefully
// (Shutdown) or not (Close: in-flight requests are cut, as a server that ignores SIGTERM's
// grace period would).
type fixture struct {
	handler  http.Handler
	graceful bool
	addr     string
	mu       sync.Mutex
	srv      *http.Server
}

func newFixture(t *testing.T, h http.Handler, graceful bool) *fixture {
	f := &fixture{handler: h, graceful: graceful}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	f.addr = ln.Addr().String()
	f.serve(ln)
	t.Cleanup(func() { f.srv.Close() })
	return f
}

func (f *fixture) serve(ln net.Listener) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.srv = &http.Server{Handler: f.handler}
	go func() { _ = f.srv.Serve(ln) }()
}

func (f *fixture) Stop(context.Context, string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.graceful {
		return f.srv.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return f.srv.Shutdown(ctx)
}

func (f *fixture) Start(context.Context, string) error {
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		return err
	}
	f.serve(ln)
	return nil
}

// WaitHealthy needs one probe: Start returns with the listener open, so it is served.
func (f *fixture) WaitHealthy(context.Context, string) error {
	return probe.Check("http://"+f.addr+"/ping", time.Second)
}

func (f *fixture) Kill(context.Context, string) error    { return errors.New("not used") }
func (f *fixture) Pause(context.Context, string) error   { return errors.New("not used") }
func (f *fixture) Unpause(context.Context, string) error { return errors.New("not used") }

var fast = Params{
	Service: "server", Concurrent: 20, LongQuery: 400 * time.Millisecond, PingP99: 150 * time.Millisecond,
	InFlight: 5, ShutdownQuery: 600 * time.Millisecond, RestartWithin: 5 * time.Second,
}

// courseServer is the real stage-01 server as the stage's main wires it: its public
// handler, and its admin listener's /metrics, served for the test's lifetime.
func courseServer(t *testing.T) (http.Handler, string) {
	cfg := httpserver.Config{Instance: "test", ShutdownTimeout: 10 * time.Second}
	s := httpserver.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	slowquery.Register(s.Echo)
	admin := httptest.NewServer(s.Admin)
	t.Cleanup(admin.Close)
	return s.Echo, admin.URL + "/metrics"
}

// serial handles one request at a time: the classic mistake of a global lock.
func serial(h http.Handler) http.Handler {
	var mu sync.Mutex
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

// crashesOnBadInput answers 500 when the duration does not parse, and plain text 404s.
func crashesOnBadInput(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/long-query" {
			if _, err := time.ParseDuration(r.URL.Query().Get("duration")); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		}
		if r.URL.Path != "/ping" && r.URL.Path != "/long-query" {
			http.NotFound(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func runCheck(t *testing.T, f *fixture, metrics string) (map[string]check.Result, check.Outcome, string) {
	t.Helper()
	var out strings.Builder
	env := &check.Env{Target: "http://" + f.addr, Faults: f, Timeline: report.NewTimeline(100 * time.Millisecond), Client: load.NewClient(8, 10*time.Second)}
	p := fast
	p.Metrics = metrics
	results, outcome := check.Run(context.Background(), "stage-1", Steps(p), env, &out)
	byName := map[string]check.Result{}
	for _, r := range results {
		byName[r.Step] = r
	}
	return byName, outcome, out.String()
}

func TestCheckPassesOnTheCourseServer(t *testing.T) {
	t.Parallel()
	h, metrics := courseServer(t)
	results, outcome, out := runCheck(t, newFixture(t, h, true), metrics)
	assert.Equal(t, check.Pass, outcome, out)
	for name, r := range results {
		assert.Equal(t, check.Pass, r.Outcome, "%s: %s", name, out)
	}
}

// Each known-broken server must fail exactly the step that proves what it breaks, with the
// hint that points at the cause, and pass the others: a check that cannot fail proves nothing.
func TestCheckFailsOnKnownBrokenServers(t *testing.T) {
	id := func(h http.Handler) http.Handler { return h }
	cases := []struct {
		name     string
		server   func(http.Handler) http.Handler
		graceful bool
		failing  string
		hint     string
	}{
		{"one request at a time", serial, true, "concurrency", "serialises requests"},
		{"drops in-flight requests on stop", id, false, "graceful-shutdown", "SHUTDOWN_TIMEOUT"},
		{"500 on bad input", crashesOnBadInput, true, "bad-input", "validate the duration"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h, metrics := courseServer(t)
			results, outcome, out := runCheck(t, newFixture(t, c.server(h), c.graceful), metrics)
			assert.Equal(t, check.Fail, outcome, out)
			assert.Equal(t, 1, check.Fail.ExitCode())
			checktest.OnlyFails(t, results, out, c.failing, c.hint, "", "docs/01-base.md#")
			t.Log("\n" + out)
		})
	}
}

func TestCheckFailsWhenNothingListens(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	var out strings.Builder
	env := &check.Env{Target: "http://" + addr, Timeline: report.NewTimeline(time.Second), Client: load.NewClient(1, time.Second)}
	results, outcome := check.Run(context.Background(), "stage-1", Steps(fast)[:1], env, &out)
	assert.Equal(t, check.Fail, outcome)
	assert.Contains(t, results[0].Actual, "connection refused")
}

func TestWaitInFlightReturnsOnceTheGaugeCountsThem(t *testing.T) {
	t.Parallel()
	h, metrics := courseServer(t)
	f := newFixture(t, h, true)
	e := &check.Env{Target: "http://" + f.addr, Client: load.NewClient(4, 10*time.Second)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range 2 {
		go func() { _, _ = e.Get(ctx, "long-query", "/long-query?duration=30s") }()
	}
	start := time.Now()
	waitInFlight(ctx, e.Client, metrics, 2, 10*time.Second)
	assert.Less(t, time.Since(start), 5*time.Second, "the two queries were in flight long before the bound")
	m, err := bench.Scrape(ctx, e.Client, metrics)
	require.NoError(t, err)
	assert.Equal(t, 2.0, bench.Sum(m, "http_requests_in_flight"), "the admin listener's own scrape is not counted")
}
