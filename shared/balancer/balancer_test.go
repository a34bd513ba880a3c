package balancer

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// deadURL is a backend nobody listens on: connecting is refused at once. A closed httptest
// server's port could be handed to a server of a test running in parallel; port 1 is not.
const deadURL = "http://127.0.0.1:1"

var client = &http.Client{Timeout: 10 * time.Second}

// testConfig has short timeouts and every optional behaviour off (no active checks, no
// passive ejection, no retries): each test turns on what it is about. No test waits for the
// connect timeout (deadURL refuses at once), so it is only as short as a loaded machine
// running -race can live with.
func testConfig(backends ...string) Config {
	return Config{
		Strategy: string(RoundRobin), Backends: backends,
		HealthPath: "/healthz", HealthInterval: 0, HealthTimeout: 200 * time.Millisecond, Rise: 2, Fall: 2,
		PassiveErrors: 0, PassiveWindow: 10 * time.Second,
		Retries: 0, ConnectTimeout: time.Second, ResponseTimeout: 5 * time.Second,
	}
}

func newLB(t testing.TB, cfg Config) *Balancer {
	t.Helper()
	lb, err := New(cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(lb.transport.CloseIdleConnections)
	return lb
}

// serveLB puts lb behind a real HTTP server and returns its URL.
func serveLB(t *testing.T, lb *Balancer) string {
	t.Helper()
	srv := httptest.NewServer(lb)
	t.Cleanup(srv.Close)
	return srv.URL
}

// runChecks runs lb's active health checks until the test ends.
func runChecks(t *testing.T, lb *Balancer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { lb.RunHealthChecks(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func newBackend(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// okBackend answers 200 "ok" to everything, its health check included.
func okBackend(t *testing.T) *httptest.Server {
	return newBackend(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
}

// hostOf is what X-Backend names: the backend URL's host:port.
func hostOf(srv *httptest.Server) string { return strings.TrimPrefix(srv.URL, "http://") }

// statsOf finds one backend in lb.Stats(); ok is false if it is not registered.
func statsOf(lb *Balancer, url string) (s Stats, ok bool) {
	for _, s := range lb.Stats().Backends {
		if s.URL == url {
			return s, true
		}
	}
	return Stats{}, false
}

func stateOf(lb *Balancer, url string) string {
	s, _ := statsOf(lb, url)
	return s.State
}

// serve calls lb.ServeHTTP directly: it returns only once the balancer is done with the
// request, passive-ejection bookkeeping included, so assertions that follow see its effects.
func serve(lb *Balancer, method, target, body string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	lb.ServeHTTP(w, httptest.NewRequest(method, target, strings.NewReader(body)))
	return w
}

// get sends a GET through a real server and returns the status, X-Backend and body.
func get(t *testing.T, url string) (status int, backend, body string) {
	t.Helper()
	resp, err := client.Get(url)
	if !assert.NoError(t, err) {
		return 0, "", ""
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	assert.NoError(t, err)
	return resp.StatusCode, resp.Header.Get("X-Backend"), string(b)
}

type errorBody struct {
	Error  string `json:"error"`
	Status int    `json:"status"`
}

// requireJSONError checks that a response is the balancer's own JSON error.
func requireJSONError(t *testing.T, status int, header http.Header, body []byte) errorBody {
	t.Helper()
	require.True(t, strings.HasPrefix(header.Get("Content-Type"), "application/json"), "content type %q", header.Get("Content-Type"))
	var e errorBody
	require.NoError(t, json.Unmarshal(body, &e), string(body))
	require.Equal(t, status, e.Status, string(body))
	require.NotEmpty(t, e.Error)
	return e
}

// healthScript answers health checks with statuses from a cycled pattern, so a test decides
// exactly which checks pass and which fail, whatever their timing.
type healthScript struct {
	mu      sync.Mutex
	pattern []int
	i       int
}

func newHealthScript(statuses ...int) *healthScript { return &healthScript{pattern: statuses} }

func (h *healthScript) set(statuses ...int) {
	h.mu.Lock()
	h.pattern, h.i = statuses, 0
	h.mu.Unlock()
}

// served is how many checks the current pattern answered.
func (h *healthScript) served() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.i
}

func (h *healthScript) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	h.mu.Lock()
	status := h.pattern[h.i%len(h.pattern)]
	h.i++
	h.mu.Unlock()
	w.WriteHeader(status)
}

func (h *healthScript) waitChecks(t *testing.T, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return h.served() >= n }, 5*time.Second, 5*time.Millisecond, "want %d checks", n)
}

// flaky answers 200, or while failing drops the connection without a response: a proxy
// error for the balancer, as a crashed process would cause.
type flaky struct{ failing atomic.Bool }

func (f *flaky) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	if f.failing.Load() {
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			_ = conn.Close()
		}
		return
	}
	_, _ = io.WriteString(w, "ok")
}

func TestNewValidatesItsConfig(t *testing.T) {
	t.Parallel()
	_, err := New(Config{Strategy: "random"}, slog.New(slog.DiscardHandler))
	assert.ErrorContains(t, err, `unknown strategy "random"`)
	_, err = New(Config{Strategy: "round-robin", Backends: []string{"backend:8080"}}, slog.New(slog.DiscardHandler))
	assert.ErrorContains(t, err, "backend url must look like http://host:port")

	lb := newLB(t, testConfig("http://a:8080", "http://b:8080/"))
	assert.Equal(t, Snapshot{Strategy: RoundRobin, Backends: []Stats{
		{URL: "http://a:8080", State: "up", Weight: 1},
		{URL: "http://b:8080", State: "up", Weight: 1},
	}}, lb.Stats(), "static backends start up, with weight 1, trailing slash dropped")
}

func TestAddValidatesAndNormalizes(t *testing.T) {
	t.Parallel()
	lb := newLB(t, testConfig())
	for _, c := range []struct {
		url    string
		weight int64
		err    string
	}{
		{"backend:8080", 1, "must look like"},
		{"ftp://backend:21", 1, "must look like"},
		{"http://", 1, "must look like"},
		{"http://backend:8080/api", 1, "must look like"},
		{"http://backend:8080\x7f", 1, "must look like"},
		{"http://backend:8080", 0, "weight must be from 1 to 100"},
		{"http://backend:8080", 101, "weight must be from 1 to 100"},
	} {
		_, err := lb.Add(c.url, c.weight)
		assert.ErrorContains(t, err, c.err, "%q weight %d", c.url, c.weight)
	}
	assert.Empty(t, lb.Stats().Backends)

	added, err := lb.Add("http://backend:8080/", 1)
	require.NoError(t, err)
	assert.True(t, added)
	lb.backends[0].observe(Check{At: time.Now(), Error: "HTTP 500"}, 1, 1) // down
	added, err = lb.Add("http://backend:8080", 100)
	require.NoError(t, err)
	assert.False(t, added, "the same backend, with or without the slash, is not added twice")
	s, _ := statsOf(lb, "http://backend:8080")
	assert.Equal(t, "down", s.State, "adding again is a heartbeat: the state is kept")
	assert.Equal(t, int64(1), s.Weight, "and so is the weight")

	require.NoError(t, lb.SetWeight("http://backend:8080", 100))
	s, _ = statsOf(lb, "http://backend:8080")
	assert.Equal(t, int64(100), s.Weight)
	assert.ErrorIs(t, lb.SetWeight("http://other:8080", 2), errUnknown)
	assert.ErrorContains(t, lb.SetWeight("http://backend:8080", 0), "weight must be from 1 to 100")
	assert.ErrorContains(t, lb.SetWeight("http://backend:8080", 101), "weight must be from 1 to 100")
	s, _ = statsOf(lb, "http://backend:8080")
	assert.Equal(t, int64(100), s.Weight)

	assert.False(t, lb.Remove("http://other:8080"))
	assert.True(t, lb.Remove("http://backend:8080"))
	assert.Empty(t, lb.Stats().Backends)
}

func TestForwardsRequestAndResponseIntact(t *testing.T) {
	t.Parallel()
	type seen struct {
		method, path, query, body, custom, agent, xff, xfHost, xfProto, host string
	}
	got := make(chan seen, 1)
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, r.URL.EscapedPath(), r.URL.RawQuery, string(body), r.Header.Get("X-Custom"), r.Header.Get("User-Agent"),
			strings.Join(r.Header.Values("X-Forwarded-For"), "|"), r.Header.Get("X-Forwarded-Host"), r.Header.Get("X-Forwarded-Proto"), r.Host}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Reply", "from the backend")
		w.Header().Add("Set-Cookie", "a=1")
		w.Header().Add("Set-Cookie", "b=2")
		w.WriteHeader(http.StatusTeapot)
		_, _ = io.WriteString(w, "short and stout")
	})
	lb := newLB(t, testConfig(be.URL))
	lbURL := serveLB(t, lb)
	lbHost := strings.TrimPrefix(lbURL, "http://")

	req, err := http.NewRequest(http.MethodPatch, lbURL+"/teapots/7%2F8?brew=earl+grey&sugar=2&sugar=3", strings.NewReader(`{"hot":true}`))
	require.NoError(t, err)
	req.Header.Set("X-Custom", "kept")
	req.Header.Set("User-Agent", "course-test")
	req.Header.Set("X-Forwarded-For", "6.6.6.6") // a client's claim, which the edge must not pass on as fact
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)

	assert.Equal(t, seen{
		method: http.MethodPatch, path: "/teapots/7%2F8", query: "brew=earl+grey&sugar=2&sugar=3", body: `{"hot":true}`,
		custom: "kept", agent: "course-test", xff: "127.0.0.1", xfHost: lbHost, xfProto: "http", host: lbHost,
	}, <-got)
	assert.Equal(t, http.StatusTeapot, resp.StatusCode)
	assert.Equal(t, "short and stout", string(body))
	assert.Equal(t, "text/plain; charset=utf-8", resp.Header.Get("Content-Type"))
	assert.Equal(t, "from the backend", resp.Header.Get("X-Reply"))
	assert.Equal(t, []string{"a=1", "b=2"}, resp.Header.Values("Set-Cookie"))
	assert.Equal(t, hostOf(be), resp.Header.Get("X-Backend"))

	s, _ := statsOf(lb, be.URL)
	assert.Equal(t, Stats{URL: be.URL, State: "up", Weight: 1, Total: 1}, s)
}

