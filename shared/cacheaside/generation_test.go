package cacheaside

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

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
	assert.Equal(t, "1", gen, "the retry bumped the generation")
	require.Eventually(t, func() bool { // the breaker may still be open for BreakFor
		v, err = e.a.Get(ctx, "7", returns(&calls, 3))
		return err == nil && e.requests(t, "miss") == 2
	}, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, item{V: 3}, v, "the copy from before the bump is not served")
}
