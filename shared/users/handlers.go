package users

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/sysdesign-course/course/shared/httpserver"
	"github.com/sysdesign-course/course/shared/pgdb"
)

// Page sizes: a client may ask for up to MaxLimit rows at once.
const (
	DefaultLimit = 20
	MaxLimit     = 100
)

// Handlers serves the users resource over HTTP.
type Handlers struct {
	store   *Store
	timeout time.Duration
	log     *slog.Logger
}

// Register routes the read endpoints. timeout bounds each request's database work,
// waiting for a pooled connection included, so a dead database costs a client at most that.
func Register(e *echo.Echo, store *Store, timeout time.Duration, log *slog.Logger) {
	h := &Handlers{store: store, timeout: timeout, log: log}
	e.GET("/users", h.list)
	e.GET("/users/:id", h.get)
	e.GET("/users/:id/messages", h.messages)
}

func (h *Handlers) get(c echo.Context) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	ctx, cancel := h.ctx(c)
	defer cancel()
	u, err := h.store.Get(ctx, id)
	if err != nil {
		return h.dbError(c, err, "user")
	}
	return c.JSON(http.StatusOK, u)
}

// ListPage is GET /users' answer; NextAfter is the `after` of the next page, absent on the last.
type ListPage struct {
	Users     []User `json:"users"`
	NextAfter *int64 `json:"next_after,omitempty"`
}

func (h *Handlers) list(c echo.Context) error {
	after, limit, err := pageParams(c)
	if err != nil {
		return err
	}
	ctx, cancel := h.ctx(c)
	defer cancel()
	users, err := h.store.List(ctx, after, limit)
	if err != nil {
		return h.dbError(c, err, "users")
	}
	page := ListPage{Users: users}
	if len(users) == limit {
		page.NextAfter = &users[len(users)-1].ID
	}
	return c.JSON(http.StatusOK, page)
}

// MessagesPage is GET /users/:id/messages' answer.
type MessagesPage struct {
	User      User      `json:"user"`
	Messages  []Message `json:"messages"`
	NextAfter *int64    `json:"next_after,omitempty"`
}

func (h *Handlers) messages(c echo.Context) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	after, limit, err := pageParams(c)
	if err != nil {
		return err
	}
	ctx, cancel := h.ctx(c)
	defer cancel()
	u, msgs, err := h.store.Messages(ctx, id, after, limit)
	if err != nil {
		return h.dbError(c, err, "user")
	}
	page := MessagesPage{User: u, Messages: msgs}
	if len(msgs) == limit {
		page.NextAfter = &msgs[len(msgs)-1].ID
	}
	return c.JSON(http.StatusOK, page)
}

func (h *Handlers) ctx(c echo.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.Request().Context(), h.timeout)
}

// dbError maps a store error to the answer a client can act on: 404 for a missing row,
// 503 (retry later) when the database cannot answer, 500 only for a query that is wrong.
func (h *Handlers) dbError(c echo.Context, err error, what string) error {
	switch {
	case c.Request().Context().Err() != nil:
		return c.NoContent(499) // the client went away: nobody to answer, nothing to log
	case pgdb.IsNotFound(err):
		return echo.NewHTTPError(http.StatusNotFound, what+" not found")
	case pgdb.IsUnavailable(err):
		h.log.Warn("database unavailable", "err", err, "path", c.Path())
		c.Response().Header().Set("Retry-After", "1")
		return echo.NewHTTPError(http.StatusServiceUnavailable, "database unavailable, retry later")
	default:
		return err
	}
}

// pathID parses :id as a positive 64-bit integer.
func pathID(c echo.Context) (int64, error) {
	raw := c.Param("id")
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id < 1 {
		return 0, httpserver.BadRequest("id must be a positive integer below 2^63, got " + strconv.Quote(raw))
	}
	return id, nil
}

// pageParams parses ?after=ID&limit=N: after at least 0 (default 0), limit 1 to MaxLimit.
func pageParams(c echo.Context) (after int64, limit int, err error) {
	limit = DefaultLimit
	if raw := c.QueryParam("after"); raw != "" {
		after, err = strconv.ParseInt(raw, 10, 64)
		if err != nil || after < 0 {
			return 0, 0, httpserver.BadRequest("after must be an integer of at least 0, got " + strconv.Quote(raw))
		}
	}
	if raw := c.QueryParam("limit"); raw != "" {
		limit, err = strconv.Atoi(raw)
		if err != nil || limit < 1 || limit > MaxLimit {
			return 0, 0, httpserver.BadRequest("limit must be an integer from 1 to " + strconv.Itoa(MaxLimit) + ", got " + strconv.Quote(raw))
		}
	}
	return after, limit, nil
}
