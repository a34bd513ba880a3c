package mq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// ErrRefused is a publish the broker negatively confirmed: with the course's queues, that is
// a full queue (x-overflow reject-publish). Callers answer 503: retry later.
var ErrRefused = errors.New("the broker refused the message: the queue is full")

// Publisher publishes on one confirm-mode channel of the current connection.
type Publisher struct {
	ch      *amqp.Channel
	timeout time.Duration
}

// NewPublisher puts ch in confirm mode: every publish is then acknowledged (or refused) by
// the broker once the queue has it, which for a quorum queue means written to its log.
func NewPublisher(ch *amqp.Channel, confirmTimeout time.Duration) (*Publisher, error) {
	if err := ch.Confirm(false); err != nil {
		return nil, fmt.Errorf("confirm mode: %w", err)
	}
	return &Publisher{ch: ch, timeout: confirmTimeout}, nil
}

// Publish sends msg to the default exchange for queue and waits for the broker's confirm.
// nil means the broker has the message; ErrRefused means the queue is full; any other
// error means we do not know (the connection died, or no confirm came in time), and the
// caller must treat the message as not accepted.
func (p *Publisher) Publish(ctx context.Context, queue string, msg amqp.Publishing) error {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	// Not mandatory: the setup of every connection declares the queues, so a message always
	// has its queue (a mandatory message that had none would come back with basic.return and
	// still be confirmed).
	conf, err := p.ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, false, false, msg)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	ok, err := conf.WaitContext(ctx)
	switch {
	case err != nil: // no confirm in time: the broker is stuck or gone (not the caller's deadline)
		return fmt.Errorf("%w: no confirm within %s (%v)", ErrUnavailable, p.timeout, err)
	case !ok && p.ch.IsClosed(): // amqp091 nacks what was pending when the channel died
		return fmt.Errorf("%w: the channel closed before the confirm", ErrUnavailable)
	case !ok:
		return ErrRefused
	}
	return nil
}

// Deadline header: the time (Unix milliseconds) after which nobody waits for a request's
// reply. Workers skip requests past it; the broker drops them (per-message TTL) sooner.
const DeadlineHeader = "x-deadline-ms"

// RPC makes request/reply calls over direct reply-to: replies come back on this channel's
// amq.rabbitmq.reply-to pseudo-queue, matched to their call by correlation id. One RPC
// serves every concurrent call of the process; it dies with its connection.
type RPC struct {
	pub *Publisher

	mu      sync.Mutex
	pending map[string]chan amqp.Delivery
	next    uint64
	closed  bool
}

// NewRPC starts consuming direct replies on ch (auto-ack, as direct reply-to requires, and
// before any request is published) and puts ch in confirm mode.
func NewRPC(ch *amqp.Channel, confirmTimeout time.Duration) (*RPC, error) {
	replies, err := ch.Consume("amq.rabbitmq.reply-to", "", true, false, false, false, nil)
	if err != nil {
		return nil, fmt.Errorf("consume direct replies: %w", err)
	}
	pub, err := NewPublisher(ch, confirmTimeout)
	if err != nil {
		return nil, err
	}
	r := &RPC{pub: pub, pending: map[string]chan amqp.Delivery{}}
	go r.dispatch(replies)
	return r, nil
}

// dispatch hands each reply to its waiting call. A reply nobody waits for (its call
// timed out) is dropped. When the channel closes, every waiting call fails at once.
func (r *RPC) dispatch(replies <-chan amqp.Delivery) {
	for d := range replies {
		r.mu.Lock()
		wait, ok := r.pending[d.CorrelationId]
		delete(r.pending, d.CorrelationId)
		r.mu.Unlock()
		if ok {
			wait <- d // buffered: never blocks
		}
	}
	r.mu.Lock()
	r.closed = true
	for id, wait := range r.pending {
		close(wait)
		delete(r.pending, id)
	}
	r.mu.Unlock()
}

// Call publishes msg to queue and waits for its reply until ctx's deadline, which it also
// sets as the message's TTL and DeadlineHeader. ctx must have a deadline.
func (r *RPC) Call(ctx context.Context, queue string, msg amqp.Publishing) (amqp.Delivery, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return amqp.Delivery{}, errors.New("rpc: the context has no deadline")
	}
	wait := make(chan amqp.Delivery, 1)
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return amqp.Delivery{}, ErrUnavailable
	}
	r.next++
	id := strconv.FormatUint(r.next, 36)
	r.pending[id] = wait
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.pending, id)
		r.mu.Unlock()
	}()

	ttl := time.Until(deadline)
	msg.CorrelationId = id
	msg.ReplyTo = "amq.rabbitmq.reply-to"
	msg.Expiration = strconv.FormatInt(max(ttl.Milliseconds(), 1), 10)
	if msg.Headers == nil {
		msg.Headers = amqp.Table{}
	}
	msg.Headers[DeadlineHeader] = deadline.UnixMilli()
	if err := r.pub.Publish(ctx, queue, msg); err != nil {
		if ctx.Err() != nil { // the call's own deadline passed while publishing
			return amqp.Delivery{}, ctx.Err()
		}
		return amqp.Delivery{}, err
	}
	select {
	case d, ok := <-wait:
		if !ok {
			return amqp.Delivery{}, ErrUnavailable
		}
		return d, nil
	case <-ctx.Done():
		return amqp.Delivery{}, ctx.Err()
	}
}

// PastDeadline reports whether a request's caller has stopped waiting.
func PastDeadline(d amqp.Delivery, now time.Time) bool {
	ms, ok := d.Headers[DeadlineHeader].(int64)
	return ok && now.UnixMilli() > ms
}
