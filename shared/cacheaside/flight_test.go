package cacheaside

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// gatedSource is a source whose reads each take the next version number when they start,
// and then block until the test releases them, one by one, in order.
type gatedSource struct {
	version atomic.Int64
	started chan int      // each read's version, as it starts
	release chan struct{} // one send lets one read return
}

// newGatedSource's reads are all let go when the test ends, so a failed test leaves no
// goroutine parked in flights.do.
func newGatedSource(t *testing.T) *gatedSource {
	s := &gatedSource{started: make(chan int, 100), release: make(chan struct{})}
	t.Cleanup(func() { close(s.release) })
	return s
}

func (s *gatedSource) load(context.Context) (item, error) {
	v := int(s.version.Add(1))
	s.started <- v
	<-s.release
	return item{V: v}, nil
}

func (s *gatedSource) waitStart(t *testing.T, want int) {
	t.Helper()
	select {
	case v := <-s.started:
		require.Equal(t, want, v)
	case <-time.After(5 * time.Second):
		t.Fatalf("read %d did not start", want)
	}
}

func TestConcurrentMissesCostTwoReads(t *testing.T) {
	e := newEnv(t, nil)
	joins := countJoins(&e.a.flights)
	src := newGatedSource(t)
	const n = 50
	results := make([]item, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	get := func(i int) { // asserts nothing itself: it may outlive a failed test
		defer wg.Done()
		results[i], errs[i] = e.a.Get(context.Background(), "hot", src.load)
	}

	wg.Add(1)
	go get(0)
	src.waitStart(t, 1) // read 1 is running; everyone else arrives during it
	wg.Add(n - 1)
	for i := 1; i < n; i++ {
		go get(i)
	}
	waitJoins(t, joins, n-1)

	src.release <- struct{}{}
	src.waitStart(t, 2)
	src.release <- struct{}{}
	wg.Wait()

	for i, err := range errs {
		assert.NoError(t, err, "caller %d", i)
	}
	assert.EqualValues(t, 2, src.version.Load(), "50 concurrent misses must cost 2 reads")
	assert.Equal(t, 2.0, e.loads(t))
	assert.Equal(t, float64(n-1), metric(t, e.reg, "cache_collapsed_total"))
	assert.Equal(t, item{V: 1}, results[0])
	for i := 1; i < n; i++ {
		assert.Equal(t, item{V: 2}, results[i], "caller %d arrived during read 1 so must get read 2", i)
	}
	select {
	case v := <-src.started:
		t.Fatalf("unexpected read %d", v)
	default:
	}
}

// A caller never shares a read that began before it arrived: that read may predate a
// write the caller has seen acknowledged. Plain singleflight would hand B and C version 1.
func TestCallerGetsAReadStartedAfterItArrived(t *testing.T) {
	e := newEnv(t, nil)
	joins := countJoins(&e.a.flights)
	src := newGatedSource(t)
	ctx := context.Background()
	type res struct {
		v   item
		err error
	}
	get := func() chan res {
		ch := make(chan res, 1)
		go func() {
			v, err := e.a.Get(ctx, "1", src.load)
			ch <- res{v, err}
		}()
		return ch
	}

	a := get()
	src.waitStart(t, 1)
	// A write commits and is invalidated; B, told of it, reads while read 1 is running.
	e.a.Invalidate(ctx, "1")
	b := get()
	waitJoins(t, joins, 1)

	src.release <- struct{}{}
	ra := <-a
	require.NoError(t, ra.err)
	assert.Equal(t, item{V: 1}, ra.v)
	assert.False(t, e.mr.Exists("things:{1}"), "read 1 predates the write: its fill is refused")

	src.waitStart(t, 2) // B's read starts only now, after B arrived
	c := get()          // C arrives while read 2 runs: it must wait for read 3
	waitJoins(t, joins, 2)
	src.release <- struct{}{}
	rb := <-b
	require.NoError(t, rb.err)
	assert.Equal(t, item{V: 2}, rb.v)

	src.waitStart(t, 3)
	src.release <- struct{}{}
	rc := <-c
	require.NoError(t, rc.err)
	assert.Equal(t, item{V: 3}, rc.v)
	raw, _ := e.entry("things:{1}")
	assert.JSONEq(t, `{"v":3}`, raw)
}

func TestFlightWaiterLeavesWhenItsContextEnds(t *testing.T) {
	var f flights[int]
	joins := countJoins(&f)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	var reads atomic.Int64
	fn := func() (int, error) {
		n := int(reads.Add(1))
		<-release
		return n, nil
	}
	type res struct {
		v      int
		shared bool
		err    error
	}
	do := func(ctx context.Context) chan res { // asserts nothing itself: it may outlive a failed test
		ch := make(chan res, 1)
		go func() {
			v, shared, err := f.do(ctx, "k", fn)
			ch <- res{v, shared, err}
		}()
		return ch
	}
	first := do(context.Background())
	require.Eventually(t, func() bool { return reads.Load() == 1 }, 5*time.Second, time.Millisecond)

	ctx, cancel := context.WithCancel(context.Background())
	quitter := do(ctx)
	stayer := do(context.Background())
	waitJoins(t, joins, 2)
	cancel()
	assert.ErrorIs(t, (<-quitter).err, context.Canceled)

	release <- struct{}{} // read 1 ends; the waiting read 2 goes on for the stayer
	assert.Equal(t, res{1, false, nil}, <-first)
	release <- struct{}{}
	assert.Equal(t, res{2, true, nil}, <-stayer)

	f.mu.Lock()
	assert.Empty(t, f.keys, "an idle key is forgotten")
	f.mu.Unlock()
}

func TestFlightPanicBecomesErrorAndFreesKey(t *testing.T) {
	var f flights[int]
	_, _, err := f.do(context.Background(), "k", func() (int, error) { panic("boom") })
	require.Error(t, err)
	assert.Contains(t, err.Error(), "panicked")

	v, _, err := f.do(context.Background(), "k", func() (int, error) { return 7, nil })
	require.NoError(t, err)
	assert.Equal(t, 7, v)
}

func TestFlightErrorsAreShared(t *testing.T) {
	var f flights[int]
	joins := countJoins(&f)
	boom := errors.New("boom")
	release := make(chan struct{})
	defer close(release)
	started := make(chan struct{}, 3)
	fn := func() (int, error) {
		started <- struct{}{}
		<-release
		return 0, boom
	}
	go func() { _, _, _ = f.do(context.Background(), "k", fn) }()
	<-started
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			_, _, err := f.do(context.Background(), "k", fn)
			errs <- err
		}()
	}
	waitJoins(t, joins, 2)
	release <- struct{}{}
	release <- struct{}{}
	assert.ErrorIs(t, <-errs, boom)
	assert.ErrorIs(t, <-errs, boom)
}
