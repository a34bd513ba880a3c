// Package cacheaside keeps copies of a source of truth's values (here, Postgres rows) in
// Redis, and never serves a copy older than an acknowledged write.
//
// Reads look in Redis first; on a miss they read the source and fill Redis with a TTL that
// has jitter. Writers change the source first and then delete the key (Invalidate), so the
// next read misses and fetches the new value. A not-found answer is cached too, briefly, so
// unknown ids do not all reach the database. Two races are closed:
//
//   - A reader that read the old value just before a write, and fills it just after the
//     writer's delete, would leave a stale copy until the TTL ends. So a reader takes a
//     lease (a random token under a second key) before reading the source, the fill is a
//     Lua script that stores the value only if the lease is still there, and Invalidate
//     deletes the lease with the key.
//   - Concurrent misses share one read only if it started after they arrived (see flights).
//
// Some values depend on rows other than their own (a rank among all users): a write that
// changes those rows calls InvalidateAll, which bumps the cache's generation. Every entry
// carries the generation it was read under, and an entry of an older one is a miss. A read
// fetches the generation and the entry in one MGET (on Redis Cluster the two keys would
// need one hash slot).
//
// Redis is optional to correctness and to availability: when it fails or is slow a read
// goes to the source (counted, logged, never an error for the caller), and a circuit
// breaker stops paying Redis's timeout on every request until a probe succeeds. A delete
// that fails is retried in the background, and until it succeeds this process reads that
// key from the source.
package cacheaside

import (
	"context"
	cryptorand "crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"
)

// Config is read from the environment by the stage's main.
type Config struct {
	// Enabled is where the cache starts; SetEnabled (PUT /admin/cache) switches it at run time.
	Enabled bool          `env:"CACHE_ENABLED" envDefault:"true"`
	TTL     time.Duration `env:"CACHE_TTL" envDefault:"5m"`
	// Jitter spreads each TTL over ±Jitter of its length, so keys filled together (after a
	// deploy or a Redis restart) do not all expire, and all miss, together.
	Jitter      float64       `env:"CACHE_TTL_JITTER" envDefault:"0.1"`
	NotFoundTTL time.Duration `env:"CACHE_NOT_FOUND_TTL" envDefault:"5s"`
	// LoadTimeout bounds one read of the source made on behalf of every caller waiting for it.
	LoadTimeout time.Duration `env:"CACHE_LOAD_TIMEOUT" envDefault:"2s"`
	// After BreakAfter consecutive Redis failures, skip Redis for BreakFor, then probe it.
	BreakAfter uint32        `env:"CACHE_BREAK_AFTER" envDefault:"3"`
	BreakFor   time.Duration `env:"CACHE_BREAK_FOR" envDefault:"1s"`
	// RetryEvery is how often deletes that failed are tried again.
	RetryEvery time.Duration `env:"CACHE_RETRY_EVERY" envDefault:"250ms"`
}

func (c Config) validate() error {
	switch {
	case c.TTL <= 0 || c.LoadTimeout <= 0 || c.BreakFor <= 0 || c.RetryEvery <= 0:
		return errors.New("cache TTL, load timeout, break and retry intervals must be positive")
	case c.NotFoundTTL < time.Millisecond || float64(c.TTL)*(1-c.Jitter) < float64(time.Millisecond):
		return errors.New("cache TTLs must be at least 1 ms (Redis stores milliseconds)")
	case c.Jitter < 0 || c.Jitter >= 1:
		return fmt.Errorf("CACHE_TTL_JITTER must be in [0, 1), got %g", c.Jitter)
	case c.BreakAfter < 1:
		return errors.New("CACHE_BREAK_AFTER must be at least 1")
	}
	return nil
}

// notFoundMarker is what Redis holds (after the generation) for an id the source does not
// have. Values are JSON, which never starts with this byte.
const notFoundMarker = "\x00not-found"

// fill stores a value only while the reader's lease is still there (a delete since the
// lease was taken means the value read may predate a write) and the generation is still
// the one it was read under (a bump means the same; see bump for why numbers never repeat).
var fill = redis.NewScript(`
if redis.call('GET', KEYS[2]) == ARGV[1] and (redis.call('GET', KEYS[3]) or '0') == ARGV[4] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  redis.call('DEL', KEYS[2])
  return 1
end
return 0`)