// ReverseProxy clears the response headers after relaying each 1xx response: X-Backend
// must still be on the final response of a backend that sends 103 Early Hints first.
func TestXBackendSurvivesAnInformationalResponse(t *testing.T) {
	t.Parallel()
	be := newBackend(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Link", "</app.css>; rel=preload; as=style")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		_, _ = io.WriteString(w, "ok")
	})
	lb := newLB(t, testConfig(be.URL))
	status, backend, body := get(t, serveLB(t, lb)+"/")
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, "ok", body)
	assert.Equal(t, hostOf(be), backend)
}

func TestNoHealthyBackendIs503JSON(t *testing.T) {
	t.Parallel()
	lb := newLB(t, testConfig())
	w := serve(lb, http.MethodGet, "/", "")
	assert.Equal(t, http.StatusServiceUnavailable, w.Code)
	assert.Equal(t, errorBody{Error: "no healthy backend", Status: 503}, requireJSONError(t, 503, w.Header(), w.Body.Bytes()))

	// The same when every backend is down, not only when there are none.
	be := okBackend(t)
	_, err := lb.Add(be.URL, 1)
	require.NoError(t, err)
	lb.backends[0].observe(Check{At: time.Now(), Error: "HTTP 500"}, 1, 1) // fall 1
	require.Equal(t, "down", stateOf(lb, be.URL))
	w = serve(lb, http.MethodGet, "/", "")
	assert.Equal(t, http.StatusServiceUnavailable, w.Code)
	assert.Equal(t, "no healthy backend", requireJSONError(t, 503, w.Header(), w.Body.Bytes()).Error)
	s, _ := statsOf(lb, be.URL)
	assert.Zero(t, s.Total, "a down backend gets no request")
}

