// Command lb is the course's hand-written load balancer (shared/balancer): the proxy on
// LB_ADDR (:8080), its admin side (registration, stats page, config) on LB_ADMIN_ADDR (:8081).
package main

import (
	"context"
	"errors"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sysdesign-course/course/shared/balancer"
	"github.com/sysdesign-course/course/shared/httpserver"
	"github.com/sysdesign-course/course/shared/probe"
)

func main() {
	probe.IfRequested("http://127.0.0.1:8081/healthz")
	log := httpserver.Logger("lb")
	cfg := httpserver.MustConfig[balancer.Config](log)
	lb, err := balancer.New(cfg, log)
	if err != nil {
		log.Error("bad configuration", "err", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go lb.RunHealthChecks(ctx)

	servers := []*http.Server{
		{Addr: cfg.Addr, Handler: lb, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 60 * time.Second},
		{Addr: cfg.AdminAddr, Handler: lb.Admin(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second},
	}
	errc := make(chan error, len(servers))
	for _, s := range servers {
		go func() { errc <- s.ListenAndServe() }()
	}
	log.Info("balancing", "proxy", cfg.Addr, "admin", cfg.AdminAddr, "strategy", cfg.Strategy, "health_interval", cfg.HealthInterval,
		"passive_errors", cfg.PassiveErrors, "retries", cfg.Retries)
	select {
	case err := <-errc:
		log.Error("listener failed", "err", err)
		os.Exit(1)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for _, s := range servers {
		if err := s.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("shutdown", "err", err)
		}
	}
}
