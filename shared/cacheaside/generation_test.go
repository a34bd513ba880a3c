package cacheaside

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// InvalidateAll turns every cached value into a miss, without touching the keys.
func TestInvalidateAllMakesEveryEntryAMiss(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	var calls atomic.Int64
	for _, id := range []string{"1", "2"} {
		_, err := e.a.Get(ctx, id, returns(&calls, 1))
		require.NoError(t, err)
	}
	e.a.InvalidateAll(ctx)
	assert.Equal(t, 1.0, e.invalidations(t, "generation"))
	for _, id := range []string{"1", "2"} {
		v, err := e.a.Get(ctx, id, returns(&calls, 2))
		require.NoError(t, err)
		assert.Equal(t, item{V: 2}, v, "entry %s was read under the old generation", id)
	}
	assert.EqualValues(t, 4, calls.Load())
	v, err := e.a.Get(ctx, "1", mustNotLoad(t))
	require.NoError(t, err)
	assert.Equal(t, item{V: 2}, v, "refilled under the new generation: a hit")
}

// A value read before InvalidateAll but filled after it is tagged with the generation it
// was read under, so it is never served.
func TestFillAfterInvalidateAllIsNeverServed(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	v, err := e.a.Get(ctx, "1", func(context.Context) (item, error) {
		e.a.InvalidateAll(ctx) // another row changes while this one is being read
		return item{V: 1}, nil
	})
	require.NoError(t, err)
	assert.Equal(t, item{V: 1}, v)
	var calls atomic.Int64
	v, err = e.a.Get(ctx, "1", returns(&calls, 2))
	require.NoError(t, err)
	assert.Equal(t, item{V: 2}, v)
	assert.EqualValues(t, 1, calls.Load(), "the old-generation fill was a miss")
}

// A bump that fails makes this process read everything from the source until the
// background retry lands it; then the cache serves again, under the new generation.
func TestFailedInvalidateAllBypassesEveryKeyUntilRetried(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	var calls atomic.Int64
	_, err := e.a.Get(ctx, "7", returns(&calls, 1))
	require.NoError(t, err)

	e.mr.Close()
	e.a.InvalidateAll(ctx)
	assert.Equal(t, 1.0, e.invalidations(t, "deferred"))
	v, err := e.a.Get(ctx, "7", returns(&calls, 2))
	require.NoError(t, err)
	assert.Equal(t, item{V: 2}, v)
	assert.Equal(t, 1.0, e.requests(t, "pending_delete"))

	require.NoError(t, e.mr.Restart())
	require.Eventually(t, func() bool { return metric(t, e.reg, "cache_pending_deletes") == 0 }, 5*time.Second, 5*time.Millisecond)
	gen, err := e.mr.Get("things:gen")
	require.NoError(t, err)
	assert.NotEqual(t, "0", gen, "the retry bumped the generation")
	require.Eventually(t, func() bool { // the breaker may still be open for BreakFor
		v, err = e.a.Get(ctx, "7", returns(&calls, 3))
		return err == nil && e.requests(t, "miss") == 2
	}, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, item{V: 3}, v, "the copy from before the bump is not served")
}

// After a Redis restart the generation counts from 0 again, so a number seen before the
// restart can come round again; a fill read under it must not land meanwhile.
func TestFillFromBeforeARedisRestartIsRefused(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	e.a.InvalidateAll(ctx)
	e.a.InvalidateAll(ctx) // generation 2
	_, err := e.a.Get(ctx, "1", func(context.Context) (item, error) {
		e.mr.FlushAll() // Redis restarts, empty, while this read of generation 2 is in Postgres
		return item{V: 1}, nil
	})
	require.NoError(t, err)
	assert.Equal(t, 1.0, e.fills(t, "lease_lost"))
	e.a.InvalidateAll(ctx)
	e.a.InvalidateAll(ctx) // two acknowledged writes bring the counter back to 2
	var calls atomic.Int64
	v, err := e.a.Get(ctx, "1", returns(&calls, 3))
	require.NoError(t, err)
	assert.Equal(t, item{V: 3}, v, "the value read before the restart is not served")
}

// A write's delete goes to Redis even while this process's breaker is open: the other
// replicas may be reading Redis, and must not keep the old copy.
func TestInvalidateIgnoresTheBreaker(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.BreakFor = time.Hour })
	ctx := context.Background()
	var calls atomic.Int64
	e.mr.Close()
	for range 3 {
		_, err := e.a.Get(ctx, "1", returns(&calls, 1))
		require.NoError(t, err)
	}
	require.Equal(t, 2.0, metric(t, e.reg, "cache_breaker_state"), "open")
	require.NoError(t, e.mr.Restart())
	require.NoError(t, e.mr.Set("things:{1}", "0|{\"v\":1}"))
	e.a.Invalidate(ctx, "1")
	assert.Equal(t, 1.0, e.invalidations(t, "deleted"))
	assert.False(t, e.mr.Exists("things:{1}"))
}

// flushBeforeLease empties Redis just before the first lease is taken: a restart between a
// reader's MGET (which saw the generation) and its lease.
type flushBeforeLease struct {
	mr   interface{ FlushAll() }
	done *atomic.Bool
}

func (h flushBeforeLease) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h flushBeforeLease) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "set" && strings.HasSuffix(fmt.Sprint(cmd.Args()[1]), ":lease") && h.done.CompareAndSwap(false, true) {
			h.mr.FlushAll()
		}
		return next(ctx, cmd)
	}
}
func (h flushBeforeLease) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// A restart between a reader's MGET and its lease leaves the lease valid; as many bumps
// as before the restart, during the read, must still not bring the generation it saw
// back (a counter restarting at 0 would, and the old value would be stored as current).
func TestGenerationsDoNotRepeatAfterARestart(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	e.a.InvalidateAll(ctx)
	e.a.InvalidateAll(ctx)
	e.rdb.AddHook(flushBeforeLease{mr: e.mr, done: new(atomic.Bool)})
	_, err := e.a.Get(ctx, "1", func(context.Context) (item, error) {
		e.a.InvalidateAll(ctx) // two writes that change what this read computes from
		e.a.InvalidateAll(ctx)
		return item{V: 1}, nil
	})
	require.NoError(t, err)
	var calls atomic.Int64
	v, err := e.a.Get(ctx, "1", returns(&calls, 2))
	require.NoError(t, err)
	assert.Equal(t, item{V: 2}, v, "the value read before the bumps is not served")
}
