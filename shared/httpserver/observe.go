package httpserver

import (
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight prometheus.Gauge
}

func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_requests_total", Help: "Requests served, by route and status code.",
		}, []string{"method", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "http_request_duration_seconds",
			Help:    "Time to serve a request, by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"method", "route"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "http_requests_in_flight", Help: "Requests being served right now.",
		}),
	}
	reg.MustRegister(m.requests, m.duration, m.inFlight,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// newAdmin is the admin side: the metrics of reg and Go's profiler. Its requests are not
// counted in the HTTP metrics, which describe what clients got.
func newAdmin(cfg Config, log *slog.Logger, reg *prometheus.Registry) *echo.Echo {
	e := newEcho(cfg, log)
	e.Use(requestLogger(log), middleware.Recover())
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})))
	// pprof.Index serves the named profiles too (/debug/pprof/heap, goroutine, ...).
	e.GET("/debug/pprof/*", echo.WrapHandler(http.HandlerFunc(pprof.Index)))
	e.GET("/debug/pprof/cmdline", echo.WrapHandler(http.HandlerFunc(pprof.Cmdline)))
	e.GET("/debug/pprof/profile", echo.WrapHandler(http.HandlerFunc(pprof.Profile)))
	e.Match([]string{http.MethodGet, http.MethodPost}, "/debug/pprof/symbol", echo.WrapHandler(http.HandlerFunc(pprof.Symbol)))
	e.GET("/debug/pprof/trace", echo.WrapHandler(http.HandlerFunc(pprof.Trace)))
	return e
}

// middleware labels by route template (/users/:id), never by raw path, so unknown paths
// cannot blow up the number of series.
func (m *metrics) middleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		m.inFlight.Inc()
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err) // write the response now so the recorded status is the real one
		}
		m.inFlight.Dec()
		route := c.Path()
		if route == "" {
			route = "unmatched"
		}
		method := c.Request().Method
		m.duration.WithLabelValues(method, route).Observe(time.Since(start).Seconds())
		m.requests.WithLabelValues(method, route, strconv.Itoa(c.Response().Status)).Inc()
		return nil
	}
}

// requestLogger logs failures at warn, refused requests at info and everything else at
// debug (LOG_LEVEL=debug): one JSON line per request costs more CPU than answering /ping,
// and the stages' clients already log every request they send.
func requestLogger(log *slog.Logger) echo.MiddlewareFunc {
	return middleware.RequestLoggerWithConfig(middleware.RequestLoggerConfig{
		LogMethod: true, LogURI: true, LogStatus: true, LogLatency: true, LogRequestID: true,
		LogValuesFunc: func(c echo.Context, v middleware.RequestLoggerValues) error {
			level := slog.LevelDebug
			switch {
			case v.Status >= 500:
				level = slog.LevelWarn
			case v.Status >= 400:
				level = slog.LevelInfo
			}
			if !log.Enabled(c.Request().Context(), level) {
				return nil
			}
			log.Log(c.Request().Context(), level, "request", "method", v.Method, "uri", v.URI, "status", v.Status,
				"latency_ms", float64(v.Latency.Microseconds())/1000, "request_id", v.RequestID)
			return nil
		},
	})
}