func TestBackendErrorResponsesAreAnswersNotProxyErrors(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	broken := newBackend(t, func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		http.Error(w, "database down", http.StatusInternalServerError)
	})
	cfg := testConfig(broken.URL)
	cfg.Retries, cfg.PassiveErrors = 1, 3
	lb := newLB(t, cfg)
	for range 5 {
		w := serve(lb, http.MethodGet, "/", "")
		assert.Equal(t, http.StatusInternalServerError, w.Code)
		assert.Equal(t, "database down\n", w.Body.String(), "the backend's own answer is relayed")
	}
	assert.Equal(t, int64(5), hits.Load(), "a 500 is an answer: not retried")
	s, _ := statsOf(lb, broken.URL)
	assert.Equal(t, "up", s.State, "a 500 does not count towards passive ejection")
	assert.Equal(t, int64(5), s.Errors, "but it counts as an error on the stats page")
}

func TestRetriesAnIdempotentRequestOnAnotherBackend(t *testing.T) {
	t.Parallel()
	live := okBackend(t)
	cfg := testConfig(deadURL, live.URL)
	cfg.Retries = 1
	lb := newLB(t, cfg)
	lbURL := serveLB(t, lb)
	for _, method := range []string{http.MethodGet, http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodGet} {
		req, err := http.NewRequest(method, lbURL+"/", nil)
		require.NoError(t, err)
		resp, err := client.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode, method)
		assert.Equal(t, hostOf(live), resp.Header.Get("X-Backend"), method)
	}
	dead, _ := statsOf(lb, deadURL)
	assert.Positive(t, dead.Total, "the dead backend was tried first at least once")
	assert.Equal(t, dead.Total, dead.Errors)
	ok, _ := statsOf(lb, live.URL)
	assert.Equal(t, int64(5), ok.Total)
	assert.Zero(t, ok.Errors)
}

