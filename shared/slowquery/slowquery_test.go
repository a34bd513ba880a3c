package slowquery

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/assert"
)

func TestParse(t *testing.T) {
	for raw, want := range map[string]time.Duration{"": DefaultDuration, "0s": 0, "250ms": 250 * time.Millisecond, "30s": MaxDuration} {
		d, err := parse(raw)
		assert.NoError(t, err, raw)
		assert.Equal(t, want, d, raw)
	}
	for _, raw := range []string{"-1s", "30.001s", "abc", "2", "99999999999999999999h", "1e3s"} {
		_, err := parse(raw)
		assert.Error(t, err, raw)
	}
}

func TestLongQueryWaitsAndReports(t *testing.T) {
	e := echo.New()
	Register(e)
	w := httptest.NewRecorder()
	start := time.Now()
	e.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/long-query?duration=50ms", nil))
	assert.Equal(t, http.StatusOK, w.Code)
	assert.GreaterOrEqual(t, time.Since(start), 50*time.Millisecond)
	assert.Contains(t, w.Body.String(), `"requested_ms":50`)
}
