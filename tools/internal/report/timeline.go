// Package report keeps what a check or bench run saw (latency and errors over time, the
// faults it injected, each step's verdict) and writes it as report.json plus chart.png.
package report

import (
	"sort"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds from 1 µs to 2 minutes: every timeout a check uses
// fits, and three significant figures keep percentiles exact to 0.1 %.
const (
	minLatencyUS = 1
	maxLatencyUS = int64(2 * time.Minute / time.Microsecond)
	sigFigs      = 3
	bucketFigs   = 2 // per-bucket histograms only draw the chart; two figures keep them small
)

// NewHistogram returns a latency histogram in microseconds.
func NewHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(minLatencyUS, maxLatencyUS, sigFigs)
}

// Timeline buckets outcomes by time since its start, per named series (for example "ping"
// and "long-query"), so a chart can show latency and errors second by second.
type Timeline struct {
	Start  time.Time
	Width  time.Duration
	mu     sync.Mutex
	series map[string]*series
	events []Event
}

type series struct {
	buckets []*bucket
	total   *hdrhistogram.Histogram
	ok      int64
	failed  int64
}

type bucket struct {
	hist   *hdrhistogram.Histogram
	failed int64
}

// Event is something the run did on purpose, such as stopping a container.
type Event struct {
	AtMS  int64  `json:"at_ms"`
	Label string `json:"label"`
}

// NewTimeline starts a timeline now with buckets of the given width.
func NewTimeline(width time.Duration) *Timeline {
	return &Timeline{Start: time.Now(), Width: width, series: map[string]*series{}}
}

// Record adds one request that started at start and took latency; failed requests are
// counted in their own column and their latency is kept too (a slow failure is still slow).
func (t *Timeline) Record(name string, start time.Time, latency time.Duration, failed bool) {
	i := int(start.Sub(t.Start) / t.Width)
	if i < 0 {
		i = 0
	}
	us := max(latency.Microseconds(), minLatencyUS)
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.series[name]
	if s == nil {
		s = &series{total: NewHistogram()}
		t.series[name] = s
	}
	for len(s.buckets) <= i {
		s.buckets = append(s.buckets, nil)
	}
	b := s.buckets[i]
	if b == nil {
		b = &bucket{hist: hdrhistogram.New(minLatencyUS, maxLatencyUS, bucketFigs)}
		s.buckets[i] = b
	}
	_ = b.hist.RecordValue(min(us, maxLatencyUS))
	_ = s.total.RecordValue(min(us, maxLatencyUS))
	if failed {
		b.failed++
		s.failed++
	} else {
		s.ok++
	}
}

// Mark records an event at the current time.
func (t *Timeline) Mark(label string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.events = append(t.events, Event{AtMS: time.Since(t.Start).Milliseconds(), Label: label})
}

// Point is one bucket of one series as written to report.json.
type Point struct {
	AtMS     int64   `json:"at_ms"`
	Requests int64   `json:"requests"`
	Failed   int64   `json:"failed"`
	P50MS    float64 `json:"p50_ms"`
	P99MS    float64 `json:"p99_ms"`
}

// SeriesSummary is a series' totals and its points.
type SeriesSummary struct {
	Name   string  `json:"name"`
	OK     int64   `json:"ok"`
	Failed int64   `json:"failed"`
	P50MS  float64 `json:"p50_ms"`
	P99MS  float64 `json:"p99_ms"`
	MaxMS  float64 `json:"max_ms"`
	Points []Point `json:"points"`
}

// Snapshot returns every series (sorted by name) and the events, ready to write or draw.
func (t *Timeline) Snapshot() ([]SeriesSummary, []Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	names := make([]string, 0, len(t.series))
	for n := range t.series {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]SeriesSummary, 0, len(names))
	for _, n := range names {
		s := t.series[n]
		sum := SeriesSummary{Name: n, OK: s.ok, Failed: s.failed,
			P50MS: MS(s.total.ValueAtQuantile(50)), P99MS: MS(s.total.ValueAtQuantile(99)), MaxMS: MS(s.total.Max())}
		for i, b := range s.buckets {
			if b == nil {
				continue
			}
			sum.Points = append(sum.Points, Point{
				AtMS:     (time.Duration(i) * t.Width).Milliseconds(),
				Requests: b.hist.TotalCount(), Failed: b.failed,
				P50MS: MS(b.hist.ValueAtQuantile(50)), P99MS: MS(b.hist.ValueAtQuantile(99)),
			})
		}
		out = append(out, sum)
	}
	return out, append([]Event(nil), t.events...)
}

// MS converts a histogram value in microseconds to milliseconds.
func MS(us int64) float64 { return float64(us) / 1000 }
