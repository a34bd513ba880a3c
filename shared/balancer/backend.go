package balancer

import (
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// Backend is one server behind the balancer, with its health state and counters.
type Backend struct {
	URL   *url.URL
	proxy *httputil.ReverseProxy

	weight   atomic.Int64
	inFlight atomic.Int64
	total    atomic.Int64
	errors   atomic.Int64

	mu         sync.Mutex
	healthy    bool
	okStreak   int         // consecutive passing active checks
	failStreak int         // consecutive failing active checks
	recentErrs []time.Time // consecutive proxy errors, for passive ejection
	last       Check
	current    int64 // smooth weighted round robin's running score (guarded by the pool's lock)
}

// Check is the result of the last active health check.
type Check struct {
	At        time.Time `json:"at"`
	OK        bool      `json:"ok"`
	LatencyMS float64   `json:"latency_ms"`
	Error     string    `json:"error,omitempty"`
}

// Healthy reports whether the backend receives traffic.
func (b *Backend) Healthy() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.healthy
}

// observe applies an active check to the state machine: a down backend comes back after
// rise passing checks in a row, an up one goes down after fall failing checks in a row.
// It reports whether the state changed.
func (b *Backend) observe(c Check, rise, fall int) (changed bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.last = c
	if c.OK {
		b.okStreak, b.failStreak = b.okStreak+1, 0
		if !b.healthy && b.okStreak >= rise {
			b.healthy, b.recentErrs = true, nil
			return true
		}
		return false
	}
	b.failStreak, b.okStreak = b.failStreak+1, 0
	if b.healthy && b.failStreak >= fall {
		b.healthy = false
		return true
	}
	return false
}

// proxyFailed records a failed proxied request; after limit failures in a row within
// window the backend is ejected until active checks bring it back. One error is not
// enough: a single reset connection says little about a server.
func (b *Backend) proxyFailed(now time.Time, limit int, window time.Duration) (ejected bool) {
	if limit <= 0 {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.recentErrs = append(b.recentErrs, now)
	for len(b.recentErrs) > 0 && now.Sub(b.recentErrs[0]) > window {
		b.recentErrs = b.recentErrs[1:]
	}
	if b.healthy && len(b.recentErrs) >= limit {
		b.healthy, b.okStreak, b.recentErrs = false, 0, nil
		return true
	}
	return false
}

// proxySucceeded breaks a run of proxy errors.
func (b *Backend) proxySucceeded() {
	b.mu.Lock()
	b.recentErrs = nil
	b.mu.Unlock()
}

// Stats is one backend as the stats page shows it.
type Stats struct {
	URL       string `json:"url"`
	State     string `json:"state"` // "up" or "down"
	Weight    int64  `json:"weight"`
	InFlight  int64  `json:"in_flight"`
	Total     int64  `json:"total"`
	Errors    int64  `json:"errors"`
	LastCheck *Check `json:"last_check,omitempty"`
}

func (b *Backend) stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := Stats{URL: b.URL.String(), State: "down", Weight: b.weight.Load(), InFlight: b.inFlight.Load(),
		Total: b.total.Load(), Errors: b.errors.Load()}
	if b.healthy {
		s.State = "up"
	}
	if !b.last.At.IsZero() {
		c := b.last
		s.LastCheck = &c
	}
	return s
}
