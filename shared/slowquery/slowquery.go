// Package slowquery simulates a slow database query by waiting, so a learner can watch a
// server keep answering other requests while some take seconds.
package slowquery

import (
	"fmt"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/sysdesign-course/course/shared/httpserver"
)

// MaxDuration bounds a long query: anything above is refused, so no request can pin a
// connection longer than the server's write timeout.
const MaxDuration = 30 * time.Second

// DefaultDuration is used when the request names none.
const DefaultDuration = 2 * time.Second

// Register routes GET /long-query?duration=2s.
func Register(e *echo.Echo) { e.GET("/long-query", handle) }

func handle(c echo.Context) error {
	d, err := parse(c.QueryParam("duration"))
	if err != nil {
		return httpserver.BadRequest(err.Error())
	}
	start := time.Now()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-c.Request().Context().Done():
		// The client gave up; there is nobody to answer. 499 is what nginx logs for this.
		return c.NoContent(499)
	}
	return c.JSON(http.StatusOK, map[string]any{
		"requested_ms": d.Milliseconds(),
		"took_ms":      time.Since(start).Milliseconds(),
	})
}

func parse(raw string) (time.Duration, error) {
	if raw == "" {
		return DefaultDuration, nil
	}
	d, err := time.ParseDuration(raw)
	if err != nil {
		return 0, fmt.Errorf("duration %q is not a Go duration such as 500ms or 2s", raw)
	}
	if d < 0 || d > MaxDuration {
		return 0, fmt.Errorf("duration %s is out of range: 0s to %s", d, MaxDuration)
	}
	return d, nil
}
