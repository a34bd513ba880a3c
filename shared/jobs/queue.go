package jobs

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"

	amqp "github.com/rabbitmq/amqp091-go"
)

// The topology, declared by servers and workers alike on every connection (declaring is
// idempotent; both must pass the same arguments, so both read QueueConfig from the same
// environment).
const (
	// Queue holds the jobs: a durable quorum queue, replicated through Raft and written to
	// disk before the publisher's confirm, so a 202 survives a broker restart.
	Queue = "jobs"
	// DeadExchange and DeadQueue take what Queue gives up on: messages delivered
	// DeliveryLimit times without an ack (poison), and nothing else.
	DeadExchange = "jobs.dead"
	DeadQueue    = "jobs.dead"
)

// QueueConfig bounds the jobs queue.
type QueueConfig struct {
	// MaxLength: past it the broker refuses new jobs (x-overflow reject-publish), which
	// the API turns into a 503: backpressure instead of a queue that grows until the
	// broker runs out of memory.
	MaxLength int `env:"JOBS_MAX_LENGTH" envDefault:"10000"`
	// DeliveryLimit: a message delivered this many times without an ack is dead-lettered.
	// A worker that crashes, or returns the message, on every try cannot block the queue.
	DeliveryLimit int `env:"JOBS_DELIVERY_LIMIT" envDefault:"5"`
}

// Declare declares the jobs queue, its dead-letter exchange and queue, and the binding.
func Declare(ch *amqp.Channel, cfg QueueConfig) error {
	if cfg.MaxLength < 1 || cfg.DeliveryLimit < 1 {
		return fmt.Errorf("jobs queue: JOBS_MAX_LENGTH and JOBS_DELIVERY_LIMIT must be at least 1 (got %+v)", cfg)
	}
	if err := ch.ExchangeDeclare(DeadExchange, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %s: %w", DeadExchange, err)
	}
	if _, err := ch.QueueDeclare(DeadQueue, true, false, false, false, amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum}); err != nil {
		return fmt.Errorf("declare queue %s: %w", DeadQueue, err)
	}
	if err := ch.QueueBind(DeadQueue, "", DeadExchange, false, nil); err != nil {
		return fmt.Errorf("bind %s: %w", DeadQueue, err)
	}
	_, err := ch.QueueDeclare(Queue, true, false, false, false, amqp.Table{
		amqp.QueueTypeArg:        amqp.QueueTypeQuorum,
		"x-delivery-limit":       cfg.DeliveryLimit,
		"x-dead-letter-exchange": DeadExchange,
		"x-dead-letter-strategy": "at-least-once", // the broker keeps a poison message until the dead-letter queue confirms it
		amqp.QueueMaxLenArg:      cfg.MaxLength,
		amqp.QueueOverflowArg:    amqp.QueueOverflowRejectPublish,
	})
	if err != nil {
		return fmt.Errorf("declare queue %s (if it exists with other arguments, make stage 7 down removes it): %w", Queue, err)
	}
	return nil
}

// message is a job's body on the queue. The job id is also the message id, so a message
// whose body cannot be decoded can still be tied to its job when it is dead-lettered.
type message struct {
	ID string `json:"id"`
	N  int64  `json:"n"`
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// ValidID reports whether id is a job id (a lowercase UUID, as Postgres prints them).
func ValidID(id string) bool { return uuidRE.MatchString(id) }

// Message is the persistent message that carries job j.
func Message(j Job) (amqp.Publishing, error) {
	if j.N == nil {
		return amqp.Publishing{}, errors.New("job without n")
	}
	body, err := json.Marshal(message{ID: j.ID, N: *j.N})
	return amqp.Publishing{
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent,
		MessageId:    j.ID,
		Body:         body,
	}, err
}

// decode reads a job message strictly; an error makes it poison.
func decode(d amqp.Delivery) (message, error) {
	var m message
	if err := json.Unmarshal(d.Body, &m); err != nil {
		return m, fmt.Errorf("cannot decode the body: %w", err)
	}
	if !ValidID(m.ID) || m.ID != d.MessageId {
		return m, fmt.Errorf("job id %q is not a job id or not the message id %q", m.ID, d.MessageId)
	}
	if m.N < 0 {
		return m, fmt.Errorf("n %d is negative", m.N)
	}
	return m, nil
}
