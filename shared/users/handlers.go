package users

import (
	"context"
	"errors"
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

// Reader is what the read endpoints need: *Store reads Postgres, *Cached reads through Redis.
type Reader interface {
	Get(ctx context.Context, id int64) (User, error)
	List(ctx context.Context, after int64, limit int) ([]User, error)
	Messages(ctx context.Context, userID, after int64, limit int) (User, []Message, error)
}

// Writer is what the write endpoints need.
type Writer interface {
	Create(ctx context.Context, in Input) (User, error)
	Update(ctx context.Context, id int64, in Input) (User, error)
	Delete(ctx context.Context, id int64) error
}

// Profiler serves GET /users/:id/profile.
type Profiler interface {
	Profile(ctx context.Context, id int64) (Profile, error)
}

// Handlers serves the users resource over HTTP.
type Handlers struct {
	read    Reader
	write   Writer
	profile Profiler
	timeout time.Duration
	log     *slog.Logger
}

// Register routes the read endpoints. timeout bounds each request's database work,
// waiting for a pooled connection included, so a dead database costs a client at most that.
func Register(e *echo.Echo, r Reader, timeout time.Duration, log *slog.Logger) {
	h := &Handlers{read: r, timeout: timeout, log: log}
	e.GET("/users", h.list)
	e.GET("/users/:id", h.get)
	e.GET("/users/:id/messages", h.messages)
}

// RegisterWrites routes POST /users, PUT /users/:id and DELETE /users/:id.
func RegisterWrites(e *echo.Echo, w Writer, timeout time.Duration, log *slog.Logger) {
	h := &Handlers{write: w, timeout: timeout, log: log}
	e.POST("/users", h.create)
	e.PUT("/users/:id", h.update)
	e.DELETE("/users/:id", h.remove)
}

// RegisterProfile routes GET /users/:id/profile.
func RegisterProfile(e *echo.Echo, p Profiler, timeout time.Duration, log *slog.Logger) {
	h := &Handlers{profile: p, timeout: timeout, log: log}
	e.GET("/users/:id/profile", h.getProfile)
}

func (h *Handlers) get(c echo.Context) error {
	id, err := PathID(c)
	if err != nil {
		return err
	}
	ctx, cancel := h.ctx(c)
	defer cancel()
	u, err := h.read.Get(ctx, id)
	if err != nil {
		return h.dbError(c, err, "user")
	}
	return c.JSON(http.StatusOK, u)
}

func (h *Handlers) getProfile(c echo.Context) error {
	id, err := PathID(c)
	if err != nil {
		return err
	}
	ctx, cancel := h.ctx(c)
	defer cancel()
	p, err := h.profile.Profile(ctx, id)
	if err != nil {
		return h.dbError(c, err, "user")
	}
	return c.JSON(http.StatusOK, p)
}

func (h *Handlers) create(c echo.Context) error {
	in, err := DecodeInput(c)
	if err != nil {
		return err
	}
	ctx, cancel := h.ctx(c)
	defer cancel()
	u, err := h.write.Create(ctx, in)
	if err != nil {
		return h.dbError(c, err, "user")
	}
	c.Response().Header().Set(echo.HeaderLocation, "/users/"+strconv.FormatInt(u.ID, 10))
	return c.JSON(http.StatusCreated, u)
}

func (h *Handlers) update(c echo.Context) error {
	id, err := PathID(c)
	if err != nil {
		return err
	}
	in, err := DecodeInput(c)
	if err != nil {
		return err
	}
	ctx, cancel := h.ctx(c)
	defer cancel()
	u, err := h.write.Update(ctx, id, in)
	if err != nil {
		return h.dbError(c, err, "user")
	}
	return c.JSON(http.StatusOK, u)
}

func (h *Handlers) remove(c echo.Context) error {
	id, err := PathID(c)
	if err != nil {
		return err
	}
	ctx, cancel := h.ctx(c)
	defer cancel()
	if err := h.write.Delete(ctx, id); err != nil {
		return h.dbError(c, err, "user")
	}
	return c.NoContent(http.StatusNoContent)
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
	users, err := h.read.List(ctx, after, limit)
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
	id, err := PathID(c)
	if err != nil {
		return err
	}
	after, limit, err := pageParams(c)
	if err != nil {
		return err
	}
	ctx, cancel := h.ctx(c)
	defer cancel()
	u, msgs, err := h.read.Messages(ctx, id, after, limit)
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
// 409 for a taken username or email, 503 (retry later) when the database cannot answer,
// 500 only for a query that is wrong.
func (h *Handlers) dbError(c echo.Context, err error, what string) error {
	var taken ErrTaken
	switch {
	case c.Request().Context().Err() != nil:
		return c.NoContent(499) // the client went away: nobody to answer, nothing to log
	case errors.As(err, &taken):
		return echo.NewHTTPError(http.StatusConflict, taken.Error())
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

// PathID parses :id as a positive 64-bit integer.
func PathID(c echo.Context) (int64, error) {
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
