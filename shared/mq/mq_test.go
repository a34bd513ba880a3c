package mq

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestURL(t *testing.T) {
	c := Config{Addr: "rabbitmq:5672", User: "course", Password: "p@ss/word", VHost: "/"}
	assert.Equal(t, "amqp://course:p%40ss%2Fword@rabbitmq:5672/", c.URL())
	c.VHost = "jobs"
	assert.Equal(t, "amqp://course:p%40ss%2Fword@rabbitmq:5672/jobs", c.URL())
}

func TestPastDeadline(t *testing.T) {
	now := time.Now()
	d := amqp.Delivery{Headers: amqp.Table{DeadlineHeader: now.UnixMilli()}}
	assert.False(t, PastDeadline(d, now))
	assert.True(t, PastDeadline(d, now.Add(2*time.Millisecond)))
	assert.False(t, PastDeadline(amqp.Delivery{}, now), "no deadline: someone may be waiting")
}

// A reply reaches exactly its call; one nobody waits for is dropped; when the channel
// closes, every waiting call fails at once instead of waiting for its deadline.
func TestRPCDispatch(t *testing.T) {
	r := &RPC{pending: map[string]chan amqp.Delivery{}}
	a, b := make(chan amqp.Delivery, 1), make(chan amqp.Delivery, 1)
	r.pending["a"], r.pending["b"] = a, b
	replies := make(chan amqp.Delivery, 3)
	done := make(chan struct{})
	go func() { r.dispatch(replies); close(done) }()
	replies <- amqp.Delivery{CorrelationId: "late", Body: []byte("dropped")}
	replies <- amqp.Delivery{CorrelationId: "a", Body: []byte("for a")}
	assert.Equal(t, "for a", string((<-a).Body))
	close(replies)
	<-done
	_, open := <-b
	assert.False(t, open, "b's wait ends when the channel closes")
	_, err := r.Call(contextWithDeadline(t), "q", amqp.Publishing{})
	assert.ErrorIs(t, err, ErrUnavailable, "a call after the close fails at once")
}

func contextWithDeadline(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	t.Cleanup(cancel)
	return ctx
}

// While the broker cannot be reached the session says so at once, and Close stops it.
func TestSessionWithoutABroker(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0") // accepts, then hangs up: no AMQP here
	require.NoError(t, err)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	defer ln.Close()
	setups := 0
	s := Start(context.Background(), Config{Addr: ln.Addr().String(), User: "u", Password: "p", VHost: "/",
		DialTimeout: 100 * time.Millisecond, Heartbeat: time.Second, RetryMax: 50 * time.Millisecond, ConfirmTimeout: time.Second},
		"test", slog.New(slog.NewTextHandler(io.Discard, nil)), func(context.Context, *amqp.Connection) (int, error) { setups++; return 1, nil })
	time.Sleep(300 * time.Millisecond)
	assert.False(t, s.Up())
	_, err = s.Link()
	assert.ErrorIs(t, err, ErrUnavailable)
	assert.ErrorIs(t, s.Check(context.Background()), ErrUnavailable)
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not stop the reconnect loop")
	}
	assert.Zero(t, setups)
	assert.Zero(t, s.Connections())
}
