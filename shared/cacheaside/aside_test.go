package cacheaside

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// returns is a loader answering v and counting its calls.
func returns(calls *atomic.Int64, v int) func(context.Context) (item, error) {
	return func(context.Context) (item, error) {
		calls.Add(1)
		return item{V: v}, nil
	}
}

// mustNotLoad is a loader for reads the cache must answer on its own.
func mustNotLoad(t *testing.T) func(context.Context) (item, error) {
	return func(context.Context) (item, error) {
		t.Error("loader called for a read the cache should have answered")
		return item{V: -1}, nil
	}
}

func TestConfigValidate(t *testing.T) {
	require.NoError(t, testConfig().validate())
	for name, tweak := range map[string]func(*Config){
		"zero TTL":           func(c *Config) { c.TTL = 0 },
		"zero not-found TTL": func(c *Config) { c.NotFoundTTL = 0 },
		"zero load timeout":  func(c *Config) { c.LoadTimeout = 0 },
		"zero break for":     func(c *Config) { c.BreakFor = 0 },
		"zero retry every":   func(c *Config) { c.RetryEvery = 0 },
		"negative jitter":    func(c *Config) { c.Jitter = -0.1 },
		"jitter of 1":        func(c *Config) { c.Jitter = 1 },
		"break after 0":      func(c *Config) { c.BreakAfter = 0 },
	} {
		cfg := testConfig()
		tweak(&cfg)
		assert.Error(t, cfg.validate(), name)
		_, err := New[item]("things", nil, errNotFound, cfg, prometheus.NewRegistry(), quietLog())
		assert.Error(t, err, name)
	}
}

func TestMissFillsWithJitteredTTLThenHits(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	var calls atomic.Int64

	v, err := e.a.Get(ctx, "42", returns(&calls, 1))
	require.NoError(t, err)
	assert.Equal(t, item{V: 1}, v)
	assert.EqualValues(t, 1, calls.Load())
	assert.Equal(t, 1.0, e.requests(t, "miss"))
	assert.Equal(t, 1.0, e.loads(t))
	assert.Equal(t, 1.0, e.fills(t, "stored"))

	raw, err := e.entry("things:{42}")
	require.NoError(t, err)
	assert.JSONEq(t, `{"v":1}`, raw)
	assert.False(t, e.mr.Exists("things:{42}:lease"), "a successful fill releases its lease")

	v, err = e.a.Get(ctx, "42", mustNotLoad(t))
	require.NoError(t, err)
	assert.Equal(t, item{V: 1}, v)
	assert.Equal(t, 1.0, e.requests(t, "hit"))
	assert.Equal(t, 1.0, e.loads(t), "a hit does not read the source")

	// Every TTL lies within ±Jitter, and they differ: keys filled together must not all
	// expire together.
	cfg := testConfig()
	lo := time.Duration(float64(cfg.TTL) * (1 - cfg.Jitter))
	hi := time.Duration(float64(cfg.TTL) * (1 + cfg.Jitter))
	ttls := map[time.Duration]bool{}
	for i := range 30 {
		id := "j" + strconv.Itoa(i)
		_, err := e.a.Get(ctx, id, returns(&calls, i))
		require.NoError(t, err)
		ttl := e.mr.TTL("things:{" + id + "}")
		assert.True(t, ttl >= lo && ttl <= hi, "TTL %v outside [%v, %v]", ttl, lo, hi)
		ttls[ttl] = true
	}
	assert.Greater(t, len(ttls), 20, "TTLs are not spread by jitter")
}

func TestJitterZeroGivesExactTTL(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Jitter = 0 })
	var calls atomic.Int64
	_, err := e.a.Get(context.Background(), "1", returns(&calls, 1))
	require.NoError(t, err)
	assert.Equal(t, time.Minute, e.mr.TTL("things:{1}"))
}

