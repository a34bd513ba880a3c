// Package httpserver is the HTTP plumbing every course server shares: echo with request ids,
// an instance header, JSON errors, Prometheus metrics, timeouts, and graceful shutdown.
// Stages add their own routes on top; nothing here knows what a stage is about.
//
// A server listens twice. The public listener (ADDR, :8080) serves the application, /ping,
// /healthz and /readyz: what balancers forward. The admin listener (ADMIN_ADDR, :9090)
// serves /metrics, /debug/pprof/ and the stages' operator endpoints (/admin/...): no
// balancer forwards it, so a client can neither read the internals nor flip a switch.
package httpserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"
)

// Config is read from the environment by the stage's main (see Load).
type Config struct {
	Addr string `env:"ADDR" envDefault:":8080"`
	// AdminAddr is the admin listener's address: metrics, pprof, operator endpoints. It is
	// reached on the stack's network (by the checks) or a loopback-only host port; empty
	// turns it off.
	AdminAddr         string        `env:"ADMIN_ADDR" envDefault:":9090"`
	Instance          string        `env:"INSTANCE"` // defaults to the hostname (the container id under Docker)
	ReadHeaderTimeout time.Duration `env:"READ_HEADER_TIMEOUT" envDefault:"5s"`
	ReadTimeout       time.Duration `env:"READ_TIMEOUT" envDefault:"10s"`
	// WriteTimeout bounds a whole response, so it must exceed the slowest legitimate handler
	// (the 30 s long query ceiling).
	WriteTimeout time.Duration `env:"WRITE_TIMEOUT" envDefault:"40s"`
	IdleTimeout  time.Duration `env:"IDLE_TIMEOUT" envDefault:"60s"`
	// ShutdownTimeout is how long in-flight requests may run after SIGTERM. Zero drops them at
	// once: that is the broken configuration the stage-01 negative control runs.
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"15s"`
}

// InstanceHeader names the server instance that answered, so a learner behind a balancer
// can see who served each request.
const InstanceHeader = "X-Served-By"

// Server is an echo instance with the course's middleware and standard endpoints, and a
// second one for the admin side.
type Server struct {
	Echo     *echo.Echo // the public side
	Admin    *echo.Echo // the admin side: add operator endpoints here, never on Echo
	Registry *prometheus.Registry
	cfg      Config
	log      *slog.Logger
	ready    []readiness
	onStop   []func(context.Context)
}

type readiness struct {
	name  string
	check func(context.Context) error
}

// New builds a server with /ping, /healthz and /readyz routed on the public side, and
// /metrics and /debug/pprof/ on the admin side. /healthz says the process is alive;
// /readyz says it can do its job (see Ready).
func New(cfg Config, log *slog.Logger) *Server {
	if cfg.Instance == "" {
		cfg.Instance, _ = os.Hostname()
	}
	e := newEcho(cfg, log)
	reg := prometheus.NewRegistry()
	m := newMetrics(reg)

	// Outermost first. Recover sits innermost so a panic becomes an error that the metrics
	// middleware writes (as a JSON 500) and counts like any other response.
	e.Use(
		middleware.RequestID(),
		func(next echo.HandlerFunc) echo.HandlerFunc {
			return func(c echo.Context) error {
				c.Response().Header().Set(InstanceHeader, cfg.Instance)
				return next(c)
			}
		},
		requestLogger(log),
		m.middleware,
		middleware.Recover(),
	)

	s := &Server{Echo: e, Admin: newAdmin(cfg, log, reg), Registry: reg, cfg: cfg, log: log}
	e.GET("/ping", s.ping)
	e.GET("/healthz", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
	})
	e.GET("/readyz", s.readyz)
	return s
}

// newEcho is an echo with the course's timeouts and JSON errors, and no routes.
func newEcho(cfg Config, log *slog.Logger) *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = jsonErrorHandler(log)
	e.Server.ReadHeaderTimeout = cfg.ReadHeaderTimeout
	e.Server.ReadTimeout = cfg.ReadTimeout
	e.Server.WriteTimeout = cfg.WriteTimeout // also bounds a CPU profile: ?seconds= must stay below it
	e.Server.IdleTimeout = cfg.IdleTimeout
	return e
}

// OnShutdown runs f when a shutdown begins, before the server stops accepting requests:
// the place to tell a load balancer to stop sending more. Call it before Run.
func (s *Server) OnShutdown(f func(context.Context)) { s.onStop = append(s.onStop, f) }

// Ready adds a dependency that GET /readyz checks, such as the database. Call it before Run.
func (s *Server) Ready(name string, check func(context.Context) error) {
	s.ready = append(s.ready, readiness{name, check})
}

func (s *Server) readyz(c echo.Context) error {
	checks := map[string]string{}
	var failed []string
	for _, r := range s.ready {
		ctx, cancel := context.WithTimeout(c.Request().Context(), time.Second)
		err := r.check(ctx)
		cancel()
		if err != nil {
			checks[r.name] = err.Error()
			failed = append(failed, r.name)
			continue
		}
		checks[r.name] = "ok"
	}
	if len(failed) > 0 {
		return echo.NewHTTPError(http.StatusServiceUnavailable, "not ready: "+strings.Join(failed, ", ")+" unavailable")
	}
	return c.JSON(http.StatusOK, map[string]any{"status": "ready", "checks": checks})
}

// Instance is the name this server reports in InstanceHeader.
func (s *Server) Instance() string { return s.cfg.Instance }

func (s *Server) ping(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"message": "pong", "instance": s.cfg.Instance})
}

// Run serves until ctx is done or SIGTERM/SIGINT arrives, then stops accepting connections
// and waits up to ShutdownTimeout for in-flight requests before returning.
func (s *Server) Run(ctx context.Context) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	errc := make(chan error, 1)
	go func() {
		s.log.Info("listening", "addr", s.cfg.Addr, "admin_addr", s.cfg.AdminAddr, "instance", s.cfg.Instance)
		errc <- s.Echo.Start(s.cfg.Addr)
	}()
	adminErr := make(chan error, 1)
	if s.cfg.AdminAddr != "" {
		go func() { adminErr <- s.Admin.Start(s.cfg.AdminAddr) }()
	}
	// The admin side stops with the public one: metrics stay readable while requests drain.
	defer s.Admin.Close()

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case err := <-adminErr:
		_ = s.Echo.Close()
		return fmt.Errorf("admin listener: %w", err)
	case <-ctx.Done():
	}

	for _, f := range s.onStop {
		fctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		f(fctx)
		cancel()
	}
	if s.cfg.ShutdownTimeout <= 0 {
		s.log.Warn("shutting down without a grace period: in-flight requests are dropped")
		return s.Echo.Close()
	}
	s.log.Info("shutting down: no new connections, finishing in-flight requests", "grace", s.cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := s.Echo.Shutdown(sctx); err != nil {
		return fmt.Errorf("graceful shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	s.log.Info("stopped cleanly")
	return nil
}
