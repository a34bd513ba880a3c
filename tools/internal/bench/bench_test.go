package bench

import (
	"context"
	"github.com/stretchr/testify/require"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestMedian(t *testing.T) {
	assert.Equal(t, 2.0, Median([]float64{3, 1, 2}))
	assert.Equal(t, 2.5, Median([]float64{4, 1, 3, 2}))
	assert.Equal(t, 0.0, Median(nil))
}

func TestScrapeAndSum(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("# HELP x y\n# TYPE x counter\nx 3\ny{a=\"b\",c=\"d\"} 4\ny{a=\"b\",c=\"e\"} 1 1700000000\nyy{a=\"b\"} 9\nz 1.5e+02\n"))
	}))
	defer srv.Close()
	m, err := Scrape(context.Background(), srv.Client(), srv.URL)
	require.NoError(t, err)
	assert.Equal(t, map[string]float64{"x": 3, `y{a="b",c="d"}`: 4, `y{a="b",c="e"}`: 1, `yy{a="b"}`: 9, "z": 150}, m)
	assert.Equal(t, 5.0, Sum(m, "y", `a="b"`))
	assert.Equal(t, 1.0, Sum(m, "y", `a="b"`, `c="e"`))
	assert.Equal(t, 0.0, Sum(m, "y", `a="x"`))
	assert.Equal(t, 3.0, Sum(m, "x"))
}