// bump moves a cache to its next generation. A counter that is not there (a new or a
// restarted Redis) starts from the caller's clock in milliseconds rather than from 1, so a
// number in use before a restart does not come round again while a read that saw it is
// still in flight.
var bump = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('INCR', KEYS[1]) end
redis.call('SET', KEYS[1], ARGV[1])
return tonumber(ARGV[1])`)

// errBreakerOpen is a Redis call not made: the breaker is open.
var errBreakerOpen = errors.New("redis skipped: circuit breaker open")

// Aside is a cache-aside of values of type V (stored as JSON) in front of a source.
type Aside[V any] struct {
	name     string
	genKey   string
	rdb      redis.Cmdable
	cfg      Config
	notFound error
	log      *slog.Logger
	m        *metrics
	breaker  *gobreaker.TwoStepCircuitBreaker[struct{}]
	flights  flights[V]

	mu      sync.Mutex
	enabled bool
	pending map[string]uint64 // keys whose delete failed (genKey: a failed bump), with the failure's sequence number
	seq     uint64

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// New returns a cache named name (the key prefix and the metrics' "cache" label). A load
// that fails with an error matching notFound (errors.Is) is cached as not found, and Get
// answers notFound for it until NotFoundTTL ends. Close stops its background retries.
func New[V any](name string, rdb redis.Cmdable, notFound error, cfg Config, reg prometheus.Registerer, log *slog.Logger) (*Aside[V], error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(reg, name)
	if err != nil {
		return nil, err
	}
	a := &Aside[V]{name: name, genKey: name + ":gen", rdb: rdb, cfg: cfg, notFound: notFound, log: log.With("cache", name), m: m,
		enabled: cfg.Enabled, pending: map[string]uint64{}, stop: make(chan struct{}), done: make(chan struct{})}
	m.setEnabled(cfg.Enabled)
	a.breaker = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        name,
		MaxRequests: 1, // one probe while half-open
		Timeout:     cfg.BreakFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= cfg.BreakAfter },
		// A caller that hung up says nothing about Redis either way.
		IsExcluded: func(err error) bool { return errors.Is(err, context.Canceled) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			a.log.Warn("redis circuit breaker", "from", from.String(), "to", to.String())
			m.breaker.Set(float64(to))
		},
	})
	go a.retryDeletes()
	return a, nil
}

// Close stops retrying failed deletes, after one last try: a delete left undone would
// leave a copy older than its write until the TTL ends.
func (a *Aside[V]) Close() {
	a.closeOnce.Do(func() {
		close(a.stop)
		<-a.done
		a.retryPending()
	})
}

// Enabled reports whether reads use the cache.
func (a *Aside[V]) Enabled() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.enabled
}

// SetEnabled switches reads through the cache on or off. Writes invalidate either way, so
// switching it back on never uncovers a copy older than a write made while it was off.
func (a *Aside[V]) SetEnabled(on bool) {
	a.mu.Lock()
	a.enabled = on
	a.m.setEnabled(on)
	a.mu.Unlock()
	a.log.Info("cache switched", "enabled", on)
}

func (a *Aside[V]) key(id string) string { return a.name + ":{" + id + "}" }

// leaseKey shares the key's hash tag, so both live on one node of a Redis Cluster.
func leaseKey(key string) string { return key + ":lease" }

// Get returns the value for id: from Redis when it holds one, else from load (which reads
// the source of truth and must honour its ctx), filling Redis on the way out. Errors are
// load's own (or notFound); Redis's are logged and counted, never returned.
func (a *Aside[V]) Get(ctx context.Context, id string, load func(context.Context) (V, error)) (V, error) {
	key := a.key(id)
	if reason := a.bypass(key); reason != "" {
		return a.direct(ctx, reason, load)
	}
	var gen string
	var entry any
	err := a.redis(ctx, func(ctx context.Context) error {
		vals, err := a.rdb.MGet(ctx, a.genKey, key).Result()
		if err == nil {
			gen, entry = str(vals[0], "0"), vals[1]
		}
		return err
	})
	raw, current := "", false
	if s, ok := entry.(string); ok {
		var g string
		g, raw, _ = strings.Cut(s, "|")
		current = g == gen
	}
	switch {
	case err == nil && !current: // absent, or read under an older generation: a miss
	case err == nil:
		if raw == notFoundMarker {
			a.m.requests.WithLabelValues("negative_hit").Inc()
			var zero V
			return zero, a.notFound
		}
		var v V
		if jerr := json.Unmarshal([]byte(raw), &v); jerr == nil {
			a.m.requests.WithLabelValues("hit").Inc()
			return v, nil
		}
		a.log.Warn("unreadable cache entry; reading the source", "key", key)
	case ctx.Err() != nil:
		var zero V
		return zero, ctx.Err()
	case errors.Is(err, errBreakerOpen):
		return a.direct(ctx, "breaker_open", load)
	default:
		a.log.Warn("redis read failed; reading the source", "key", key, "err", err)
		return a.direct(ctx, "redis_error", load)
	}
	a.m.requests.WithLabelValues("miss").Inc()
	v, shared, err := a.flights.do(ctx, key, func() (V, error) { return a.loadAndFill(key, gen, load) })
	if shared {
		a.m.collapsed.Inc()
	}
	return v, err
}

// bypass says why a read must skip Redis, or "" if it may use it.
func (a *Aside[V]) bypass(key string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case !a.enabled:
		return "disabled"
	case a.pending[key] != 0, a.pending[a.genKey] != 0:
		return "pending_delete" // Redis may still hold a copy older than our own write
	}
	return ""
}

// direct reads the source without the cache.
func (a *Aside[V]) direct(ctx context.Context, reason string, load func(context.Context) (V, error)) (V, error) {
	a.m.requests.WithLabelValues(reason).Inc()
	a.m.loads.Inc()
	return load(ctx)
}

// loadAndFill reads the source under a lease and fills Redis, tagged with gen (the
// generation seen before the read), if the lease survived. It runs once for every caller
// sharing it, so it answers to its own deadline, not theirs.
func (a *Aside[V]) loadAndFill(key, gen string, load func(context.Context) (V, error)) (V, error) {
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.LoadTimeout)
	defer cancel()
	token := cryptorand.Text()
	lease := leaseKey(key)
	leased := a.redis(ctx, func(ctx context.Context) error {
		return a.rdb.Set(ctx, lease, token, a.cfg.LoadTimeout+time.Second).Err()
	}) == nil

	a.m.loads.Inc()
	v, err := load(ctx)
	var payload string
	var ttl time.Duration
	switch {
	case err == nil:
		b, jerr := json.Marshal(v)
		if jerr != nil {
			a.log.Error("value cannot be cached", "key", key, "err", jerr)
			return v, nil
		}
		payload, ttl = string(b), a.ttl()
	case errors.Is(err, a.notFound):
		payload, ttl = notFoundMarker, a.cfg.NotFoundTTL
	default:
		return v, err // the source failed: nothing to cache
	}
	if !leased {
		a.m.fills.WithLabelValues("no_lease").Inc()
		return v, err
	}
	// The fill gets its own deadline: a load that used most of LoadTimeout must not leave
	// it none (and count as a Redis failure).
	fctx, fcancel := context.WithTimeout(context.Background(), time.Second)
	defer fcancel()
	var stored int64
	ferr := a.redis(fctx, func(fctx context.Context) (e error) {
		stored, e = fill.Run(fctx, a.rdb, []string{key, lease, a.genKey}, token, gen+"|"+payload, ttl.Milliseconds(), gen).Int64()
		return e
	})
	switch {
	case ferr != nil:
		a.m.fills.WithLabelValues("error").Inc()
	case stored == 1:
		a.m.fills.WithLabelValues("stored").Inc()
	default:
		a.m.fills.WithLabelValues("lease_lost").Inc() // a write, or a newer reader, came first
	}
	return v, err
}

// ttl is the configured TTL spread uniformly over ±Jitter.
func (a *Aside[V]) ttl() time.Duration {
	f := 1 + a.cfg.Jitter*(2*rand.Float64()-1)
	return time.Duration(float64(a.cfg.TTL) * f)
}

// Invalidate deletes id's copy and any reader's lease on it. Call it after the write to the
// source committed and before acknowledging the write. It always asks Redis, whatever the
// breaker says: the breaker is this process's view, and a delete skipped because of it
// would leave the other replicas serving the old copy; a write can afford Redis's
// timeout. If Redis cannot be reached the delete is retried in the background, and this
// process reads id from the source until it succeeds.
func (a *Aside[V]) Invalidate(ctx context.Context, id string) {
	key := a.key(id)
	ctx = context.WithoutCancel(ctx) // a client that hangs up must not leave a stale copy
	err := a.rdb.Del(ctx, key, leaseKey(key)).Err()
	if err == nil {
		a.m.invalidations.WithLabelValues("deleted").Inc()
		return
	}
	a.deferInvalidation(key, err)
}

// InvalidateAll makes every cached value a miss, by moving to the next generation: for a
// write that changes what other ids' values were computed from. Call it, like Invalidate,
// after the source committed and before acknowledging; like Invalidate, it always asks Redis. If Redis cannot be reached, the
// bump is retried in the background and this process reads everything from the source
// until it succeeds.
func (a *Aside[V]) InvalidateAll(ctx context.Context) {
	ctx = context.WithoutCancel(ctx)
	err := bump.Run(ctx, a.rdb, []string{a.genKey}, time.Now().UnixMilli()).Err()
	if err == nil {
		a.m.invalidations.WithLabelValues("generation").Inc()
		return
	}
	a.deferInvalidation(a.genKey, err)
}

// maxPending bounds the deferred deletes; past it they collapse into one generation bump,
// which invalidates every key at once.
const maxPending = 10000

// deferInvalidation records a delete (or, for genKey, a generation bump) for the
// background retry.
func (a *Aside[V]) deferInvalidation(key string, err error) {
	a.mu.Lock()
	a.seq++
	if len(a.pending) >= maxPending {
		clear(a.pending)
		key = a.genKey
	}
	a.pending[key] = a.seq
	a.m.pending.Set(float64(len(a.pending)))
	a.mu.Unlock()
	a.m.invalidations.WithLabelValues("deferred").Inc()
	a.log.Warn("cache invalidation failed; retrying it in the background", "key", key, "err", err)
}

// retryDeletes retries the deferred invalidations every RetryEvery until Close.
func (a *Aside[V]) retryDeletes() {
	defer close(a.done)
	t := time.NewTicker(a.cfg.RetryEvery)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-t.C:
		}
		a.retryPending()
	}
}

// retryPending retries up to 500 deferred invalidations in one round trip. It calls Redis
// directly, not through the breaker: it is one small command per RetryEvery, and waiting
// for this process's breaker to close would leave other replicas, whose breakers may
// close sooner, reading the stale copies meanwhile. A key is forgotten only if no new
// failure for it happened while its retry was in flight.
func (a *Aside[V]) retryPending() {
	a.mu.Lock()
	batch := make(map[string]uint64, min(len(a.pending), 500))
	for k, seq := range a.pending {
		if len(batch) == 500 {
			break
		}
		batch[k] = seq
	}
	a.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	keys, bumpGen := make([]string, 0, 2*len(batch)), false
	for k := range batch {
		if k == a.genKey {
			bumpGen = true
			continue
		}
		keys = append(keys, k, leaseKey(k))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := a.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		if len(keys) > 0 {
			p.Del(ctx, keys...)
		}
		if bumpGen {
			bump.Eval(ctx, p, []string{a.genKey}, time.Now().UnixMilli()) // EVAL: no NOSCRIPT round in a pipeline
		}
		return nil
	}); err != nil {
		return
	}
	a.mu.Lock()
	for k, seq := range batch {
		if a.pending[k] == seq {
			delete(a.pending, k)
		}
	}
	n := len(a.pending)
	a.m.pending.Set(float64(n))
	a.mu.Unlock()
	a.m.invalidations.WithLabelValues("retried").Add(float64(len(batch)))
	a.log.Info("deferred cache invalidations done", "keys", len(batch), "still_pending", n)
}

// redis runs one Redis call through the circuit breaker; while the breaker is open it
// returns errBreakerOpen without calling Redis.
func (a *Aside[V]) redis(ctx context.Context, f func(context.Context) error) error {
	done, err := a.breaker.Allow()
	if err != nil {
		return errBreakerOpen
	}
	err = f(ctx)
	done(err)
	return err
}

// str is an MGET value as a string, or def when the key is absent.
func str(v any, def string) string {
	if s, ok := v.(string); ok {
		return s
	}
	return def
}
