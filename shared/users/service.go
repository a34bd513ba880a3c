package users

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sysdesign-course/course/shared/cacheaside"
	"github.com/sysdesign-course/course/shared/httpserver"
	"github.com/sysdesign-course/course/shared/pgdb"
	"github.com/sysdesign-course/course/shared/redisdb"
	"github.com/sysdesign-course/course/shared/slowquery"
)

// ServiceConfig is what the cached users service reads from the environment.
type ServiceConfig struct {
	DB          pgdb.Config
	Redis       redisdb.Config
	Cache       cacheaside.Config
	MigrateWait time.Duration `env:"MIGRATE_WAIT" envDefault:"60s"`
}

// Service is stage 05's application, which later stages build on: users and profiles in
// Postgres behind a Redis cache-aside, with writes, the slow query and the cache's admin
// endpoints. Redis is not a readiness dependency: without it the server serves from Postgres.
type Service struct {
	Pool  *pgxpool.Pool
	store *Cached
	close []func()
}

// Mount opens Postgres (migrated) and Redis, and routes the service on srv.
func Mount(ctx context.Context, cfg ServiceConfig, srv *httpserver.Server, log *slog.Logger) (*Service, error) {
	pool, err := pgdb.OpenMigrated(ctx, cfg.DB, Migrations(), cfg.MigrateWait, log)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	s := &Service{Pool: pool, close: []func(){pool.Close}}
	rdb, err := redisdb.Open(cfg.Redis)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("redis: %w", err)
	}
	s.close = append(s.close, func() { _ = rdb.Close() })
	store, err := NewCached(NewStore(pool), rdb, cfg.Cache, srv.Registry, log)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("cache: %w", err)
	}
	s.store = store
	slowquery.Register(srv.Echo)
	Register(srv.Echo, store, cfg.DB.QueryTimeout, log)
	RegisterWrites(srv.Echo, store, cfg.DB.QueryTimeout, log)
	RegisterProfile(srv.Echo, store, cfg.DB.QueryTimeout, log)
	cacheaside.RegisterAdmin(srv.Admin, store.Caches()...) // the admin listener: no balancer forwards it
	srv.Ready("postgres", pool.Ping)
	for _, err := range []error{pgdb.RegisterMetrics(srv.Registry, pool), redisdb.RegisterMetrics(srv.Registry, rdb)} {
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	return s, nil
}

// Close makes one last try at the invalidations Redis refused, then closes Redis and
// Postgres. Call it after the server has stopped.
func (s *Service) Close() {
	if s.store != nil {
		s.store.Close()
	}
	for i := len(s.close) - 1; i >= 0; i-- {
		s.close[i]()
	}
}
