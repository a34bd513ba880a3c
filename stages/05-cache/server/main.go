// Command server is stage 05's server: stage 02's server with users as a REST resource
// (POST, PUT, DELETE with validation) and its reads of users and profiles going through
// a Redis cache-aside (shared/cacheaside). Redis is not a readiness dependency: without
// it the server still serves, from Postgres.
package main

import (
	"context"
	"os"
	"time"

	"github.com/sysdesign-course/course/shared/cacheaside"
	"github.com/sysdesign-course/course/shared/httpserver"
	"github.com/sysdesign-course/course/shared/pgdb"
	"github.com/sysdesign-course/course/shared/probe"
	"github.com/sysdesign-course/course/shared/redisdb"
	"github.com/sysdesign-course/course/shared/slowquery"
	"github.com/sysdesign-course/course/shared/users"
)

type config struct {
	HTTP        httpserver.Config
	DB          pgdb.Config
	Redis       redisdb.Config
	Cache       cacheaside.Config
	MigrateWait time.Duration `env:"MIGRATE_WAIT" envDefault:"60s"`
}

func main() {
	probe.IfRequested("http://127.0.0.1:8080/healthz")
	log := httpserver.Logger("server")
	cfg := httpserver.MustConfig[config](log)
	ctx := context.Background()
	pool, err := pgdb.OpenMigrated(ctx, cfg.DB, users.Migrations(), cfg.MigrateWait, log)
	if err != nil {
		log.Error("database", "err", err)
		os.Exit(1)
	}
	defer pool.Close()
	rdb, err := redisdb.Open(cfg.Redis)
	if err != nil {
		log.Error("redis", "err", err)
		os.Exit(2)
	}
	defer rdb.Close()

	srv := httpserver.New(cfg.HTTP, log)
	store, err := users.NewCached(users.NewStore(pool), rdb, cfg.Cache, srv.Registry, log)
	if err != nil {
		log.Error("cache", "err", err)
		os.Exit(2)
	}
	slowquery.Register(srv.Echo)
	users.Register(srv.Echo, store, cfg.DB.QueryTimeout, log)
	users.RegisterWrites(srv.Echo, store, cfg.DB.QueryTimeout, log)
	users.RegisterProfile(srv.Echo, store, cfg.DB.QueryTimeout, log)
	cacheaside.RegisterAdmin(srv.Admin, store.Caches()...) // the admin listener: no balancer forwards it
	srv.Ready("postgres", pool.Ping)
	for _, err := range []error{pgdb.RegisterMetrics(srv.Registry, pool), redisdb.RegisterMetrics(srv.Registry, rdb)} {
		if err != nil {
			log.Error("metrics", "err", err)
			os.Exit(2)
		}
	}
	err = srv.Run(ctx)
	store.Close() // one last try at the invalidations Redis refused, before the process goes
	if err != nil {
		log.Error("server stopped", "err", err)
		os.Exit(1)
	}
}
