// Command server is stage 01's echo server: /ping, a slow /long-query, health and metrics.
package main

import (
	"context"
	"os"

	"github.com/sysdesign-course/course/shared/httpserver"
	"github.com/sysdesign-course/course/shared/probe"
	"github.com/sysdesign-course/course/shared/slowquery"
)

func main() {
	probe.IfRequested("http://127.0.0.1:8080/healthz")
	log := httpserver.Logger("server")
	cfg := httpserver.MustConfig[httpserver.Config](log)
	srv := httpserver.New(cfg, log)
	slowquery.Register(srv.Echo)
	if err := srv.Run(context.Background()); err != nil {
		log.Error("server stopped", "err", err)
		os.Exit(1)
	}
}
