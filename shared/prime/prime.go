// Package prime answers "is n prime?" the slow way on purpose: trial division by every
// number below n, no square-root bound, no even skip. Its cost grows linearly with n, so a
// stage can dial in a CPU-bound request (about 50 ms at DefaultN on a 2026 laptop core) and
// show what CPU limits, more servers and worker queues do to it.
package prime

import (
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/sysdesign-course/course/shared/httpserver"
)

const (
	// DefaultN is a prime, so the loop runs to the end: the worst case, every time.
	DefaultN = 25_000_009
	// MaxN bounds one request's CPU to about a third of a second.
	MaxN = 100_000_000
)

// IsPrime is deliberately naive: it tries every divisor from 2 to n-1.
func IsPrime(n int64) bool {
	if n < 2 {
		return false
	}
	for d := int64(2); d < n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

// Register routes GET /is-prime/:n.
func Register(e *echo.Echo) { e.GET("/is-prime/:n", handle) }

func handle(c echo.Context) error {
	n, err := parseN(c.Param("n"))
	if err != nil {
		return err
	}
	start := time.Now()
	p := IsPrime(n)
	return c.JSON(http.StatusOK, map[string]any{"n": n, "prime": p, "took_ms": time.Since(start).Milliseconds()})
}

// parseN reads n, from 0 to MaxN; anything else is a 400 that says what is accepted.
func parseN(raw string) (int64, error) {
	n, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || n < 0 || n > MaxN {
		return 0, httpserver.BadRequest("n must be an integer from 0 to " + strconv.Itoa(MaxN) + ", got " + strconv.Quote(raw))
	}
	return n, nil
}
