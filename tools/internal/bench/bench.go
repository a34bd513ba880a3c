// Package bench holds what every stage's bench shares: measuring one target with the load
// generator while accounting for the generator's own CPU, and formatting the numbers.
package bench

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/sysdesign-course/course/tools/internal/load"
	"github.com/sysdesign-course/course/tools/internal/report"
)

// Measurement is one target's numbers summed over every round it ran.
type Measurement struct {
	Name       string
	OK, Failed int64
	Elapsed    time.Duration
	CPU        time.Duration // the load generator's own CPU time while measuring
	Latency    *hdrhistogram.Histogram
}

// NewMeasurement starts an empty measurement.
func NewMeasurement(name string) *Measurement {
	return &Measurement{Name: name, Latency: report.NewHistogram()}
}

// ReqPerSec is completed requests per second.
func (m *Measurement) ReqPerSec() float64 { return float64(m.OK+m.Failed) / m.Elapsed.Seconds() }

// GeneratorCores is how many cores the load generator kept busy: near the cores it had,
// the generator, not the server, limited the throughput.
func (m *Measurement) GeneratorCores() float64 { return m.CPU.Seconds() / m.Elapsed.Seconds() }

// P returns a latency percentile in milliseconds.
func (m *Measurement) P(q float64) float64 { return report.MS(m.Latency.ValueAtQuantile(q)) }

// Round runs op with the load generator for d after a warm-up whose numbers are dropped
// (it opens the connections and lets the server's runtime settle), adds the numbers to m
// and returns this round's requests per second.
func Round(ctx context.Context, m *Measurement, op load.Op, workers int, warmup, d time.Duration) (float64, error) {
	return measure(ctx, m, op, load.Options{Workers: workers, Duration: warmup}, load.Options{Workers: workers, Duration: d})
}

// RoundOf is Round for slow requests: it measures exactly n requests (at most d), so no
// request is cut off when the clock runs out; with requests of half a second, the cut-off
// ones would be a large part of a short window and bias req/s down.
func RoundOf(ctx context.Context, m *Measurement, op load.Op, workers, warmupN, n int, d time.Duration) (float64, error) {
	return measure(ctx, m, op, load.Options{Workers: workers, Requests: warmupN, Duration: d},
		load.Options{Workers: workers, Requests: n, Duration: d})
}

// Warmup runs op for d and drops the numbers: it opens the connections, fills caches and
// lets the server's runtime settle. Round does it for you; a bench that samples the
// stack's own counters calls it, samples, then Measure.
func Warmup(ctx context.Context, op load.Op, workers int, d time.Duration) error {
	_, err := load.Run(ctx, load.Options{Workers: workers, Duration: d}, op)
	return err
}

// Measure is Round without the warm-up.
func Measure(ctx context.Context, m *Measurement, op load.Op, workers int, d time.Duration) (float64, error) {
	return run(ctx, m, op, load.Options{Workers: workers, Duration: d})
}

func measure(ctx context.Context, m *Measurement, op load.Op, warmup, o load.Options) (float64, error) {
	if _, err := load.Run(ctx, warmup, op); err != nil {
		return 0, err
	}
	return run(ctx, m, op, o)
}

func run(ctx context.Context, m *Measurement, op load.Op, o load.Options) (float64, error) {
	cpu0 := cpuTime()
	res, err := load.Run(ctx, o, op)
	if err != nil {
		return 0, err
	}
	m.CPU += cpuTime() - cpu0
	m.OK += res.OK
	m.Failed += res.Failed
	m.Elapsed += res.Elapsed
	m.Latency.Merge(res.Latency)
	if res.OK == 0 {
		return 0, fmt.Errorf("%s: no request succeeded (%v)", m.Name, res.Errors)
	}
	return res.Throughput(), nil
}

// Median of xs.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	xs = slices.Clone(xs)
	slices.Sort(xs)
	if n := len(xs); n%2 == 0 {
		return (xs[n/2-1] + xs[n/2]) / 2
	}
	return xs[len(xs)/2]
}

// Floats formats numbers to two decimals, space separated.
func Floats(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.2f", x)
	}
	return strings.Join(parts, " ")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Row formats a measurement as a table row: name, req/s, p50, p99, p99.9, failed, generator CPU.
func Row(m *Measurement) []string {
	return []string{m.Name, fmt.Sprintf("%.0f", m.ReqPerSec()), fmt.Sprintf("%.2f", m.P(50)),
		fmt.Sprintf("%.2f", m.P(99)), fmt.Sprintf("%.2f", m.P(99.9)), fmt.Sprint(m.Failed),
		fmt.Sprintf("%.2f", m.GeneratorCores())}
}

// Columns matches Row.
var Columns = []string{"target", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "failed", "generator cores"}

// Params size a bench's rounds: each round warms up, then measures for Round.
type Params struct {
	Workers int // keep-alive connections
	Rounds  int // alternating rounds per target
	Warmup  time.Duration
	Round   time.Duration
}

// Charts draws measurements side by side: throughput, then p50 and p99 latency.
func Charts(labels []string, ms []*Measurement) []report.Bars {
	var rps, p50, p99 []float64
	for _, m := range ms {
		rps, p50, p99 = append(rps, m.ReqPerSec()), append(p50, m.P(50)), append(p99, m.P(99))
	}
	return []report.Bars{
		{Title: "throughput", Unit: "req/s", Labels: labels, Groups: []report.BarGroup{{Name: "req/s", Values: rps}}},
		{Title: "latency", Unit: "ms", Labels: labels, Groups: []report.BarGroup{{Name: "p50", Values: p50}, {Name: "p99", Values: p99}}},
	}
}
