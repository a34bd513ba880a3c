package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sysdesign-course/course/shared/prime"
)

// fakeLedger is the jobs table as the worker sees it, with Store's semantics: Complete
// changes only a pending job.
type fakeLedger struct {
	mu          sync.Mutex
	state       map[string]string
	completions map[string]int
	deliveries  map[string]int
	reasons     map[string]string
	downFor     int // the next downFor calls fail as if Postgres were unreachable
}

func newLedger(ids ...string) *fakeLedger {
	l := &fakeLedger{state: map[string]string{}, completions: map[string]int{}, deliveries: map[string]int{}, reasons: map[string]string{}}
	for _, id := range ids {
		l.state[id] = Pending
	}
	return l
}

func (l *fakeLedger) down() bool {
	if l.downFor > 0 {
		l.downFor--
		return true
	}
	return false
}

func (l *fakeLedger) Delivered(_ context.Context, id string) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down() {
		return "", errDown
	}
	s, ok := l.state[id]
	if !ok {
		return "", ErrNotFound
	}
	l.deliveries[id]++
	return s, nil
}

func (l *fakeLedger) Complete(_ context.Context, id string, _ bool, _ string) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down() {
		return false, errDown
	}
	if l.state[id] != Pending {
		return false, nil
	}
	l.state[id] = Done
	l.completions[id]++
	return true, nil
}

func (l *fakeLedger) Fail(_ context.Context, id, reason string) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down() {
		return false, errDown
	}
	if s, ok := l.state[id]; ok && s != Pending {
		return false, nil
	}
	l.state[id], l.reasons[id] = Failed, reason
	return true, nil
}

// acks records how each delivery was settled.
type acks struct{ acked, requeued, rejected int }

func (a *acks) Ack(uint64, bool) error { a.acked++; return nil }
func (a *acks) Nack(_ uint64, _, requeue bool) error {
	if requeue {
		a.requeued++
	} else {
		a.rejected++
	}
	return nil
}
func (a *acks) Reject(_ uint64, requeue bool) error { return a.Nack(0, false, requeue) }

const id1 = "0b6f7c5e-1c1e-4f4e-9d5a-2f0c8a1e3b7d"

func delivery(a *acks, id string, body string) amqp.Delivery {
	return amqp.Delivery{Acknowledger: a, MessageId: id, Body: []byte(body)}
}

func jobBody(id string, n int64) string {
	b, _ := json.Marshal(message{ID: id, N: n})
	return string(b)
}

