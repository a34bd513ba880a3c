package cacheaside

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// item is the cached value type; V tells which load produced it.
type item struct {
	V int `json:"v"`
}

var errNotFound = errors.New("no such row")

// TestMain silences go-redis's own logging of dial failures, which tests cause on purpose.
func TestMain(m *testing.M) {
	redis.SetLogger(discardLogger{})
	os.Exit(m.Run())
}

type discardLogger struct{}

func (discardLogger) Printf(context.Context, string, ...any) {}

// testConfig keeps every interval short so the package runs in about a second; TTL can
// stay long because miniredis only expires keys on FastForward.
func testConfig() Config {
	return Config{
		Enabled:     true,
		TTL:         time.Minute,
		Jitter:      0.1,
		NotFoundTTL: 5 * time.Second,
		LoadTimeout: 2 * time.Second,
		BreakAfter:  3,
		BreakFor:    50 * time.Millisecond,
		RetryEvery:  20 * time.Millisecond,
	}
}

type env struct {
	mr  *miniredis.Miniredis
	rdb *redis.Client
	reg *prometheus.Registry
	a   *Aside[item]
}

// newEnv starts miniredis, a client that, like redisdb.Open's, never retries, and a cache
// named "things" on a fresh registry.
func newEnv(t *testing.T, tweak func(*Config)) *env {
	t.Helper()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{
		Addr:                  mr.Addr(),
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
		// go-redis dials 5 times, 100ms apart, by default: 400ms per read of a dead Redis.
		DialerRetries: 1,
		// Far looser than production's (redisdb.Config): these tests are about the cache,
		// and a pool or timeout that runs out on a loaded CI machine (50 concurrent reads
		// under -race) would turn a miss into redis_error and make them flaky.
		DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second,
		PoolSize: 64, PoolTimeout: 5 * time.Second,
	})
	t.Cleanup(func() { _ = rdb.Close() })
	cfg := testConfig()
	if tweak != nil {
		tweak(&cfg)
	}
	reg := prometheus.NewRegistry()
	a, err := New[item]("things", rdb, errNotFound, cfg, reg, quietLog())
	require.NoError(t, err)
	t.Cleanup(a.Close)
	return &env{mr: mr, rdb: rdb, reg: reg, a: a}
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// metric reads one series from the registry as exported (name, "cache" label and the
// given labels); a series never touched reads 0.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			if _, ok := want["cache"]; !ok && got["cache"] != "things" {
				continue
			}
			for k, v := range want {
				if got[k] != v {
					continue series
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

func (e *env) requests(t *testing.T, result string) float64 {
	return metric(t, e.reg, "cache_requests_total", "result", result)
}
func (e *env) loads(t *testing.T) float64 { return metric(t, e.reg, "cache_loads_total") }
func (e *env) fills(t *testing.T, result string) float64 {
	return metric(t, e.reg, "cache_fills_total", "result", result)
}
func (e *env) invalidations(t *testing.T, result string) float64 {
	return metric(t, e.reg, "cache_invalidations_total", "result", result)
}

// countJoins counts the callers that join a waiting read of f; set it before any call.
func countJoins[V any](f *flights[V]) *atomic.Int64 {
	var n atomic.Int64
	f.joined = func() { n.Add(1) }
	return &n
}

func waitJoins(t *testing.T, joins *atomic.Int64, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return joins.Load() == int64(n) }, 5*time.Second, time.Millisecond,
		"want %d callers joined to a waiting read, have %d", n, joins.Load())
}

// entry is the value Redis holds for key, without the generation it was read under.
func (e *env) entry(key string) (string, error) {
	raw, err := e.mr.Get(key)
	_, v, _ := strings.Cut(raw, "|")
	return v, err
}
