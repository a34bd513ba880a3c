package registrar

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func balancer(t *testing.T, h http.HandlerFunc) Config {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return Config{BalancerURL: srv.URL, SelfURL: "http://server-1:8080", Weight: 1}
}

func TestRegisterRetriesA503AndStopsAtA4xx(t *testing.T) {
	var calls atomic.Int32
	cfg := balancer(t, func(w http.ResponseWriter, _ *http.Request) {
		if calls.Add(1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable) // the balancer could not resolve us yet
			return
		}
		w.WriteHeader(http.StatusCreated)
	})
	require.NoError(t, Register(context.Background(), cfg, slog.New(slog.DiscardHandler)))
	assert.EqualValues(t, 3, calls.Load())

	calls.Store(0)
	cfg = balancer(t, func(w http.ResponseWriter, _ *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusForbidden)
	})
	assert.ErrorContains(t, Register(context.Background(), cfg, slog.New(slog.DiscardHandler)), "HTTP 403")
	assert.EqualValues(t, 1, calls.Load(), "a refusal is final")
}

// A balancer that accepts the connection and never answers must not hold a server's
// shutdown: each attempt is bounded even when the caller's context is not.
func TestDeregisterGivesUpOnASilentBalancer(t *testing.T) {
	release := make(chan struct{})
	cfg := balancer(t, func(http.ResponseWriter, *http.Request) { <-release })
	defer close(release)
	start := time.Now()
	Deregister(context.Background(), cfg, slog.New(slog.DiscardHandler))
	assert.Less(t, time.Since(start), client.Timeout+2*time.Second)
}
