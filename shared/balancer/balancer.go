// Package balancer is a small HTTP load balancer, written to be read: backends register
// themselves or come from a static list; active health checks with rise and fall counts
// and passive ejection after repeated errors decide who is up; round robin, smooth
// weighted round robin or least connections picks among them; idempotent requests that
// fail to reach a backend are retried once elsewhere. Stats are served as JSON and as an
// HTML page in the spirit of HAProxy's.
package balancer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Config is read from the environment by the balancer's main.
type Config struct {
	// Addr serves the balanced traffic, AdminAddr the admin side (see Admin). A backend is
	// never one of them (see Register).
	Addr      string   `env:"LB_ADDR" envDefault:":8080"`
	AdminAddr string   `env:"LB_ADMIN_ADDR" envDefault:":8081"`
	Strategy  string   `env:"LB_STRATEGY" envDefault:"round-robin"`
	Backends  []string `env:"LB_BACKENDS" envSeparator:","` // static backends, besides those that register
	// Active health checks: GET HealthPath every HealthInterval (0 turns them off); a check
	// fails if it takes longer than HealthTimeout or answers other than 200. A server whose
	// CPU is saturated answers slowly but is not dead: a timeout much shorter than a second
	// would take a busy server out, pile its load on the others and take them out too.
	HealthPath     string        `env:"LB_HEALTH_PATH" envDefault:"/healthz"`
	HealthInterval time.Duration `env:"LB_HEALTH_INTERVAL" envDefault:"500ms"`
	HealthTimeout  time.Duration `env:"LB_HEALTH_TIMEOUT" envDefault:"1s"`
	Rise           int           `env:"LB_RISE" envDefault:"2"` // passing checks in a row to come back
	Fall           int           `env:"LB_FALL" envDefault:"3"` // failing checks in a row to go down
	// Passive ejection: PassiveErrors proxy errors in a row within PassiveWindow take a
	// backend out until active checks bring it back (0 turns it off).
	PassiveErrors int           `env:"LB_PASSIVE_ERRORS" envDefault:"3"`
	PassiveWindow time.Duration `env:"LB_PASSIVE_WINDOW" envDefault:"10s"`
	// Retries of an idempotent request that could not reach its backend (0 turns them off).
	Retries         int           `env:"LB_RETRIES" envDefault:"1"`
	ConnectTimeout  time.Duration `env:"LB_CONNECT_TIMEOUT" envDefault:"500ms"`
	ResponseTimeout time.Duration `env:"LB_RESPONSE_TIMEOUT" envDefault:"35s"` // > the servers' slowest request
}

// Balancer is an http.Handler that forwards each request to one healthy backend.
type Balancer struct {
	cfg       Config
	log       *slog.Logger
	transport *http.Transport
	checker   *http.Client

	self self

	mu       sync.Mutex
	backends []*Backend
	strategy Strategy
	next     uint64
}

// New returns a balancer with cfg's static backends, all considered up until checked.
func New(cfg Config, log *slog.Logger) (*Balancer, error) {
	st, err := ParseStrategy(cfg.Strategy)
	if err != nil {
		return nil, err
	}
	dialer := &net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: 30 * time.Second}
	lb := &Balancer{
		cfg: cfg, log: log, strategy: st,
		transport: &http.Transport{
			DialContext:           dialer.DialContext,
			MaxIdleConnsPerHost:   64,
			IdleConnTimeout:       90 * time.Second,
			ResponseHeaderTimeout: cfg.ResponseTimeout,
		},
	}
	lb.checker = &http.Client{Timeout: cfg.HealthTimeout, Transport: &http.Transport{DialContext: dialer.DialContext, DisableKeepAlives: true}}
	if lb.self, err = newSelf(cfg.Addr, cfg.AdminAddr); err != nil {
		return nil, err
	}
	for _, raw := range cfg.Backends {
		if _, err := lb.Add(raw, 1); err != nil {
			return nil, err
		}
	}
	return lb, nil
}

