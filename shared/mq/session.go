// Package mq is the course's RabbitMQ plumbing: one AMQP connection per process that
// comes back by itself after the broker restarts, the queues the stage declares, publishing
// with publisher confirms, and request/reply (RPC) over direct reply-to with deadlines.
//
// It uses github.com/rabbitmq/amqp091-go with a reconnect loop of its own rather than the
// library's opt-in Config.Recovery: a direct reply-to consumer, a confirm-mode channel and
// the calls waiting on them all belong to one connection, and when it dies the waiting
// calls must fail at once (503), not wait for a reply that can no longer arrive. The loop
// makes that explicit: every connection gets a fresh Link, built by the caller's setup, and
// Session.Up says whether there is one right now.
package mq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Config is read from the environment. The credentials are the broker's own variables, from
// the same env file the rabbitmq container reads (mq.env.example, or your mq.env).
type Config struct {
	Addr     string `env:"AMQP_ADDR" envDefault:"rabbitmq:5672"`
	User     string `env:"RABBITMQ_DEFAULT_USER,required"`
	Password string `env:"RABBITMQ_DEFAULT_PASS,required"`
	VHost    string `env:"RABBITMQ_DEFAULT_VHOST" envDefault:"/"`
	// DialTimeout bounds one connection attempt, handshake included.
	DialTimeout time.Duration `env:"AMQP_DIAL_TIMEOUT" envDefault:"2s"`
	// Heartbeat: a broker that stops answering (paused, partitioned) is noticed within
	// about 1.5 heartbeats (amqp091-go reads with a deadline of 3 half-intervals), instead
	// of when the kernel gives up on the TCP connection.
	Heartbeat time.Duration `env:"AMQP_HEARTBEAT" envDefault:"2s"`
	// RetryMax caps the wait between reconnection attempts (it grows from 100 ms).
	RetryMax time.Duration `env:"AMQP_RETRY_MAX" envDefault:"2s"`
	// ConfirmTimeout bounds how long a publisher waits for the broker's confirm.
	ConfirmTimeout time.Duration `env:"AMQP_CONFIRM_TIMEOUT" envDefault:"2s"`
}

// URL is the AMQP URL of the broker, credentials included.
func (c Config) URL() string {
	u := url.URL{Scheme: "amqp", User: url.UserPassword(c.User, c.Password), Host: c.Addr, Path: "/" + url.PathEscape(c.VHost)}
	if c.VHost == "/" {
		u.Path = "/"
	}
	return u.String()
}

// ErrUnavailable is returned while no connection to the broker is up: callers answer 503.
var ErrUnavailable = errors.New("the message broker is unavailable")

// Setup runs on every new connection: declare the topology, open channels, start
// consumers. What it returns is handed to Link users until the connection closes. A setup
// error closes the connection and the session tries again.
type Setup[L any] func(ctx context.Context, conn *amqp.Connection) (L, error)

// Session keeps one connection to the broker open for the life of the process.
type Session[L any] struct {
	cfg   Config
	name  string
	log   *slog.Logger
	setup Setup[L]
	link  atomic.Pointer[L]
	up    atomic.Bool
	stop  context.CancelFunc
	done  chan struct{}

	mu       sync.Mutex
	conn     *amqp.Connection
	ups      int // connections established, for the metrics and the logs
	lastDown time.Time
}

// Start dials in the background and returns at once: a service starts, and serves what
// does not need the broker, while RabbitMQ is still booting or down.
func Start[L any](ctx context.Context, cfg Config, name string, log *slog.Logger, setup Setup[L]) *Session[L] {
	ctx, stop := context.WithCancel(ctx)
	s := &Session[L]{cfg: cfg, name: name, log: log.With("dependency", "rabbitmq"), setup: setup, stop: stop, done: make(chan struct{})}
	go s.run(ctx)
	return s
}

// Up reports whether a connection is established and set up right now.
func (s *Session[L]) Up() bool { return s.up.Load() }

// Link is what the current connection's setup returned, or ErrUnavailable.
func (s *Session[L]) Link() (L, error) {
	if p := s.link.Load(); p != nil && s.up.Load() {
		return *p, nil
	}
	var zero L
	return zero, ErrUnavailable
}

// Connections is how many times the session has connected (1 after a clean start).
func (s *Session[L]) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ups
}

// Check is a readiness-style check: nil when connected.
func (s *Session[L]) Check(context.Context) error {
	if s.Up() {
		return nil
	}
	return ErrUnavailable
}

// Close stops reconnecting and closes the connection (its channels and consumers with it).
// It waits for the loop to end.
func (s *Session[L]) Close() {
	s.stop()
	<-s.done
	s.mu.Lock()
	conn := s.conn
	s.conn = nil
	s.mu.Unlock()
	if conn != nil {
		_ = conn.Close()
	}
}

func (s *Session[L]) run(ctx context.Context) {
	defer close(s.done)
	wait := 100 * time.Millisecond
	for attempt := 1; ctx.Err() == nil; attempt++ {
		closed, err := s.connect(ctx)
		if err != nil {
			if attempt == 1 || attempt%10 == 0 {
				s.log.Warn("cannot reach the broker, retrying", "addr", s.cfg.Addr, "attempt", attempt, "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, s.cfg.RetryMax)
			continue
		}
		attempt, wait = 0, 100*time.Millisecond
		select {
		case <-ctx.Done():
			s.down()
			return
		case err := <-closed:
			s.down()
			s.mu.Lock()
			s.conn = nil
			s.mu.Unlock()
			s.log.Warn("connection to the broker lost, reconnecting", "err", err)
		}
	}
}

// connect dials and sets up one connection; the channel it returns fires when it closes.
func (s *Session[L]) connect(ctx context.Context) (chan *amqp.Error, error) {
	conn, err := amqp.DialConfig(s.cfg.URL(), amqp.Config{
		Heartbeat:  s.cfg.Heartbeat,
		Locale:     "en_US",
		Properties: amqp.Table{"connection_name": s.name},
		Dial:       amqp.DefaultDial(s.cfg.DialTimeout),
	})
	if err != nil {
		return nil, err
	}
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	link, err := s.setup(sctx, conn)
	cancel()
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("setup: %w", err)
	}
	s.mu.Lock()
	s.conn = conn
	s.ups++
	downFor := time.Duration(0)
	if !s.lastDown.IsZero() {
		downFor = time.Since(s.lastDown).Round(time.Millisecond)
	}
	n := s.ups
	s.mu.Unlock()
	s.link.Store(&link)
	s.up.Store(true)
	if n == 1 {
		s.log.Info("connected to the broker", "addr", s.cfg.Addr)
	} else {
		s.log.Info("reconnected to the broker", "addr", s.cfg.Addr, "down_for", downFor.String(), "connections", n)
	}
	return closed, nil
}

func (s *Session[L]) down() {
	s.up.Store(false)
	s.link.Store(nil)
	s.mu.Lock()
	s.lastDown = time.Now()
	s.mu.Unlock()
}
