package httpserver

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func serve(t *testing.T, s *Server, method, path string) (*httptest.ResponseRecorder, ErrorBody) {
	t.Helper()
	w := httptest.NewRecorder()
	s.Echo.ServeHTTP(w, httptest.NewRequest(method, path, nil))
	var body ErrorBody
	_ = json.Unmarshal(w.Body.Bytes(), &body)
	return w, body
}

func TestPingNamesTheInstanceAndCarriesARequestID(t *testing.T) {
	s := New(Config{Instance: "s1"}, quiet())
	w, _ := serve(t, s, http.MethodGet, "/ping")
	assert.Equal(t, http.StatusOK, w.Code)
	assert.JSONEq(t, `{"message":"pong","instance":"s1"}`, w.Body.String())
	assert.Equal(t, "s1", w.Header().Get(InstanceHeader))
	assert.NotEmpty(t, w.Header().Get(echo.HeaderXRequestID))
}

func TestErrorsAreJSON(t *testing.T) {
	s := New(Config{Instance: "s1"}, quiet())
	s.Echo.GET("/boom", func(echo.Context) error { panic("boom") })
	s.Echo.GET("/bad", func(echo.Context) error { return BadRequest("n must be positive") })

	for _, c := range []struct {
		method, path string
		status       int
		msg          string
	}{
		{http.MethodGet, "/nope", http.StatusNotFound, "Not Found"},
		{http.MethodPost, "/ping", http.StatusMethodNotAllowed, "Method Not Allowed"},
		{http.MethodGet, "/bad", http.StatusBadRequest, "n must be positive"},
		{http.MethodGet, "/boom", http.StatusInternalServerError, "Internal Server Error"}, // no panic text leaks
	} {
		w, body := serve(t, s, c.method, c.path)
		assert.Equal(t, c.status, w.Code, c.path)
		assert.True(t, strings.HasPrefix(w.Header().Get("Content-Type"), "application/json"), c.path)
		assert.Equal(t, ErrorBody{Error: c.msg, Status: c.status, RequestID: w.Header().Get(echo.HeaderXRequestID)}, body, c.path)
	}
}

func TestMetricsCountRoutesNotRawPaths(t *testing.T) {
	s := New(Config{Instance: "s1"}, quiet())
	serve(t, s, http.MethodGet, "/ping")
	serve(t, s, http.MethodGet, "/nope-1")
	serve(t, s, http.MethodGet, "/nope-2")
	w := httptest.NewRecorder()
	s.Admin.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	m := w.Body.String()
	assert.Contains(t, m, `http_requests_total{code="200",method="GET",route="/ping"} 1`)
	assert.NotContains(t, m, "nope")
	assert.Contains(t, m, "http_request_duration_seconds_bucket")
	assert.Contains(t, m, "http_requests_in_flight")
}

// runOn starts s.Run on a free port and returns its URL and the Run result.
func runOn(t *testing.T, s *Server, ctx context.Context) (string, <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s.Echo.Listener = ln
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	return "http://" + ln.Addr().String(), done
}

// slowRoute adds GET /slow, which says on entered that it is running, then answers "done"
// when release is closed, or gives up when its request is cut.
func slowRoute(t *testing.T, s *Server) (entered <-chan struct{}, release chan<- struct{}) {
	in, out := make(chan struct{}, 1), make(chan struct{})
	t.Cleanup(func() { close(out) })
	s.Echo.GET("/slow", func(c echo.Context) error {
		in <- struct{}{}
		select {
		case <-out:
			return c.String(http.StatusOK, "done")
		case <-c.Request().Context().Done():
			return c.Request().Context().Err()
		}
	})
	return in, out
}

// getSlow fetches /slow in the background; the error is nil only for a complete "done".
func getSlow(url string) <-chan error {
	got := make(chan error, 1)
	go func() {
		resp, err := http.Get(url + "/slow")
		if err == nil {
			b, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case rerr != nil:
				err = rerr
			case string(b) != "done":
				err = assert.AnError
			}
		}
		got <- err
	}()
	return got
}

func TestShutdownFinishesInFlightRequests(t *testing.T) {
	s := New(Config{Instance: "s1", ShutdownTimeout: 5 * time.Second}, quiet())
	entered, release := slowRoute(t, s)
	ctx, stop := context.WithCancel(context.Background())
	url, done := runOn(t, s, ctx)

	got := getSlow(url)
	<-entered
	stop()
	// The request is let go only once the listener is closed: shutdown has begun.
	addr := strings.TrimPrefix(url, "http://")
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err != nil
	}, 5*time.Second, time.Millisecond, "no new connections after shutdown begins")
	release <- struct{}{}
	assert.NoError(t, <-got, "the in-flight request completes")
	assert.NoError(t, <-done)
}

func TestZeroShutdownTimeoutDropsInFlightRequests(t *testing.T) {
	s := New(Config{Instance: "s1"}, quiet())
	entered, _ := slowRoute(t, s)
	ctx, stop := context.WithCancel(context.Background())
	url, done := runOn(t, s, ctx)
	got := getSlow(url)
	<-entered
	stop()
	assert.Error(t, <-got)
	<-done
}

func TestReadyzReportsDependencies(t *testing.T) {
	s := New(Config{Instance: "s1"}, quiet())
	w, _ := serve(t, s, http.MethodGet, "/readyz")
	assert.Equal(t, http.StatusOK, w.Code, "no dependencies: ready")

	var dbErr error
	s.Ready("postgres", func(context.Context) error { return dbErr })
	w, _ = serve(t, s, http.MethodGet, "/readyz")
	assert.Equal(t, http.StatusOK, w.Code)
	assert.Contains(t, w.Body.String(), `"postgres":"ok"`)

	dbErr = assert.AnError
	w, body := serve(t, s, http.MethodGet, "/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, w.Code)
	assert.Equal(t, "not ready: postgres unavailable", body.Error)
	w, _ = serve(t, s, http.MethodGet, "/healthz")
	assert.Equal(t, http.StatusOK, w.Code, "alive even when not ready")
}