// Add registers a backend and reports whether it is new; a known backend keeps its state
// and weight, so servers can re-register as a heartbeat (weights change through SetWeight).
// A new one is refused once the balancer holds MaxBackends.
func (lb *Balancer) Add(raw string, weight int64) (bool, error) {
	u, err := parseBackend(raw, weight)
	if err != nil {
		return false, err
	}
	return lb.add(u, weight)
}

// parseBackend accepts exactly http://host:port (a trailing slash is dropped) with a port
// from 1 to 65535, and a weight from 1 to 100.
func parseBackend(raw string, weight int64) (*url.URL, error) {
	u, err := url.Parse(raw)
	// raw must print back as http://host:port: user info, a query or a fragment would ride
	// along on every proxied request, and a host that needs escaping names no server.
	bad := err != nil || u.Scheme != "http" || u.Hostname() == "" ||
		(&url.URL{Scheme: u.Scheme, Host: u.Host}).String() != strings.TrimSuffix(raw, "/")
	if !bad {
		port, perr := strconv.Atoi(u.Port())
		bad = perr != nil || port < 1 || port > 65535
	}
	if bad {
		return nil, fmt.Errorf("%w: backend url must look like http://host:port (port 1-65535), got %q", errInvalid, raw)
	}
	if weight < 1 || weight > 100 {
		return nil, fmt.Errorf("%w: weight must be from 1 to 100, got %d", errInvalid, weight)
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host}, nil
}

func (lb *Balancer) add(u *url.URL, weight int64) (bool, error) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	for _, b := range lb.backends {
		if b.URL.String() == u.String() {
			return false, nil
		}
	}
	if len(lb.backends) >= MaxBackends {
		return false, fmt.Errorf("%w: the balancer holds at most %d backends; deregister one first", errFull, MaxBackends)
	}
	b := &Backend{URL: u, healthy: true}
	b.weight.Store(weight)
	b.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.SetXForwarded()
			pr.Out.Host = pr.In.Host
		},
		Transport: lb.transport,
		// Set on the backend's final response: headers set on w before proxying would be
		// cleared when a 1xx (such as 103 Early Hints) is relayed first.
		ModifyResponse: func(resp *http.Response) error {
			resp.Header.Set("X-Backend", u.Host)
			return nil
		},
		ErrorHandler: func(_ http.ResponseWriter, r *http.Request, err error) { *r.Context().Value(errSlot{}).(*error) = err },
	}
	lb.backends = append(lb.backends, b)
	lb.log.Info("backend added", "url", u.String(), "weight", weight)
	return true, nil
}

// SetWeights changes known backends' weights, all or none: one unknown backend or bad
// weight leaves every weight as it was.
func (lb *Balancer) SetWeights(weights map[string]int64) error {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	byURL := map[string]*Backend{}
	for _, b := range lb.backends {
		byURL[b.URL.String()] = b
	}
	for u, w := range weights {
		if byURL[u] == nil {
			return fmt.Errorf("%w: %s", errUnknown, u)
		}
		if w < 1 || w > 100 {
			return fmt.Errorf("weight must be from 1 to 100, got %d for %s", w, u)
		}
	}
	for u, w := range weights {
		byURL[u].weight.Store(w)
	}
	return nil
}

// SetWeight changes one known backend's weight.
func (lb *Balancer) SetWeight(raw string, weight int64) error {
	return lb.SetWeights(map[string]int64{raw: weight})
}

var errUnknown = errors.New("no such backend")

// Remove deregisters a backend and reports whether it was known.
func (lb *Balancer) Remove(raw string) bool {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	i := slices.IndexFunc(lb.backends, func(b *Backend) bool { return b.URL.String() == raw })
	if i < 0 {
		return false
	}
	lb.backends = slices.Delete(lb.backends, i, i+1)
	lb.log.Info("backend removed", "url", raw)
	return true
}

// SetStrategy switches the strategy at run time.
func (lb *Balancer) SetStrategy(s Strategy) {
	lb.mu.Lock()
	lb.strategy = s
	lb.mu.Unlock()
	lb.log.Info("strategy", "now", s)
}

