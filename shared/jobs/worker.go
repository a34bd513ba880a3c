package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/sysdesign-course/course/shared/pgdb"
)

// Ledger is what a worker needs from the jobs table (*Store; fakes in tests).
type Ledger interface {
	Delivered(ctx context.Context, id string) (string, error)
	Complete(ctx context.Context, id string, prime bool, worker string) (bool, error)
	Fail(ctx context.Context, id, reason string) (bool, error)
}

// Worker computes jobs from the queue. Its contract with the broker: ack a message only
// once its result is stored (or was stored by an earlier delivery); return it
// (nack, requeue) when it cannot be processed, which counts towards the queue's delivery
// limit. A worker that dies mid-job acks nothing, so the broker redelivers the job.
type Worker struct {
	Ledger  Ledger
	Compute func(n int64) bool
	Name    string // stored with each result: which worker computed it
	// AutoAck is the broken mode of the stage's negative control: the broker forgets a
	// message as soon as it sends it, so a worker that dies loses what it had been sent.
	AutoAck bool
	// DeliveryLimit is the jobs queue's x-delivery-limit, for the failed jobs' reason.
	DeliveryLimit int
	// StoreRetry bounds how long one delivery waits for the database to come back before
	// it is returned to the queue.
	StoreRetry time.Duration
	Log        *slog.Logger
	metrics    *workerMetrics
}

type workerMetrics struct {
	outcomes *prometheus.CounterVec
	compute  prometheus.Histogram
}

// Register adds the worker's metrics to reg: worker_jobs_total{outcome} and
// worker_compute_seconds.
func (w *Worker) Register(reg prometheus.Registerer) error {
	m := &workerMetrics{
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "worker_jobs_total",
			Help: "Job messages handled, by outcome: done, duplicate (finished by an earlier delivery), orphan (no such job), returned (nacked: poison or database down), dead (dead-lettered, marked failed).",
		}, []string{"outcome"}),
		compute: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "worker_compute_seconds",
			Help:    "CPU time of one prime check, jobs and RPC requests alike.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
	}
	for _, c := range []prometheus.Collector{m.outcomes, m.compute} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	w.metrics = m
	return nil
}

func (w *Worker) count(outcome string) {
	if w.metrics != nil {
		w.metrics.outcomes.WithLabelValues(outcome).Inc()
	}
}

// Timed runs Compute and records its duration.
func (w *Worker) Timed(n int64) bool {
	start := time.Now()
	p := w.Compute(n)
	if w.metrics != nil {
		w.metrics.compute.Observe(time.Since(start).Seconds())
	}
	return p
}

// Handle processes one delivery of the jobs queue.
func (w *Worker) Handle(ctx context.Context, d amqp.Delivery) {
	log := w.Log.With("job", d.MessageId, "redelivered", d.Redelivered)
	m, err := decode(d)
	if err != nil {
		log.Warn("poison job message: returning it (the queue dead-letters it after its delivery limit)", "err", err, "delivery_count", d.Headers["x-delivery-count"])
		w.settle(d, false, "returned")
		return
	}
	var state string
	if err := w.store(ctx, func(ctx context.Context) (err error) { state, err = w.Ledger.Delivered(ctx, m.ID); return err }); err != nil {
		if errors.Is(err, ErrNotFound) {
			// The server removed the job after the broker failed to confirm it: its client
			// was told 503, so there is nothing to do.
			log.Info("no such job: dropping the message")
			w.settle(d, true, "orphan")
			return
		}
		log.Warn("database unavailable: returning the job", "err", err)
		w.settle(d, false, "returned")
		return
	}
	if state != Pending {
		log.Info("job already finished by an earlier delivery: acking it again", "state", state)
		w.settle(d, true, "duplicate")
		return
	}
	p, err := w.safeCompute(m.N)
	if err != nil {
		log.Error("job handler failed: returning it", "err", err)
		w.settle(d, false, "returned")
		return
	}
	var applied bool
	if err := w.store(ctx, func(ctx context.Context) (err error) {
		applied, err = w.Ledger.Complete(ctx, m.ID, p, w.Name)
		return err
	}); err != nil {
		log.Warn("database unavailable: returning the job", "err", err)
		w.settle(d, false, "returned")
		return
	}
	if !applied {
		w.settle(d, true, "duplicate")
		return
	}
	w.settle(d, true, "done")
}

// safeCompute turns a panic in the handler into an error: the message goes back to the
// queue, and the delivery limit ends the retries.
func (w *Worker) safeCompute(n int64) (p bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return w.Timed(n), nil
}

// HandleDead marks a dead-lettered job failed. Dead letters come from the jobs queue only,
// and only past its delivery limit; the reason says so.
func (w *Worker) HandleDead(ctx context.Context, d amqp.Delivery) {
	id := d.MessageId
	if !ValidID(id) {
		if m, err := decode(d); err == nil {
			id = m.ID
		}
	}
	if !ValidID(id) {
		w.Log.Warn("dead letter without a job id: dropping it", "message_id", d.MessageId)
		w.settle(d, true, "dead")
		return
	}
	reason := fmt.Sprintf("dead-lettered (%v): no worker could process it", d.Headers["x-first-death-reason"])
	if d.Headers["x-first-death-reason"] == "delivery_limit" {
		reason = fmt.Sprintf("dead-lettered (delivery_limit): delivered %d times without an ack, past the queue's delivery limit of %d", w.DeliveryLimit+1, w.DeliveryLimit)
	}
	// The dead-letter queue has a delivery limit of its own (RabbitMQ's default, 20): a
	// dead letter is not returned to it, but held, and its store retried, until it
	// succeeds or the worker stops.
	var changed bool
	var err error
	for {
		err = w.store(ctx, func(ctx context.Context) (err error) { changed, err = w.Ledger.Fail(ctx, id, reason); return err })
		if err == nil || !pgdb.IsUnavailable(err) || ctx.Err() != nil {
			break
		}
		w.Log.Warn("database unavailable: holding the dead letter and retrying", "job", id, "err", err)
	}
	if err != nil {
		w.Log.Error("recording a dead letter", "job", id, "err", err)
		w.settle(d, false, "returned")
		return
	}
	w.Log.Warn("job failed", "job", id, "reason", reason, "marked", changed)
	w.settle(d, true, "dead")
}

// store runs op until it succeeds, fails for a reason other than the database being
// unavailable, or StoreRetry passes.
func (w *Worker) store(ctx context.Context, op func(context.Context) error) error {
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		octx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		err := op(octx)
		if err != nil && !pgdb.IsUnavailable(err) {
			return struct{}{}, backoff.Permanent(err)
		}
		return struct{}{}, err
	}, backoff.WithBackOff(backoff.NewExponentialBackOff()), backoff.WithMaxElapsedTime(w.StoreRetry))
	return err
}

// settle acks or returns d (unless the broker already forgot it: auto-ack) and counts it.
func (w *Worker) settle(d amqp.Delivery, ack bool, outcome string) {
	w.count(outcome)
	if w.AutoAck {
		return
	}
	var err error
	if ack {
		err = d.Ack(false)
	} else {
		err = d.Nack(false, true)
	}
	if err != nil {
		w.Log.Warn("settling a delivery", "ack", ack, "err", err) // the channel died: the broker redelivers
	}
}
