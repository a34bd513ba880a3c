// Command server is stage 02's server: stage 01's server plus users read from Postgres
// through a pgx pool, migrations applied at start, and a /readyz that checks the database.
package main

import (
	"context"
	"os"
	"time"

	"github.com/sysdesign-course/course/shared/httpserver"
	"github.com/sysdesign-course/course/shared/pgdb"
	"github.com/sysdesign-course/course/shared/probe"
	"github.com/sysdesign-course/course/shared/slowquery"
	"github.com/sysdesign-course/course/shared/users"
)

type config struct {
	HTTP httpserver.Config
	DB   pgdb.Config
	// MigrateWait is how long a starting server retries migrations while Postgres starts.
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

	srv := httpserver.New(cfg.HTTP, log)
	slowquery.Register(srv.Echo)
	users.Register(srv.Echo, users.NewStore(pool), cfg.DB.QueryTimeout, log)
	srv.Ready("postgres", pool.Ping)
	if err := pgdb.RegisterMetrics(srv.Registry, pool); err != nil {
		log.Error("metrics", "err", err)
		os.Exit(2)
	}
	if err := srv.Run(ctx); err != nil {
		log.Error("server stopped", "err", err)
		os.Exit(1)
	}
}
