package registrar

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// call is one request the fake balancer received.
type call struct {
	method, contentType string
	reg                 registration
}

// balancer is a fake load balancer's admin API: it answers each request to /register with
// the status answer returns for it (1-based) and reports the request on calls.
func balancer(t *testing.T, answer func(n int64) int) (*httptest.Server, <-chan call) {
	t.Helper()
	calls := make(chan call, 100)
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/register" {
			http.NotFound(w, r)
			return
		}
		c := call{method: r.Method, contentType: r.Header.Get("Content-Type")}
		assert.NoError(t, json.NewDecoder(r.Body).Decode(&c.reg))
		select {
		case calls <- c:
		default: // a test that stopped reading: never block the balancer
		}
		w.WriteHeader(answer(n.Add(1)))
	}))
	t.Cleanup(srv.Close)
	return srv, calls
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func config(url string) Config {
	return Config{BalancerURL: url, SelfURL: "http://server-1:8080", Weight: 3, Heartbeat: 20 * time.Millisecond}
}

func TestRegisterRetriesUntilTheBalancerAccepts(t *testing.T) {
	srv, calls := balancer(t, func(n int64) int {
		if n < 3 {
			return http.StatusServiceUnavailable // not ready yet
		}
		return http.StatusCreated
	})
	require.NoError(t, Register(context.Background(), config(srv.URL), quiet()))
	require.Len(t, calls, 3)
	c := <-calls
	assert.Equal(t, call{method: http.MethodPost, contentType: "application/json",
		reg: registration{URL: "http://server-1:8080", Weight: 3}}, c)
}

func TestRegisterGivesUpWhenTheBalancerRefuses(t *testing.T) {
	srv, calls := balancer(t, func(int64) int { return http.StatusBadRequest })
	err := Register(context.Background(), config(srv.URL), quiet())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "HTTP 400")
	assert.Len(t, calls, 1, "a 4xx is not retried")
	assert.Error(t, Run(context.Background(), config(srv.URL), quiet()), "Run gives up too")
}

func TestRegisterRetriesUnreachableBalancerUntilCtxEnds(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there now: connection refused
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	assert.ErrorIs(t, Register(ctx, config(url), quiet()), context.DeadlineExceeded)
}

// Each attempt has its own timeout: ctx may be the server's whole life, and a balancer that
// accepts the connection and never answers must not hold a shutdown's Deregister.
func TestDeregisterGivesUpOnASilentBalancer(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	start := time.Now()
	Deregister(context.Background(), config(srv.URL), quiet())
	assert.Less(t, time.Since(start), client.Timeout+2*time.Second)
}

func TestRunReregistersEveryHeartbeatUntilCtxEnds(t *testing.T) {
	srv, calls := balancer(t, func(int64) int { return http.StatusOK })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, config(srv.URL), quiet()) }()
	for range 3 { // the registration, then two heartbeats
		select {
		case c := <-calls:
			assert.Equal(t, http.MethodPost, c.method)
		case <-time.After(5 * time.Second):
			t.Fatal("no heartbeat registration")
		}
	}
	cancel()
	select {
	case err := <-done:
		assert.NoError(t, err, "ctx ending is a shutdown, not an error")
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after ctx ended")
	}
}

// Shutting down while the balancer is still unreachable is not "registration gave up".
func TestRunReturnsNilWhenCtxEndsWhileRetrying(t *testing.T) {
	srv, calls := balancer(t, func(int64) int { return http.StatusServiceUnavailable })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, config(srv.URL), quiet()) }()
	<-calls
	cancel()
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after ctx ended")
	}
}

func TestDeregisterSendsDelete(t *testing.T) {
	srv, calls := balancer(t, func(int64) int { return http.StatusOK })
	Deregister(context.Background(), config(srv.URL), quiet())
	require.Len(t, calls, 1)
	c := <-calls
	assert.Equal(t, http.MethodDelete, c.method)
	assert.Equal(t, "http://server-1:8080", c.reg.URL)
}

func TestNoBalancerURLTurnsRegistrationOff(t *testing.T) {
	cfg := Config{Heartbeat: time.Millisecond}
	assert.NoError(t, Register(context.Background(), cfg, quiet()))
	assert.NoError(t, Run(context.Background(), cfg, quiet()), "returns at once, no heartbeat loop")
	Deregister(context.Background(), cfg, quiet())
}

func TestSelfDefaultsToTheHostname(t *testing.T) {
	host, err := os.Hostname()
	require.NoError(t, err)
	cfg := Config{}
	assert.Equal(t, "http://"+host+":8080", cfg.Self())
	cfg = Config{SelfURL: "http://x:1"}
	assert.Equal(t, "http://x:1", cfg.Self())
}