func TestNotFoundIsCachedBriefly(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	var calls atomic.Int64
	notFound := func(context.Context) (item, error) {
		calls.Add(1)
		return item{}, fmt.Errorf("select user 7: %w", errNotFound) // wrapped, as a store would
	}

	_, err := e.a.Get(ctx, "7", notFound)
	require.ErrorIs(t, err, errNotFound)
	assert.True(t, e.mr.Exists("things:{7}"), "not-found must be cached")
	assert.Equal(t, testConfig().NotFoundTTL, e.mr.TTL("things:{7}"), "not-found uses NotFoundTTL, without jitter")

	_, err = e.a.Get(ctx, "7", mustNotLoad(t))
	require.ErrorIs(t, err, errNotFound)
	assert.Equal(t, 1.0, e.requests(t, "negative_hit"))
	assert.EqualValues(t, 1, calls.Load())

	// Once NotFoundTTL passes the id is read again (it may have been created since).
	e.mr.FastForward(testConfig().NotFoundTTL + time.Millisecond)
	v, err := e.a.Get(ctx, "7", returns(&calls, 3))
	require.NoError(t, err)
	assert.Equal(t, item{V: 3}, v)
	assert.EqualValues(t, 2, calls.Load())
}

func TestLoaderErrorsAreNotCached(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	boom := errors.New("database unavailable")
	var calls atomic.Int64
	failing := func(context.Context) (item, error) {
		calls.Add(1)
		return item{}, boom
	}
	for range 2 {
		_, err := e.a.Get(ctx, "9", failing)
		require.ErrorIs(t, err, boom)
		assert.NotErrorIs(t, err, errNotFound)
	}
	assert.EqualValues(t, 2, calls.Load(), "a failed load must not be served from the cache")
	assert.False(t, e.mr.Exists("things:{9}"))
	assert.Equal(t, 0.0, e.fills(t, "stored"))

	// The source recovered: its value is read and cached.
	v, err := e.a.Get(ctx, "9", returns(&calls, 1))
	require.NoError(t, err)
	assert.Equal(t, item{V: 1}, v)
	assert.True(t, e.mr.Exists("things:{9}"))
}

func TestUnreadableEntryIsReadFromSourceAndReplaced(t *testing.T) {
	e := newEnv(t, nil)
	require.NoError(t, e.mr.Set("things:{5}", "{not json"))
	var calls atomic.Int64
	v, err := e.a.Get(context.Background(), "5", returns(&calls, 5))
	require.NoError(t, err)
	assert.Equal(t, item{V: 5}, v)
	raw, _ := e.entry("things:{5}")
	assert.JSONEq(t, `{"v":5}`, raw)
}

func TestInvalidateMakesNextGetLoadFresh(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	var calls atomic.Int64
	_, err := e.a.Get(ctx, "1", returns(&calls, 1))
	require.NoError(t, err)
	require.True(t, e.mr.Exists("things:{1}"))

	e.a.Invalidate(ctx, "1")
	assert.False(t, e.mr.Exists("things:{1}"))
	assert.Equal(t, 1.0, e.invalidations(t, "deleted"))

	v, err := e.a.Get(ctx, "1", returns(&calls, 2))
	require.NoError(t, err)
	assert.Equal(t, item{V: 2}, v)
	raw, _ := e.entry("things:{1}")
	assert.JSONEq(t, `{"v":2}`, raw)
}

// A caller that hangs up right after its write must still get the delete done.
func TestInvalidateIgnoresCallerCancellation(t *testing.T) {
	e := newEnv(t, nil)
	require.NoError(t, e.mr.Set("things:{1}", `{"v":1}`))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	e.a.Invalidate(ctx, "1")
	assert.False(t, e.mr.Exists("things:{1}"))
}

// The race leases close: a read of the source that began before a write must not fill
// Redis after that write's delete.
func TestFillRefusedWhenWriteInvalidatedDuringLoad(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()

	v, err := e.a.Get(ctx, "1", func(context.Context) (item, error) {
		// The reader has read version 1 from the source; now a writer commits version 2
		// and invalidates, before the reader fills.
		assert.True(t, e.mr.Exists("things:{1}:lease"), "the reader holds a lease while it reads")
		e.a.Invalidate(ctx, "1")
		return item{V: 1}, nil
	})
	require.NoError(t, err)
	assert.Equal(t, item{V: 1}, v, "the reader still gets what it read")
	assert.False(t, e.mr.Exists("things:{1}"), "the stale value must not be cached")
	assert.Equal(t, 1.0, e.fills(t, "lease_lost"))
	assert.Equal(t, 0.0, e.fills(t, "stored"))

	var calls atomic.Int64
	v, err = e.a.Get(ctx, "1", returns(&calls, 2))
	require.NoError(t, err)
	assert.Equal(t, item{V: 2}, v)
	assert.EqualValues(t, 1, calls.Load())
	raw, _ := e.entry("things:{1}")
	assert.JSONEq(t, `{"v":2}`, raw)
}