func TestWithoutRetriesADeadBackendIs502JSON(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	live := newBackend(t, func(w http.ResponseWriter, _ *http.Request) { hits.Add(1) })
	lb := newLB(t, testConfig(deadURL, live.URL)) // Retries 0
	codes := map[int]int{}
	for range 2 { // round robin: one request each
		w := serve(lb, http.MethodGet, "/", "")
		codes[w.Code]++
		if w.Code == http.StatusBadGateway {
			e := requireJSONError(t, 502, w.Header(), w.Body.Bytes())
			assert.Contains(t, e.Error, "backend failed")
			assert.Contains(t, e.Error, "connection refused")
			assert.Empty(t, w.Header().Get("X-Backend"), "no backend answered")
		}
	}
	assert.Equal(t, map[int]int{200: 1, 502: 1}, codes)
	assert.Equal(t, int64(1), hits.Load())
}

func TestAPostIsNeverRetried(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	live := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		body, _ := io.ReadAll(r.Body)
		_, _ = w.Write(body)
	})
	cfg := testConfig(deadURL, live.URL)
	cfg.Retries = 1
	lb := newLB(t, cfg)
	codes := map[int]int{}
	for range 2 { // round robin: one request each
		w := serve(lb, http.MethodPost, "/orders", `{"item":42}`)
		codes[w.Code]++
		if w.Code == http.StatusOK {
			assert.Equal(t, `{"item":42}`, w.Body.String())
		} else {
			assert.Contains(t, requireJSONError(t, 502, w.Header(), w.Body.Bytes()).Error, "backend failed")
		}
	}
	assert.Equal(t, map[int]int{200: 1, 502: 1}, codes)
	assert.Equal(t, int64(1), hits.Load(), "the failed POST did not reach the live backend")
}

func TestRetryWithNowhereElseToGoIs502(t *testing.T) {
	t.Parallel()
	cfg := testConfig(deadURL)
	cfg.Retries = 1
	lb := newLB(t, cfg)
	w := serve(lb, http.MethodGet, "/", "")
	assert.Equal(t, "backend unreachable and no other healthy backend to retry on", requireJSONError(t, 502, w.Header(), w.Body.Bytes()).Error)
}

func TestASlowBackendIs504(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	slow := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) })
	cfg := testConfig(slow.URL)
	cfg.ResponseTimeout = 100 * time.Millisecond
	lb := newLB(t, cfg)
	w := serve(lb, http.MethodGet, "/", "")
	assert.Contains(t, requireJSONError(t, 504, w.Header(), w.Body.Bytes()).Error, "timeout awaiting response headers")
}

