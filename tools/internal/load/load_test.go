package load

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sysdesign-course/course/tools/internal/report"
)

func TestRunStopsAtRequestCount(t *testing.T) {
	var calls atomic.Int64
	res, err := Run(context.Background(), Options{Workers: 4, Requests: 100, Duration: 10 * time.Second},
		func(context.Context) (string, error) {
			if calls.Add(1)%10 == 0 {
				return "", StatusError{503}
			}
			return "a", nil
		})
	require.NoError(t, err)
	assert.EqualValues(t, 100, calls.Load())
	assert.EqualValues(t, 90, res.OK)
	assert.EqualValues(t, 10, res.Failed)
	assert.Equal(t, map[string]int64{"HTTP 503": 10}, res.Errors)
	assert.Equal(t, map[string]int64{"a": 90}, res.ByInstance)
	assert.EqualValues(t, 100, res.Latency.TotalCount())
}

func TestRunStopsAtDurationAndHonoursRate(t *testing.T) {
	tl := report.NewTimeline(100 * time.Millisecond)
	res, err := Run(context.Background(), Options{Name: "x", Workers: 2, Duration: 500 * time.Millisecond, Rate: 100, Timeline: tl},
		func(context.Context) (string, error) { return "", nil })
	require.NoError(t, err)
	assert.InDelta(t, 50, res.OK, 12, "100 req/s for 0.5 s")
	series, _ := tl.Snapshot()
	require.Len(t, series, 1)
	assert.Equal(t, res.OK, series[0].OK)
}

// A target that stalls for 1 s once, under a fixed rate: every request due during the
// stall waits for it, so the run must show many slow requests (up to ~1 s), not one per worker.
func TestRateCountsStallFromIntendedSendTime(t *testing.T) {
	const stallAt, workers = 200, 4 // the stall starts with the request due ~1 s into the run
	gate := make(chan struct{})
	var n, inFlight, maxInFlight atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cur := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := maxInFlight.Load(); cur > m && !maxInFlight.CompareAndSwap(m, cur); m = maxInFlight.Load() {
		}
		i := n.Add(1)
		if i == stallAt {
			time.AfterFunc(time.Second, func() { close(gate) })
		}
		if i >= stallAt {
			select {
			case <-gate:
			case <-r.Context().Done():
			}
		}
	}))
	defer srv.Close()

	tl := report.NewTimeline(100 * time.Millisecond)
	res, err := Run(context.Background(), Options{Name: "x", Workers: workers, Duration: 3 * time.Second, Rate: 200, Timeline: tl},
		Get(NewClient(workers, 5*time.Second), srv.URL))
	require.NoError(t, err)

	assert.Zero(t, res.Failed)
	assert.InDelta(t, 600, res.OK, 40, "200 req/s for 3 s, the stall's backlog caught up")
	assert.LessOrEqual(t, maxInFlight.Load(), int64(workers), "workers bound the requests in flight")
	p99 := time.Duration(res.Latency.ValueAtQuantile(99)) * time.Microsecond
	assert.GreaterOrEqual(t, p99, 800*time.Millisecond, "p99 shows the stall")
	assert.Less(t, time.Duration(res.Latency.Max())*time.Microsecond, 2*time.Second)
	var slow int64 // the ~100 requests due in the stall's first half waited at least 500 ms
	for _, b := range res.Latency.Distribution() {
		if b.From >= (500 * time.Millisecond).Microseconds() {
			slow += b.Count
		}
	}
	assert.Greater(t, slow, int64(60), "requests of >= 500 ms: many, not one per worker")
	// Counted from when each was sent, as a closed-loop generator does, the stall is one
	// slow request per worker: p99 hides it.
	assert.Less(t, time.Duration(res.Sent.ValueAtQuantile(99))*time.Microsecond, 500*time.Millisecond, "p99 from the actual send")
	assert.GreaterOrEqual(t, time.Duration(res.Sent.Max())*time.Microsecond, 900*time.Millisecond, "the stalled requests themselves")

	// Stamped with their intended times, requests spread evenly over the timeline; stamped
	// when sent, the stall's buckets would be empty and the one after it would hold ~200.
	series, _ := tl.Snapshot()
	require.Len(t, series, 1)
	assert.Equal(t, res.OK, series[0].OK)
	for _, p := range series[0].Points {
		assert.LessOrEqual(t, p.Requests, int64(40), "bucket at %d ms", p.AtMS)
	}
}