// A not-found read racing a create must not cache "not found" either.
func TestNegativeFillRefusedWhenWriteInvalidatedDuringLoad(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	_, err := e.a.Get(ctx, "1", func(context.Context) (item, error) {
		e.a.Invalidate(ctx, "1")
		return item{}, errNotFound
	})
	require.ErrorIs(t, err, errNotFound)
	assert.False(t, e.mr.Exists("things:{1}"))
	assert.Equal(t, 1.0, e.fills(t, "lease_lost"))
}

// Another reader (say, another server) leasing the key meanwhile also refuses this fill:
// only the latest lease may fill.
func TestFillRefusedWhenLeaseTakenOver(t *testing.T) {
	e := newEnv(t, nil)
	_, err := e.a.Get(context.Background(), "1", func(context.Context) (item, error) {
		require.NoError(t, e.mr.Set("things:{1}:lease", "someone-else"))
		return item{V: 1}, nil
	})
	require.NoError(t, err)
	assert.False(t, e.mr.Exists("things:{1}"))
	assert.Equal(t, 1.0, e.fills(t, "lease_lost"))
	lease, _ := e.mr.Get("things:{1}:lease")
	assert.Equal(t, "someone-else", lease, "a refused fill leaves the other reader's lease alone")
}

// A caller whose context ends gets its error, and that is neither a Redis failure nor a
// reason to read the source.
func TestCanceledCallerDoesNotTripBreaker(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.BreakAfter = 1 })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 3 {
		_, err := e.a.Get(ctx, "1", mustNotLoad(t))
		require.ErrorIs(t, err, context.Canceled)
	}
	assert.Equal(t, 0.0, metric(t, e.reg, "cache_breaker_state"), "breaker must stay closed")
	var calls atomic.Int64
	_, err := e.a.Get(context.Background(), "1", returns(&calls, 1))
	require.NoError(t, err)
	assert.Equal(t, 1.0, e.requests(t, "miss"))
}

func TestRedisDownFallsBackThenBreakerOpensAndCloses(t *testing.T) {
	// BreakFor long enough that a stall of a loaded machine under -race cannot half-open the
	// breaker before the fourth read.
	const breakFor = 500 * time.Millisecond
	e := newEnv(t, func(c *Config) { c.BreakFor = breakFor }) // BreakAfter 3
	ctx := context.Background()
	var calls atomic.Int64
	e.mr.Close()

	for i := range 3 {
		v, err := e.a.Get(ctx, "1", returns(&calls, 1))
		require.NoError(t, err, "a dead Redis is never the caller's error")
		assert.Equal(t, item{V: 1}, v)
		assert.Equal(t, float64(i+1), e.requests(t, "redis_error"))
	}
	assert.Equal(t, 2.0, metric(t, e.reg, "cache_breaker_state"), "open after BreakAfter failures")

	v, err := e.a.Get(ctx, "1", returns(&calls, 1))
	require.NoError(t, err)
	assert.Equal(t, item{V: 1}, v)
	assert.Equal(t, 1.0, e.requests(t, "breaker_open"))
	assert.Equal(t, 3.0, e.requests(t, "redis_error"), "an open breaker does not call Redis")
	assert.EqualValues(t, 4, calls.Load())
	assert.Equal(t, 4.0, e.loads(t))

	// Redis is back; once BreakFor has passed, the next read probes it and closes the breaker.
	require.NoError(t, e.mr.Restart())
	require.Eventually(t, func() bool { return e.a.breaker.State() == gobreaker.StateHalfOpen }, 5*time.Second, time.Millisecond,
		"half-open once BreakFor has passed")
	v, err = e.a.Get(ctx, "1", returns(&calls, 2))
	require.NoError(t, err)
	assert.Equal(t, item{V: 2}, v)
	assert.Equal(t, 1.0, e.requests(t, "miss"))
	assert.Equal(t, 0.0, metric(t, e.reg, "cache_breaker_state"), "closed after a successful probe")
	assert.Equal(t, 1.0, e.fills(t, "stored"))

	v, err = e.a.Get(ctx, "1", mustNotLoad(t))
	require.NoError(t, err)
	assert.Equal(t, item{V: 2}, v)
	assert.Equal(t, 1.0, e.requests(t, "hit"))
}

