package bench

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMedian(t *testing.T) {
	assert.Equal(t, 2.0, Median([]float64{3, 1, 2}))
	assert.Equal(t, 2.5, Median([]float64{4, 1, 3, 2}))
	assert.Equal(t, 0.0, Median(nil))
}

// page serves body as a metrics page with the given status.
func page(t *testing.T, status int, body string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestScrapeAndSum(t *testing.T) {
	url := page(t, http.StatusOK, "# HELP x y\n# TYPE x counter\nx 3\ny{c=\"d\",a=\"b\"} 4\ny{a=\"b\",c=\"e\"} 1 1700000000\nyy{a=\"b\"} 9\nz 1.5e+02\n"+
		"q{path=\"/a,b\",note=\"say \\\"hi\\\"\"} 2\n")
	m, err := Scrape(context.Background(), http.DefaultClient, url)
	require.NoError(t, err)
	assert.Equal(t, map[string]float64{
		"x": 3, `y{a="b",c="d"}`: 4, `y{a="b",c="e"}`: 1, `yy{a="b"}`: 9, "z": 150,
		`q{note="say \"hi\"",path="/a,b"}`: 2,
	}, m, "labels sorted, timestamps dropped, escapes kept")
	assert.Equal(t, 5.0, Sum(m, "y", `a="b"`))
	assert.Equal(t, 1.0, Sum(m, "y", `a="b"`, `c="e"`))
	assert.Equal(t, 0.0, Sum(m, "y", `a="x"`))
	assert.Equal(t, 3.0, Sum(m, "x"))
}

// A real registry's page, histograms included, reads back as the series the page names.
func TestScrapeFlattensHistograms(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "took_seconds", Buckets: []float64{0.1, 1}}, []string{"route"})
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "in_flight"})
	reg.MustRegister(h, g)
	h.WithLabelValues("/a").Observe(0.5)
	h.WithLabelValues("/a").Observe(2)
	g.Set(3)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)

	m, err := Scrape(context.Background(), srv.Client(), srv.URL)
	require.NoError(t, err)
	assert.Equal(t, map[string]float64{
		`took_seconds_bucket{le="0.1",route="/a"}`:  0,
		`took_seconds_bucket{le="1",route="/a"}`:    1,
		`took_seconds_bucket{le="+Inf",route="/a"}`: 2,
		`took_seconds_sum{route="/a"}`:              2.5,
		`took_seconds_count{route="/a"}`:            2,
		"in_flight":                                 3,
	}, m)
	assert.Equal(t, 2.0, Sum(m, "took_seconds_count", `route="/a"`))
}

func TestScrapeRefusesWhatIsNotAMetricsPage(t *testing.T) {
	_, err := Scrape(context.Background(), http.DefaultClient, page(t, http.StatusNotFound, "not found"))
	require.ErrorContains(t, err, "HTTP 404")
	_, err = Scrape(context.Background(), http.DefaultClient, page(t, http.StatusOK, "x{a=\"b\" 1\n"))
	require.Error(t, err, "a malformed page is an error, not a partial result")
}
