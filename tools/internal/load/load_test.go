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