func TestPassiveEjectionAfterTheNthErrorInARow(t *testing.T) {
	t.Parallel()
	cfg := testConfig(deadURL)
	cfg.PassiveErrors = 3
	lb := newLB(t, cfg)
	for i := 1; i <= 3; i++ {
		w := serve(lb, http.MethodGet, "/", "")
		assert.Equal(t, http.StatusBadGateway, w.Code, "request %d", i)
		want := "up"
		if i == 3 {
			want = "down"
		}
		assert.Equal(t, want, stateOf(lb, deadURL), "after %d errors", i)
	}
	w := serve(lb, http.MethodGet, "/", "")
	assert.Equal(t, http.StatusServiceUnavailable, w.Code, "ejected: not even tried")
	s, _ := statsOf(lb, deadURL)
	assert.Equal(t, int64(3), s.Total)
}

func TestPassiveEjectionCountsOnlyErrorsInARow(t *testing.T) {
	t.Parallel()
	f := &flaky{}
	be := newBackend(t, f.ServeHTTP)
	cfg := testConfig(be.URL)
	cfg.PassiveErrors = 3
	lb := newLB(t, cfg)
	send := func(fail bool, wantStatus int, wantState string) {
		t.Helper()
		f.failing.Store(fail)
		w := serve(lb, http.MethodGet, "/", "")
		require.Equal(t, wantStatus, w.Code)
		require.Equal(t, wantState, stateOf(lb, be.URL))
	}
	send(true, http.StatusBadGateway, "up")
	send(true, http.StatusBadGateway, "up")
	send(false, http.StatusOK, "up") // breaks the run
	send(true, http.StatusBadGateway, "up")
	send(true, http.StatusBadGateway, "up")
	send(true, http.StatusBadGateway, "down")
}

func TestPassiveErrorsExpireOutsideTheWindow(t *testing.T) {
	t.Parallel()
	b := &Backend{healthy: true}
	t0 := time.Now()
	assert.False(t, b.proxyFailed(t0, 3, time.Second))
	assert.False(t, b.proxyFailed(t0.Add(600*time.Millisecond), 3, time.Second))
	assert.False(t, b.proxyFailed(t0.Add(1200*time.Millisecond), 3, time.Second), "the first error is out of the window")
	assert.True(t, b.proxyFailed(t0.Add(1300*time.Millisecond), 3, time.Second), "three within one second")
	assert.False(t, b.Healthy())

	off := &Backend{healthy: true}
	for range 10 {
		assert.False(t, off.proxyFailed(t0, 0, time.Second), "limit 0 turns passive ejection off")
	}
	assert.True(t, off.Healthy())
}

func TestPassivelyEjectedBackendComesBackThroughActiveChecks(t *testing.T) {
	t.Parallel()
	f := &flaky{}
	health := newHealthScript(http.StatusServiceUnavailable)
	mux := http.NewServeMux()
	mux.Handle("/healthz", health)
	mux.Handle("/", f)
	be := newBackend(t, mux.ServeHTTP)
	cfg := testConfig(be.URL)
	cfg.PassiveErrors, cfg.HealthInterval, cfg.Rise, cfg.Fall = 3, 20*time.Millisecond, 2, 1000 // active checks alone cannot take it down here
	lb := newLB(t, cfg)
	runChecks(t, lb)

	f.failing.Store(true)
	for range 3 {
		serve(lb, http.MethodGet, "/", "")
	}
	require.Equal(t, "down", stateOf(lb, be.URL), "ejected by its proxy errors")
	health.waitChecks(t, 5)
	require.Equal(t, "down", stateOf(lb, be.URL), "failing checks keep it out")

	f.failing.Store(false)
	health.set(http.StatusOK)
	require.Eventually(t, func() bool { return stateOf(lb, be.URL) == "up" }, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, http.StatusOK, serve(lb, http.MethodGet, "/", "").Code)
}

