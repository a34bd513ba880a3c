package jobs

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/sysdesign-course/course/shared/httpserver"
	"github.com/sysdesign-course/course/shared/mq"
	"github.com/sysdesign-course/course/shared/pgdb"
	"github.com/sysdesign-course/course/shared/prime"
)

// Records is what the HTTP side needs from the jobs table (*Store; fakes in tests).
type Records interface {
	Create(ctx context.Context, n int64) (Job, error)
	Delete(ctx context.Context, id string) error
	Get(ctx context.Context, id string) (Job, error)
}

// Publisher sends a message and returns once the broker has confirmed it (mq.Publisher
// of the current connection; fakes in tests).
type Publisher interface {
	Publish(ctx context.Context, queue string, msg amqp.Publishing) error
}

// RetryAfter is what a 503 tells a client to wait before trying again: about what the
// broker takes to restart.
const RetryAfter = 5 * time.Second

type handlers struct {
	store     Records
	publisher func() (Publisher, error)
	timeout   time.Duration
	log       *slog.Logger
}

// Register routes POST /jobs and GET /jobs/:id. publisher returns the current
// connection's publisher, or an error while the broker is down. timeout bounds each
// request's database and broker work.
func Register(e *echo.Echo, store Records, publisher func() (Publisher, error), timeout time.Duration, log *slog.Logger) {
	h := &handlers{store: store, publisher: publisher, timeout: timeout, log: log}
	e.POST("/jobs", h.submit)
	e.GET("/jobs/:id", h.get)
}

type submission struct {
	N *int64 `json:"n"`
}

// submit answers 202 only once the broker has confirmed the job's message: from then on the
// job survives a worker, a server or the broker dying. Anything short of that is a 503,
// and the job's row is removed again.
func (h *handlers) submit(c echo.Context) error {
	var in submission
	if err := httpserver.DecodeJSON(c, &in, "a JSON object with an integer n", "n"); err != nil {
		return err
	}
	if in.N == nil {
		return echo.NewHTTPError(http.StatusUnprocessableEntity, "n is required: an integer from 0 to "+strconv.Itoa(prime.MaxN))
	}
	if *in.N < 0 || *in.N > prime.MaxN {
		return echo.NewHTTPError(http.StatusUnprocessableEntity, "n must be an integer from 0 to "+strconv.Itoa(prime.MaxN)+", got "+strconv.FormatInt(*in.N, 10))
	}
	pub, err := h.publisher()
	if err != nil { // checked first: no row for a job that cannot be queued
		return httpserver.Unavailable(c, RetryAfter, "jobs cannot be accepted now: "+err.Error())
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), h.timeout)
	defer cancel()
	job, err := h.store.Create(ctx, *in.N)
	if err != nil {
		return h.dbError(c, err)
	}
	msg, err := Message(job)
	if err == nil {
		err = pub.Publish(ctx, Queue, msg)
	}
	if err != nil {
		// The client gets no id, so the row goes. Should the broker have taken the message
		// after all (a confirm lost with the connection), the worker finds no row and drops it.
		dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), h.timeout)
		if derr := h.store.Delete(dctx, job.ID); derr != nil {
			h.log.Warn("removing a job the broker did not take", "job", job.ID, "err", derr)
		}
		dcancel()
		if errors.Is(err, mq.ErrRefused) {
			return httpserver.Unavailable(c, RetryAfter, "the job queue is full: try again later")
		}
		h.log.Warn("publishing a job", "job", job.ID, "err", err)
		return httpserver.Unavailable(c, RetryAfter, "the message broker did not confirm the job: try again later")
	}
	c.Response().Header().Set(echo.HeaderLocation, "/jobs/"+job.ID)
	return c.JSON(http.StatusAccepted, job)
}

func (h *handlers) get(c echo.Context) error {
	id := strings.ToLower(c.Param("id"))
	if !ValidID(id) {
		return httpserver.BadRequest("a job id is a UUID such as 0b6f7c5e-1c1e-4f4e-9d5a-2f0c8a1e3b7d, got " + strconv.Quote(id))
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), h.timeout)
	defer cancel()
	job, err := h.store.Get(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return echo.NewHTTPError(http.StatusNotFound, "no job "+id)
	}
	if err != nil {
		return h.dbError(c, err)
	}
	return c.JSON(http.StatusOK, job)
}

func (h *handlers) dbError(c echo.Context, err error) error {
	if pgdb.IsUnavailable(err) {
		return httpserver.Unavailable(c, RetryAfter, "the database is unavailable: try again later")
	}
	return err // a bug: the error handler logs it and answers 500
}
