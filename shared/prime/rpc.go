package prime

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/sysdesign-course/course/shared/httpserver"
	"github.com/sysdesign-course/course/shared/mq"
)

// Queue carries /is-prime requests to the workers (stage 07). A classic queue on purpose:
// a request lives a few seconds and nobody waits for it after a broker restart, so the
// replication and disk writes of a quorum queue would buy nothing but latency.
const Queue = "rpc.is-prime"

// RPCConfig bounds the remote prime checks.
type RPCConfig struct {
	// Timeout is each call's deadline: past it the client gets a 504 and the request,
	// if still queued, expires (per-message TTL).
	Timeout time.Duration `env:"RPC_TIMEOUT" envDefault:"5s"`
	// MaxLength caps the queued requests: more is a 503, never an ever-longer wait.
	MaxLength int `env:"RPC_MAX_LENGTH" envDefault:"200"`
}

// Declare declares the request queue.
func Declare(ch *amqp.Channel, cfg RPCConfig) error {
	_, err := ch.QueueDeclare(Queue, true, false, false, false, amqp.Table{
		amqp.QueueTypeArg:     amqp.QueueTypeClassic,
		amqp.QueueMaxLenArg:   cfg.MaxLength,
		amqp.QueueOverflowArg: amqp.QueueOverflowRejectPublish,
	})
	return err
}

// Caller makes one request/reply call (mq.RPC; fakes in tests).
type Caller interface {
	Call(ctx context.Context, queue string, msg amqp.Publishing) (amqp.Delivery, error)
}

type request struct {
	N int64 `json:"n"`
}

// Reply is a worker's answer, as the server passes it on.
type Reply struct {
	N      int64  `json:"n"`
	Prime  bool   `json:"prime"`
	TookMS int64  `json:"took_ms"`
	Worker string `json:"worker,omitempty"`
	Error  string `json:"error,omitempty"`
}

// RegisterRPC routes GET /is-prime/:n to the workers: n is checked here, before anything is
// published; the answer is the worker's, a 504 past cfg.Timeout, or a 503 while the broker
// is down or the queue full. caller returns the current connection's RPC.
func RegisterRPC(e *echo.Echo, caller func() (Caller, error), cfg RPCConfig) {
	e.GET("/is-prime/:n", func(c echo.Context) error {
		n, err := parseN(c.Param("n"))
		if err != nil {
			return err
		}
		rpc, err := caller()
		if err != nil {
			return httpserver.Unavailable(c, 5*time.Second, "prime checks are unavailable: "+err.Error())
		}
		ctx, cancel := context.WithTimeout(c.Request().Context(), cfg.Timeout)
		defer cancel()
		body, _ := json.Marshal(request{N: n})
		d, err := rpc.Call(ctx, Queue, amqp.Publishing{ContentType: "application/json", Body: body})
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			return echo.NewHTTPError(http.StatusGatewayTimeout, "no worker answered within "+cfg.Timeout.String())
		case errors.Is(err, mq.ErrRefused):
			return httpserver.Unavailable(c, 5*time.Second, "too many prime checks are waiting: try again later")
		case err != nil && c.Request().Context().Err() != nil:
			return err // the client went away
		case err != nil:
			return httpserver.Unavailable(c, 5*time.Second, "prime checks are unavailable: "+err.Error())
		}
		var r Reply
		if err := json.Unmarshal(d.Body, &r); err != nil || r.Error != "" || r.N != n {
			return echo.NewHTTPError(http.StatusBadGateway, "the worker's answer was not usable: "+string(d.Body))
		}
		return c.JSON(http.StatusOK, r)
	})
}

// Answer computes the reply to one request delivery. ok is false for a request whose
// caller has stopped waiting: it gets no reply and costs no CPU.
func Answer(d amqp.Delivery, compute func(int64) bool, worker string, now time.Time) (reply amqp.Publishing, ok bool) {
	if mq.PastDeadline(d, now) || d.ReplyTo == "" {
		return amqp.Publishing{}, false
	}
	var req request
	r := Reply{Worker: worker}
	if err := json.Unmarshal(d.Body, &req); err != nil || req.N < 0 || req.N > MaxN {
		r.Error = "a request is {\"n\": <integer from 0 to MaxN>}"
	} else {
		start := time.Now()
		r.N, r.Prime = req.N, compute(req.N)
		r.TookMS = time.Since(start).Milliseconds()
	}
	body, _ := json.Marshal(r)
	return amqp.Publishing{ContentType: "application/json", CorrelationId: d.CorrelationId, Body: body}, true
}