// A client that gives up (timeout, Ctrl-C) cancels the proxied request: that is not the
// backend's fault, so it must not count towards passive ejection, nor be retried.
func TestClientCancellationsDoNotEjectABackend(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{})
	var hits atomic.Int64
	slow := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		select {
		case arrived <- struct{}{}:
		case <-r.Context().Done():
		}
		<-r.Context().Done()
	})
	other := okBackend(t)
	cfg := testConfig(slow.URL)
	cfg.PassiveErrors, cfg.Retries = 3, 1
	lb := newLB(t, cfg)
	// send is a client that hangs up as soon as the slow backend has its request.
	send := func() *httptest.ResponseRecorder {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-arrived:
				cancel()
			case <-ctx.Done():
			}
		}()
		w := httptest.NewRecorder()
		lb.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/long-query", nil).WithContext(ctx))
		return w
	}
	for range 3 {
		assert.Empty(t, send().Body.String(), "nobody to answer")
	}
	_, err := lb.Add(other.URL, 1) // somewhere a retry could go, if it wrongly happened
	require.NoError(t, err)
	send() // round robin: to the slow backend first

	s, _ := statsOf(lb, slow.URL)
	assert.Equal(t, "up", s.State)
	assert.Zero(t, s.Errors, "a client's cancellation is not the backend's error")
	assert.Equal(t, int64(4), hits.Load())
	o, _ := statsOf(lb, other.URL)
	assert.Zero(t, o.Total, "a cancelled request is not retried")
}

func TestObserveRiseAndFall(t *testing.T) {
	t.Parallel()
	ok, fail := Check{OK: true}, Check{Error: "HTTP 500"}
	b := &Backend{healthy: true}
	steps := []struct {
		c       Check
		changed bool
		healthy bool
	}{
		{fail, false, true}, {fail, false, true}, {ok, false, true}, // two fails, then a pass: the run is broken
		{fail, false, true}, {fail, false, true}, {fail, true, false}, // fall = 3
		{fail, false, false},
		{ok, false, false}, {fail, false, false}, {ok, false, false}, // a pass between fails does not rise
		{ok, true, true}, // rise = 2
		{ok, false, true},
	}
	for i, s := range steps {
		assert.Equal(t, s.changed, b.observe(s.c, 2, 3), "step %d changed", i)
		assert.Equal(t, s.healthy, b.Healthy(), "step %d healthy", i)
	}
	assert.Equal(t, ok, b.last)
}

func TestActiveChecksTakeABackendDownAfterFallAndBackAfterRise(t *testing.T) {
	t.Parallel()
	health := newHealthScript(500, 500, 200) // fall-1 failures, then a pass: never down
	mux := http.NewServeMux()
	mux.Handle("/healthz", health)
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	be := newBackend(t, mux.ServeHTTP)
	cfg := testConfig(be.URL)
	cfg.HealthInterval, cfg.Rise, cfg.Fall = 20*time.Millisecond, 2, 3
	cfg.HealthTimeout = 5 * time.Second // the script decides every outcome: a check slowed down by a busy machine must not add a failure
	lb := newLB(t, cfg)
	runChecks(t, lb)

	// With this pattern a down backend could never rise again (one pass at a time), so up
	// after 9 checks means it never went down.
	health.waitChecks(t, 9)
	require.Equal(t, "up", stateOf(lb, be.URL), "two failures in a row are not three")

	health.set(500)
	require.Eventually(t, func() bool { return stateOf(lb, be.URL) == "down" }, 5*time.Second, 5*time.Millisecond)
	s, _ := statsOf(lb, be.URL)
	require.NotNil(t, s.LastCheck)
	assert.False(t, s.LastCheck.OK)
	assert.Equal(t, "HTTP 500", s.LastCheck.Error)
	assert.False(t, s.LastCheck.At.IsZero())
	assert.GreaterOrEqual(t, s.LastCheck.LatencyMS, 0.0)
	assert.Equal(t, http.StatusServiceUnavailable, serve(lb, http.MethodGet, "/", "").Code, "down: no traffic")

	// Alternating passes and fails: once up it could never fall again, so down after 8
	// checks means it never rose.
	health.set(200, 500)
	health.waitChecks(t, 8)
	require.Equal(t, "down", stateOf(lb, be.URL), "one pass at a time is not two in a row")

	health.set(200)
	require.Eventually(t, func() bool { return stateOf(lb, be.URL) == "up" }, 5*time.Second, 5*time.Millisecond)
	s, _ = statsOf(lb, be.URL)
	assert.True(t, s.LastCheck.OK)
	assert.Empty(t, s.LastCheck.Error)
	assert.Equal(t, http.StatusOK, serve(lb, http.MethodGet, "/", "").Code)
}