// If the lease cannot be taken the value is not filled: a fill without a lease would
// reopen the race leases close.
func TestNoLeaseNoFill(t *testing.T) {
	e := newEnv(t, nil)
	e.rdb.AddHook(failSets{})
	var calls atomic.Int64
	v, err := e.a.Get(context.Background(), "1", returns(&calls, 1))
	require.NoError(t, err)
	assert.Equal(t, item{V: 1}, v)
	assert.Equal(t, 1.0, e.fills(t, "no_lease"))
	assert.False(t, e.mr.Exists("things:{1}"))
}

// failSets makes SET fail (as a Redis refusing writes would) and lets everything else through.
type failSets struct{}

func (failSets) DialHook(next redis.DialHook) redis.DialHook { return next }
func (failSets) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "set" {
			cmd.SetErr(errors.New("READONLY You can't write against a read only replica"))
			return cmd.Err()
		}
		return next(ctx, cmd)
	}
}
func (failSets) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// With the background retry effectively off, a key whose delete failed keeps bypassing
// the cache even after Redis comes back holding the stale copy.
func TestPendingDeleteBypassesCache(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RetryEvery = time.Hour })
	ctx := context.Background()
	var calls atomic.Int64
	_, err := e.a.Get(ctx, "1", returns(&calls, 1))
	require.NoError(t, err)
	_, err = e.a.Get(ctx, "2", returns(&calls, 20))
	require.NoError(t, err)

	e.mr.Close()
	e.a.Invalidate(ctx, "1") // the write committed; its delete fails
	assert.Equal(t, 1.0, e.invalidations(t, "deferred"))
	assert.Equal(t, 1.0, metric(t, e.reg, "cache_pending_deletes"))

	require.NoError(t, e.mr.Restart())
	raw, err := e.entry("things:{1}")
	require.NoError(t, err)
	require.JSONEq(t, `{"v":1}`, raw, "Redis still holds the copy older than the write")

	for i := range 3 {
		v, err := e.a.Get(ctx, "1", returns(&calls, 2))
		require.NoError(t, err)
		assert.Equal(t, item{V: 2}, v, "never the stale copy")
		assert.Equal(t, float64(i+1), e.requests(t, "pending_delete"))
	}
	assert.EqualValues(t, 5, calls.Load(), "each pending read goes to the source")
	raw, _ = e.entry("things:{1}")
	assert.JSONEq(t, `{"v":1}`, raw, "a pending read does not fill")

	// Other keys still use the cache.
	v, err := e.a.Get(ctx, "2", mustNotLoad(t))
	require.NoError(t, err)
	assert.Equal(t, item{V: 20}, v)
}

func TestPendingDeleteIsRetriedWhenRedisReturns(t *testing.T) {
	e := newEnv(t, nil) // RetryEvery 20ms
	ctx := context.Background()
	var calls atomic.Int64
	_, err := e.a.Get(ctx, "1", returns(&calls, 1))
	require.NoError(t, err)

	e.mr.Close()
	e.a.Invalidate(ctx, "1")
	v, err := e.a.Get(ctx, "1", returns(&calls, 2))
	require.NoError(t, err)
	assert.Equal(t, item{V: 2}, v)
	assert.GreaterOrEqual(t, e.requests(t, "pending_delete"), 1.0)

	require.NoError(t, e.mr.Restart())
	// Whether or not the retry has run yet, no read may see the stale copy.
	require.Eventually(t, func() bool {
		v, err := e.a.Get(ctx, "1", returns(&calls, 2))
		require.NoError(t, err)
		require.Equal(t, item{V: 2}, v)
		return metric(t, e.reg, "cache_pending_deletes") == 0
	}, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, 1.0, e.invalidations(t, "retried"))

	// The stale copy is gone (any copy now is a fill made after the delete), and reads use
	// the cache again.
	_, _ = e.a.Get(ctx, "1", returns(&calls, 2))
	raw, err := e.entry("things:{1}")
	require.NoError(t, err)
	assert.JSONEq(t, `{"v":2}`, raw)
	hits := e.requests(t, "hit")
	v, err = e.a.Get(ctx, "1", mustNotLoad(t))
	require.NoError(t, err)
	assert.Equal(t, item{V: 2}, v)
	assert.Equal(t, hits+1, e.requests(t, "hit"))
}