// pick chooses a healthy backend not in tried.
func (lb *Balancer) pick(tried []*Backend) *Backend {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	cands := make([]*Backend, 0, len(lb.backends))
	for _, b := range lb.backends {
		if b.Healthy() && !slices.Contains(tried, b) {
			cands = append(cands, b)
		}
	}
	return lb.pickLocked(cands)
}

type errSlot struct{}

// ServeHTTP forwards r to a backend. Requests that are safe to repeat (GET, HEAD, OPTIONS)
// and failed before any byte reached the client are retried on another backend, up to
// cfg.Retries times; a POST is never retried, since it may have taken effect.
func (lb *Balancer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	idempotent := r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions
	var tried []*Backend
	for attempt := 0; ; attempt++ {
		b := lb.pick(tried)
		if b == nil {
			status, msg := http.StatusServiceUnavailable, "no healthy backend"
			if len(tried) > 0 {
				status, msg = http.StatusBadGateway, "backend unreachable and no other healthy backend to retry on"
			}
			writeError(w, status, msg)
			return
		}
		tried = append(tried, b)
		err := lb.forward(b, w, r)
		if err == nil {
			return
		}
		if r.Context().Err() != nil {
			return // the client went away: not the backend's fault, and nobody to answer
		}
		lb.log.Warn("proxy error", "backend", b.URL.String(), "attempt", attempt+1, "err", err)
		if b.proxyFailed(time.Now(), lb.cfg.PassiveErrors, lb.cfg.PassiveWindow) {
			lb.log.Warn("backend ejected after repeated errors", "backend", b.URL.String())
		}
		if !idempotent || attempt >= lb.cfg.Retries {
			status := http.StatusBadGateway
			if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
				status = http.StatusGatewayTimeout
			}
			writeError(w, status, "backend failed: "+err.Error())
			return
		}
	}
}

// forward proxies r to b and returns the error if the request never got a response.
func (lb *Balancer) forward(b *Backend, w http.ResponseWriter, r *http.Request) error {
	var failed error
	b.inFlight.Add(1)
	b.total.Add(1)
	defer b.inFlight.Add(-1)
	rec := &statusRecorder{ResponseWriter: w}
	b.proxy.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), errSlot{}, &failed)))
	if (failed != nil && r.Context().Err() == nil) || rec.status >= 500 {
		b.errors.Add(1)
	}
	if failed == nil {
		b.proxySucceeded()
	}
	return failed
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int)        { s.status = code; s.ResponseWriter.WriteHeader(code) }
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// RunHealthChecks checks every backend each interval until ctx ends; with a zero
// interval it returns at once (active checks off).
func (lb *Balancer) RunHealthChecks(ctx context.Context) {
	if lb.cfg.HealthInterval <= 0 {
		return
	}
	t := time.NewTicker(lb.cfg.HealthInterval)
	defer t.Stop()
	for {
		lb.mu.Lock()
		backends := slices.Clone(lb.backends)
		lb.mu.Unlock()
		var wg sync.WaitGroup
		for _, b := range backends {
			wg.Go(func() { lb.check(ctx, b) })
		}
		wg.Wait()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (lb *Balancer) check(ctx context.Context, b *Backend) {
	start := time.Now()
	c := Check{At: start}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.URL.String()+lb.cfg.HealthPath, nil)
	if err == nil {
		var resp *http.Response
		if resp, err = lb.checker.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("HTTP %d", resp.StatusCode)
			}
		}
	}
	c.LatencyMS = float64(time.Since(start).Microseconds()) / 1000
	c.OK = err == nil
	if err != nil {
		c.Error = err.Error()
	}
	if b.observe(c, lb.cfg.Rise, lb.cfg.Fall) {
		lb.log.Info("backend state changed", "backend", b.URL.String(), "up", c.OK, "check_error", c.Error)
	}
}

// Snapshot is the stats page's data.
type Snapshot struct {
	Strategy Strategy `json:"strategy"`
	Backends []Stats  `json:"backends"`
}

// Stats returns every backend's state and counters.
func (lb *Balancer) Stats() Snapshot {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	s := Snapshot{Strategy: lb.strategy, Backends: make([]Stats, len(lb.backends))}
	for i, b := range lb.backends {
		s.Backends[i] = b.stats()
	}
	return s
}