func TestAHealthCheckSlowerThanItsTimeoutFails(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) })
	cfg := testConfig(be.URL)
	cfg.HealthInterval, cfg.HealthTimeout, cfg.Fall = 20*time.Millisecond, 50*time.Millisecond, 1
	lb := newLB(t, cfg)
	runChecks(t, lb)
	require.Eventually(t, func() bool { return stateOf(lb, be.URL) == "down" }, 5*time.Second, 5*time.Millisecond)
	s, _ := statsOf(lb, be.URL)
	assert.Contains(t, s.LastCheck.Error, "Client.Timeout exceeded")
}

func TestActiveChecksOffWithZeroInterval(t *testing.T) {
	t.Parallel()
	lb := newLB(t, testConfig(deadURL))
	done := make(chan struct{})
	go func() { lb.RunHealthChecks(context.Background()); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("RunHealthChecks with a zero interval did not return")
	}
	assert.Equal(t, "up", stateOf(lb, deadURL), "never checked")
}

// Run with -race: traffic from 50 goroutines while backends come and go, the strategy and
// weights change, health checks run and the stats page is read.
func TestConcurrentTrafficAndReconfiguration(t *testing.T) {
	t.Parallel()
	stable := []*httptest.Server{okBackend(t), okBackend(t), okBackend(t)}
	extra := []*httptest.Server{okBackend(t), okBackend(t), okBackend(t)}
	cfg := testConfig(stable[0].URL, stable[1].URL, stable[2].URL)
	cfg.HealthInterval, cfg.PassiveErrors, cfg.Retries = 20*time.Millisecond, 3, 1
	cfg.HealthTimeout = 5 * time.Second // -race and 50 clients make the machine slow; no check may time out
	lb := newLB(t, cfg)
	runChecks(t, lb)
	lbURL := serveLB(t, lb)
	admin := lb.Admin()

	stop := make(chan struct{})
	var churn sync.WaitGroup
	churn.Go(func() {
		strategies := []Strategy{RoundRobin, Weighted, LeastConn}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			e := extra[i%len(extra)]
			if i%2 == 0 {
				_, err := lb.Add(e.URL, int64(1+i%5))
				assert.NoError(t, err)
				assert.NoError(t, lb.SetWeight(stable[i%3].URL, int64(1+i%9)))
			} else {
				lb.Remove(e.URL)
			}
			lb.SetStrategy(strategies[i%len(strategies)])
			body := fmt.Sprintf(`{"url":%q,"weight":%d}`, extra[(i+1)%len(extra)].URL, 1+i%7)
			admin.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/register", strings.NewReader(body)))
			admin.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodDelete, "/register", strings.NewReader(body)))
			body = fmt.Sprintf(`{"strategy":%q,"weights":{%q:%d}}`, strategies[(i+1)%3], stable[i%3].URL, 1+i%4)
			admin.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPut, "/config", strings.NewReader(body)))
			admin.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/stats", nil))
			_ = lb.Stats()
			time.Sleep(time.Millisecond)
		}
	})

	var traffic sync.WaitGroup
	var failures atomic.Int64
	for range 50 {
		traffic.Go(func() {
			for range 10 {
				if status, _, _ := get(t, lbURL+"/"); status != http.StatusOK {
					failures.Add(1)
				}
			}
		})
	}
	traffic.Wait()
	close(stop)
	churn.Wait()
	assert.Zero(t, failures.Load(), "every backend stayed alive, so every request must succeed")

	var total int64
	for _, s := range lb.Stats().Backends {
		assert.Zero(t, s.InFlight, s.URL)
	}
	for _, srv := range stable {
		s, _ := statsOf(lb, srv.URL)
		total += s.Total
	}
	assert.Positive(t, total)
}