func worker(l Ledger) *Worker {
	return &Worker{Ledger: l, Compute: prime.IsPrime, Name: "w1", DeliveryLimit: 5, StoreRetry: 50 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

func TestAJobIsAckedOnlyOnceItsResultIsStored(t *testing.T) {
	l, a := newLedger(id1), &acks{}
	worker(l).Handle(context.Background(), delivery(a, id1, jobBody(id1, 97)))
	assert.Equal(t, Done, l.state[id1])
	assert.Equal(t, acks{acked: 1}, *a)
}

// A redelivery (the first worker died after storing, before its ack) is acked and applies
// nothing: one completion, however many deliveries.
func TestARedeliveredJobIsNotAppliedTwice(t *testing.T) {
	l, a := newLedger(id1), &acks{}
	w := worker(l)
	for range 3 {
		w.Handle(context.Background(), delivery(a, id1, jobBody(id1, 97)))
	}
	assert.Equal(t, 1, l.completions[id1])
	assert.Equal(t, 3, l.deliveries[id1])
	assert.Equal(t, acks{acked: 3}, *a)
}

// Poison (undecodable, mismatched or impossible bodies, or a handler that panics) goes back
// to the queue, whose delivery limit then dead-letters it.
func TestPoisonIsReturnedToTheQueue(t *testing.T) {
	for name, body := range map[string]string{
		"not json":        "this is not a job",
		"other id":        jobBody("1b6f7c5e-1c1e-4f4e-9d5a-2f0c8a1e3b7d", 97),
		"negative n":      jobBody(id1, -5),
		"wrong field":     `{"id":"` + id1 + `","n":"7"}`,
		"id not a uuid":   jobBody("x", 7),
		"empty body":      "",
		"n out of bounds": `{"id":"` + id1 + `","n":1e30}`,
	} {
		t.Run(name, func(t *testing.T) {
			l, a := newLedger(id1), &acks{}
			worker(l).Handle(context.Background(), delivery(a, id1, body))
			assert.Equal(t, acks{requeued: 1}, *a)
			assert.Equal(t, Pending, l.state[id1])
		})
	}
	l, a := newLedger(id1), &acks{}
	w := worker(l)
	w.Compute = func(int64) bool { panic("boom") }
	w.Handle(context.Background(), delivery(a, id1, jobBody(id1, 97)))
	assert.Equal(t, acks{requeued: 1}, *a, "a panic returns the job")
	assert.Equal(t, Pending, l.state[id1])
}

func TestAJobWithoutARowIsDropped(t *testing.T) {
	l, a := newLedger(), &acks{}
	worker(l).Handle(context.Background(), delivery(a, id1, jobBody(id1, 97)))
	assert.Equal(t, acks{acked: 1}, *a)
}

func TestADatabaseOutageIsRetriedThenReturnsTheJob(t *testing.T) {
	l, a := newLedger(id1), &acks{}
	l.downFor = 2 // shorter than StoreRetry: the worker rides it out
	w := worker(l)
	w.StoreRetry = 10 * time.Second
	w.Handle(context.Background(), delivery(a, id1, jobBody(id1, 97)))
	assert.Equal(t, acks{acked: 1}, *a)
	assert.Equal(t, Done, l.state[id1])

	l, a = newLedger(id1), &acks{}
	l.downFor = 1 << 20 // longer: the job goes back to the queue
	worker(l).Handle(context.Background(), delivery(a, id1, jobBody(id1, 97)))
	assert.Equal(t, acks{requeued: 1}, *a)
}

// In auto-ack mode (the negative control) the broker has already forgotten the message:
// acking it would be a protocol error.
func TestAutoAckSettlesNothing(t *testing.T) {
	l, a := newLedger(id1), &acks{}
	w := worker(l)
	w.AutoAck = true
	w.Handle(context.Background(), delivery(a, id1, jobBody(id1, 97)))
	w.Handle(context.Background(), delivery(a, id1, "poison"))
	assert.Equal(t, acks{}, *a)
	assert.Equal(t, Done, l.state[id1])
}

func TestADeadLetterMarksItsJobFailed(t *testing.T) {
	l, a := newLedger(id1), &acks{}
	d := delivery(a, id1, "this is not a job")
	d.Headers = amqp.Table{"x-first-death-reason": "delivery_limit"}
	worker(l).HandleDead(context.Background(), d)
	assert.Equal(t, Failed, l.state[id1])
	assert.Contains(t, l.reasons[id1], "delivered 6 times")
	assert.Equal(t, acks{acked: 1}, *a)

	// A message that was never a job still gets a failed row; one with no id is dropped.
	l, a = newLedger(), &acks{}
	d = delivery(a, id1, "this is not a job")
	d.Headers = amqp.Table{"x-first-death-reason": "delivery_limit"}
	worker(l).HandleDead(context.Background(), d)
	assert.Equal(t, Failed, l.state[id1])
	worker(l).HandleDead(context.Background(), delivery(a, "", "junk"))
	assert.Equal(t, acks{acked: 2}, *a)

	// A done job stays done.
	l, a = newLedger(id1), &acks{}
	l.state[id1] = Done
	worker(l).HandleDead(context.Background(), d)
	assert.Equal(t, Done, l.state[id1])
}

// A dead letter is held through a database outage, not returned: its queue's own delivery
// limit would drop it.
func TestADeadLetterIsHeldThroughAnOutage(t *testing.T) {
	l, a := newLedger(id1), &acks{}
	l.downFor = 3 // more than one StoreRetry round
	d := delivery(a, id1, "junk")
	d.Headers = amqp.Table{"x-first-death-reason": "delivery_limit"}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	worker(l).HandleDead(ctx, d)
	require.NoError(t, ctx.Err())
	assert.Equal(t, Failed, l.state[id1])
	assert.Equal(t, acks{acked: 1}, *a)
}

func TestMessageCarriesTheJob(t *testing.T) {
	n := int64(12)
	m, err := Message(Job{ID: id1, N: &n})
	require.NoError(t, err)
	d := amqp.Delivery{MessageId: m.MessageId, Body: m.Body}
	got, err := decode(d)
	require.NoError(t, err)
	assert.Equal(t, message{ID: id1, N: 12}, got)
	_, err = Message(Job{ID: id1})
	assert.True(t, err != nil && !errors.Is(err, ErrNotFound))
}
