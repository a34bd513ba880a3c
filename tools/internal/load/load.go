// Package load drives a target with a fixed number of workers for a bounded time or count,
// recording every latency in an HDR histogram (and, if asked, on a timeline for charts).
//
// With a rate the schedule is open-loop: request i is due at start + i/rate and its latency
// counts from then, so a stalled target shows in every request it delayed instead of one per
// worker (coordinated omission). The scheduler is hand-written rather than vegeta's Attacker:
// that one only sends HTTP targets, stamps latency when a worker picks a tick up (the same
// omission once its workers are capped) and would bring a large dependency tree.
package load

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/sysdesign-course/course/tools/internal/report"
)

// Options bound a run. Duration and Requests are both limits; at least one must be set.
type Options struct {
	Name     string        // series name on the timeline
	Workers  int           // most requests in flight; with a rate, late requests queue for a worker
	Duration time.Duration // stop after this long
	Requests int           // stop after this many requests (0: no count limit)
	Rate     float64       // total requests per second; 0 sends as fast as the workers can
	Timeline *report.Timeline
}

// Op performs one request. It returns the instance that answered (may be empty) and an
// error when the request failed by the caller's standard (a 5xx is a failure).
type Op func(ctx context.Context) (instance string, err error)

// Result is what a run measured.
type Result struct {
	Elapsed    time.Duration
	OK, Failed int64
	Latency    *hdrhistogram.Histogram // every request, microseconds, from its intended send time if Rate > 0
	Sent       *hdrhistogram.Histogram // the same from when it was actually sent: what a closed-loop generator reports
	ByInstance map[string]int64        // successful requests per answering instance
	Errors     map[string]int64        // failure messages and how often each was seen
}

// Throughput is completed requests per second over the run.
func (r *Result) Throughput() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.OK+r.Failed) / r.Elapsed.Seconds()
}

// Run sends requests until a limit is reached or ctx ends. Each worker keeps its own
// histogram and counters so workers never contend on a lock; they are merged at the end.
//
// With Rate > 0, workers take request numbers in order and wait for each one's due time;
// a worker that takes a request already overdue (all were busy) sends it at once, and the
// time it waited counts in its latency. With Rate == 0 there is no schedule, so latency
// counts from the actual send.
func Run(ctx context.Context, o Options, op Op) (*Result, error) {
	if o.Workers <= 0 || (o.Duration <= 0 && o.Requests <= 0) {
		return nil, errors.New("load: need workers > 0 and a duration or a request count")
	}
	if o.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Duration)
		defer cancel()
	}

	type local struct {
		ok, failed int64
		hist, sent *hdrhistogram.Histogram
		inst, errs map[string]int64
	}
	locals := make([]*local, o.Workers)
	var next atomic.Int64 // number of the next request to send
	start := time.Now()
	var wg sync.WaitGroup
	for w := range o.Workers {
		l := &local{hist: report.NewHistogram(), sent: report.NewHistogram(), inst: map[string]int64{}, errs: map[string]int64{}}
		locals[w] = l
		wg.Go(func() {
			timer := time.NewTimer(0)
			defer timer.Stop()
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if o.Requests > 0 && i >= int64(o.Requests) {
					return
				}
				t0 := time.Now()
				if o.Rate > 0 {
					t0 = start.Add(time.Duration(float64(i) * float64(time.Second) / o.Rate))
					if !waitUntil(ctx, timer, t0) {
						return
					}
				}
				sentAt := time.Now()
				inst, err := op(ctx)
				lat := time.Since(t0)
				if err != nil && ctx.Err() != nil {
					return // cut short by the run's own deadline: not the target's failure
				}
				_ = l.hist.RecordValue(max(lat.Microseconds(), 1))
				_ = l.sent.RecordValue(max(time.Since(sentAt).Microseconds(), 1))
				if err != nil {
					l.failed++
					l.errs[Classify(err)]++
				} else {
					l.ok++
					l.inst[inst]++
				}
				if o.Timeline != nil {
					o.Timeline.Record(o.Name, t0, lat, err != nil)
				}
			}
		})
	}
	wg.Wait()
	res := &Result{Elapsed: time.Since(start), Latency: report.NewHistogram(), Sent: report.NewHistogram(),
		ByInstance: map[string]int64{}, Errors: map[string]int64{}}
	for _, l := range locals {
		res.OK += l.ok
		res.Failed += l.failed
		res.Latency.Merge(l.hist)
		res.Sent.Merge(l.sent)
		for k, v := range l.inst {
			res.ByInstance[k] += v
		}
		for k, v := range l.errs {
			res.Errors[k] += v
		}
	}
	return res, nil
}

// waitUntil blocks until due (at once if it has passed) and reports false if ctx ended first.
func waitUntil(ctx context.Context, timer *time.Timer, due time.Time) bool {
	d := time.Until(due)
	if d <= 0 {
		return true
	}
	timer.Reset(d)
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
