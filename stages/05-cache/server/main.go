// Command server is stage 05's server: stage 02's server with users as a REST resource
// (POST, PUT, DELETE with validation) and its reads of users and profiles going through
// a Redis cache-aside (shared/cacheaside, wired by users.Mount). Redis is not a readiness
// dependency: without it the server still serves, from Postgres.
package main

import (
	"context"
	"os"

	"github.com/sysdesign-course/course/shared/httpserver"
	"github.com/sysdesign-course/course/shared/probe"
	"github.com/sysdesign-course/course/shared/users"
)

type config struct {
	HTTP  httpserver.Config
	Users users.ServiceConfig
}

func main() {
	probe.IfRequested("http://127.0.0.1:8080/healthz")
	log := httpserver.Logger("server")
	cfg := httpserver.MustConfig[config](log)
	srv := httpserver.New(cfg.HTTP, log)
	svc, err := users.Mount(context.Background(), cfg.Users, srv, log)
	if err != nil {
		log.Error("starting", "err", err)
		os.Exit(1)
	}
	err = srv.Run(context.Background())
	svc.Close()
	if err != nil {
		log.Error("server stopped", "err", err)
		os.Exit(1)
	}
}