func TestDisabledBypassesReadsButInvalidateStillDeletes(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	var calls atomic.Int64
	_, err := e.a.Get(ctx, "1", returns(&calls, 1))
	require.NoError(t, err)

	e.a.SetEnabled(false)
	assert.False(t, e.a.Enabled())
	assert.Equal(t, 0.0, metric(t, e.reg, "cache_enabled"))
	v, err := e.a.Get(ctx, "1", returns(&calls, 2))
	require.NoError(t, err)
	assert.Equal(t, item{V: 2}, v, "a disabled cache reads the source")
	assert.Equal(t, 1.0, e.requests(t, "disabled"))
	raw, _ := e.entry("things:{1}")
	assert.JSONEq(t, `{"v":1}`, raw, "a disabled read does not fill")

	// A write while disabled still deletes, so switching back on cannot uncover v1.
	e.a.Invalidate(ctx, "1")
	assert.False(t, e.mr.Exists("things:{1}"))

	e.a.SetEnabled(true)
	assert.Equal(t, 1.0, metric(t, e.reg, "cache_enabled"))
	v, err = e.a.Get(ctx, "1", returns(&calls, 3))
	require.NoError(t, err)
	assert.Equal(t, item{V: 3}, v)
	assert.Equal(t, 1.0, e.requests(t, "disabled"))
}

func TestStartsDisabledFromConfig(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Enabled = false })
	assert.False(t, e.a.Enabled())
	assert.Equal(t, 0.0, metric(t, e.reg, "cache_enabled"))
	var calls atomic.Int64
	_, err := e.a.Get(context.Background(), "1", returns(&calls, 1))
	require.NoError(t, err)
	assert.Equal(t, 1.0, e.requests(t, "disabled"))
	assert.False(t, e.mr.Exists("things:{1}"))
}

// writerCtx marks a context as a writer's, so delHook can fail that writer's delete.
type writerCtx struct{}

// delHook fails DELs made for a writer (as a Redis blip would) and parks the background
// retry's DELs until the test lets them through.
type delHook struct {
	retrying chan struct{}
	proceed  chan struct{}
	done     chan struct{}
}

func (h delHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h delHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "del" && ctx.Value(writerCtx{}) != nil {
			cmd.SetErr(errors.New("i/o timeout"))
			return cmd.Err()
		}
		return next(ctx, cmd)
	}
}

// The background retry sends its deletes as a pipeline: each one is announced on
// retrying and held until proceed (go-redis's own connection set-up pipelines pass).
func (h delHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if slices.ContainsFunc(cmds, func(c redis.Cmder) bool { return c.Name() == "del" }) {
			select {
			case h.retrying <- struct{}{}:
			case <-h.done:
			}
			select {
			case <-h.proceed:
			case <-h.done:
			}
		}
		return next(ctx, cmds)
	}
}

// A delete that fails again while its retry is in flight stays pending: the retry may have
// reached Redis before that second write committed, so it proves nothing about it.
func TestDeleteFailingDuringItsRetryStaysPending(t *testing.T) {
	e := newEnv(t, nil)
	h := delHook{retrying: make(chan struct{}), proceed: make(chan struct{}), done: make(chan struct{})}
	t.Cleanup(func() { close(h.done) })
	e.rdb.AddHook(h)
	wctx := context.WithValue(context.Background(), writerCtx{}, true)
	var calls atomic.Int64

	step := func(ch chan struct{}, send bool, what string) {
		t.Helper()
		var err error
		if send {
			select {
			case ch <- struct{}{}:
			case <-time.After(5 * time.Second):
				err = errors.New("timed out")
			}
		} else {
			select {
			case <-ch:
			case <-time.After(5 * time.Second):
				err = errors.New("timed out")
			}
		}
		require.NoError(t, err, what)
	}

	e.a.Invalidate(wctx, "1")                            // write 1's delete fails
	step(h.retrying, false, "retry of write 1's delete") // its retry is on its way to Redis
	e.a.Invalidate(wctx, "1")                            // write 2 commits; its delete fails too
	step(h.proceed, true, "let the retry through")       // the retry of write 1's delete succeeds

	// The next retry beginning means the first one is fully done.
	step(h.retrying, false, "a retry for write 2's delete")
	assert.Equal(t, 1.0, metric(t, e.reg, "cache_pending_deletes"), "write 2's delete is still owed")
	_, err := e.a.Get(context.Background(), "1", returns(&calls, 2))
	require.NoError(t, err)
	assert.Equal(t, 1.0, e.requests(t, "pending_delete"))

	step(h.proceed, true, "let the second retry through")
	require.Eventually(t, func() bool { return metric(t, e.reg, "cache_pending_deletes") == 0 },
		5*time.Second, time.Millisecond)
}