func TestRateQueuesRequestsBehindBusyWorkers(t *testing.T) {
	// One worker, 100 req/s: while the first request takes 200 ms the next ones fall due and
	// wait; each counts its wait (request i, due at i*10 ms, ends at ~200 ms or later).
	var calls atomic.Int64
	res, err := Run(context.Background(), Options{Workers: 1, Requests: 20, Duration: 10 * time.Second, Rate: 100},
		func(context.Context) (string, error) {
			if calls.Add(1) == 1 {
				time.Sleep(200 * time.Millisecond)
			}
			return "", nil
		})
	require.NoError(t, err)
	assert.EqualValues(t, 20, calls.Load())
	assert.EqualValues(t, 20, res.Latency.TotalCount())
	assert.GreaterOrEqual(t, res.Latency.ValueAtQuantile(50), (90 * time.Millisecond).Microseconds(),
		"half the requests were due 100 ms or more before the first one ended")
}

func TestClosedLoopMeasuresFromActualSend(t *testing.T) {
	// No rate: no schedule to be late against, so each request counts only its own time.
	// One worker's requests do not overlap, so their latencies add up to at most the run.
	res, err := Run(context.Background(), Options{Workers: 1, Requests: 5, Duration: 10 * time.Second},
		func(context.Context) (string, error) {
			time.Sleep(10 * time.Millisecond)
			return "a", nil
		})
	require.NoError(t, err)
	assert.EqualValues(t, 5, res.OK)
	sum := res.Latency.Mean() * float64(res.Latency.TotalCount()) // within the histogram's 0.1%
	assert.LessOrEqual(t, sum, 1.01*float64(res.Elapsed.Microseconds()))
}

func TestRateStopsAtRequestCount(t *testing.T) {
	var calls atomic.Int64
	res, err := Run(context.Background(), Options{Workers: 4, Requests: 50, Duration: 10 * time.Second, Rate: 1000},
		func(context.Context) (string, error) { calls.Add(1); return "", nil })
	require.NoError(t, err)
	assert.EqualValues(t, 50, calls.Load())
	assert.EqualValues(t, 50, res.OK)
	assert.GreaterOrEqual(t, res.Elapsed, 49*time.Millisecond, "the 50th request is due at 49 ms")
	assert.Less(t, res.Elapsed, 2*time.Second)
}

func TestRunEndsAtDurationWithoutCountingCutRequests(t *testing.T) {
	// Requests still stuck when the duration ends were cut by the run, not failed by the target.
	res, err := Run(context.Background(), Options{Workers: 2, Duration: 200 * time.Millisecond, Rate: 100},
		func(ctx context.Context) (string, error) { <-ctx.Done(); return "", ctx.Err() })
	require.NoError(t, err)
	assert.Zero(t, res.OK+res.Failed)
	assert.Less(t, res.Elapsed, 2*time.Second)
}

func TestRunStopsWhenCallerCancels(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	sent := make(chan struct{}, 1)
	done := make(chan *Result)
	go func() {
		// The second request is due in 1 min: only the cancel can end the wait for it.
		res, err := Run(ctx, Options{Workers: 2, Duration: time.Hour, Rate: 1.0 / 60},
			func(context.Context) (string, error) { sent <- struct{}{}; return "", nil })
		assert.NoError(t, err)
		done <- res
	}()
	<-sent
	cancel()
	select {
	case res := <-done:
		assert.EqualValues(t, 1, res.OK)
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
}

func TestRunRejectsUnboundedRuns(t *testing.T) {
	_, err := Run(context.Background(), Options{Workers: 1}, nil)
	assert.Error(t, err)
}

func TestGetAcceptsOnly2xx(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Served-By", "s1")
		if r.URL.Path == "/bad" {
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	c := NewClient(1, time.Second)
	inst, err := Get(c, srv.URL+"/ok")(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "s1", inst)
	_, err = Get(c, srv.URL+"/bad")(context.Background())
	assert.Equal(t, "HTTP 500", Classify(err))
}

func TestClassify(t *testing.T) {
	assert.Equal(t, "connection refused", Classify(fmt.Errorf("dial: %w", syscall.ECONNREFUSED)))
	assert.Equal(t, "connection reset", Classify(fmt.Errorf("read: %w", syscall.ECONNRESET)))
	assert.Equal(t, "timeout", Classify(context.DeadlineExceeded))
	assert.Equal(t, "other", Classify(errors.New("other")))
}
