// Command server is stage 04's server: stage 01's server plus a CPU-heavy /is-prime/:n,
// and it registers itself with the balancer when ready and leaves on shutdown.
package main

import (
	"context"
	"os"
	"time"

	"github.com/sysdesign-course/course/shared/httpserver"
	"github.com/sysdesign-course/course/shared/prime"
	"github.com/sysdesign-course/course/shared/probe"
	"github.com/sysdesign-course/course/shared/registrar"
	"github.com/sysdesign-course/course/shared/slowquery"
)

type config struct {
	HTTP     httpserver.Config
	Register registrar.Config
}

func main() {
	probe.IfRequested("http://127.0.0.1:8080/healthz")
	log := httpserver.Logger("server")
	cfg := httpserver.MustConfig[config](log)
	srv := httpserver.New(cfg.HTTP, log)
	slowquery.Register(srv.Echo)
	prime.Register(srv.Echo)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv.OnShutdown(func(sctx context.Context) {
		cancel() // no more heartbeats, then leave
		registrar.Deregister(sctx, cfg.Register, log)
	})
	go func() {
		// Announce ourselves only once we answer our own health check.
		for probe.Check("http://127.0.0.1:8080/healthz", time.Second) != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
		if err := registrar.Run(ctx, cfg.Register, log); err != nil {
			log.Error("registration gave up", "err", err)
		}
	}()
	if err := srv.Run(ctx); err != nil {
		log.Error("server stopped", "err", err)
		os.Exit(1)
	}
}
