package httpserver

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
)

// ErrorBody is the JSON every error response carries.
type ErrorBody struct {
	Error     string `json:"error"`
	Status    int    `json:"status"`
	RequestID string `json:"request_id,omitempty"`
}

// BadRequest is the error a handler returns for input it refuses; the message is shown to
// the client as is, so it should say what was wrong and what is accepted.
func BadRequest(msg string) error { return echo.NewHTTPError(http.StatusBadRequest, msg) }

// Unavailable is a 503 that tells the client when to try again (Retry-After): the request
// was fine, a dependency cannot take it now.
func Unavailable(c echo.Context, retryAfter time.Duration, msg string) error {
	c.Response().Header().Set("Retry-After", strconv.Itoa(max(1, int(retryAfter.Seconds()))))
	return echo.NewHTTPError(http.StatusServiceUnavailable, msg)
}

// jsonErrorHandler turns every error (echo's own 404/405, handlers' HTTPErrors, panics
// recovered by middleware) into an ErrorBody. Unknown errors become a 500 whose details are
// logged, not sent.
func jsonErrorHandler(log *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		status, msg := http.StatusInternalServerError, http.StatusText(http.StatusInternalServerError)
		var he *echo.HTTPError
		if errors.As(err, &he) {
			status = he.Code
			if m, ok := he.Message.(string); ok {
				msg = m
			} else {
				msg = http.StatusText(status)
			}
		} else {
			log.Error("unhandled error", "err", err, "path", c.Request().URL.Path)
		}
		body := ErrorBody{Error: msg, Status: status, RequestID: c.Response().Header().Get(echo.HeaderXRequestID)}
		if c.Request().Method == http.MethodHead {
			err = c.NoContent(status)
		} else {
			err = c.JSON(status, body)
		}
		if err != nil {
			log.Error("writing error response", "err", err)
		}
	}
}
