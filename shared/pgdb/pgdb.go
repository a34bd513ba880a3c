// Package pgdb opens the course's Postgres connection pool with every limit set on purpose,
// applies migrations exactly once however many servers start together, and exports the
// pool's statistics as Prometheus metrics.
package pgdb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/jackc/puddle/v2"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// Config is read from the environment. Where the server finds Postgres (PGHOST, PGPORT,
// PGUSER, PGPASSWORD, PGDATABASE) comes from libpq's standard variables, which pgx reads.
type Config struct {
	MaxConns int32 `env:"DB_MAX_CONNS" envDefault:"10"` // per server; Postgres allows 100 in all
	MinConns int32 `env:"DB_MIN_CONNS" envDefault:"2"`  // kept open so the first requests pay no handshake
	// ConnectTimeout bounds dialling: when Postgres is down a request fails fast instead
	// of waiting for the kernel's TCP timeout.
	ConnectTimeout  time.Duration `env:"DB_CONNECT_TIMEOUT" envDefault:"2s"`
	QueryTimeout    time.Duration `env:"DB_QUERY_TIMEOUT" envDefault:"2s"` // per request, acquire included
	MaxConnLifetime time.Duration `env:"DB_MAX_CONN_LIFETIME" envDefault:"30m"`
	MaxConnIdleTime time.Duration `env:"DB_MAX_CONN_IDLE_TIME" envDefault:"5m"`
	// HealthCheckPeriod is how often the pool closes connections past their lifetime or idle
	// time and dials back up to MinConns; a dead connection itself is found when a query
	// uses it, and the pool then discards it.
	HealthCheckPeriod time.Duration `env:"DB_HEALTH_CHECK_PERIOD" envDefault:"5s"`
}

// Open builds the pool. It does not wait for Postgres: pgxpool connects lazily, so a
// server started before its database comes up, and it recovers by itself when the
// database returns.
func Open(ctx context.Context, cfg Config) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig("")
	if err != nil {
		return nil, fmt.Errorf("postgres config: %w", err)
	}
	pc.MaxConns, pc.MinConns = cfg.MaxConns, cfg.MinConns
	pc.MaxConnLifetime, pc.MaxConnIdleTime = cfg.MaxConnLifetime, cfg.MaxConnIdleTime
	pc.MaxConnLifetimeJitter = cfg.MaxConnLifetime / 10 // servers started together do not reconnect together
	pc.HealthCheckPeriod = cfg.HealthCheckPeriod
	pc.ConnConfig.ConnectTimeout = cfg.ConnectTimeout
	// The server also stops a runaway query itself, in case a client gives up first.
	pc.ConnConfig.RuntimeParams["statement_timeout"] = fmt.Sprint(cfg.QueryTimeout.Milliseconds())
	pc.ConnConfig.RuntimeParams["application_name"] = "course-server"
	pc.ConnConfig.Tracer = queryCounter{}
	return pgxpool.NewWithConfig(ctx, pc)
}

// OpenMigrated opens the pool and applies the migrations in fsys (see Migrate): what a
// server does before it serves.
func OpenMigrated(ctx context.Context, cfg Config, fsys fs.FS, wait time.Duration, log *slog.Logger) (*pgxpool.Pool, error) {
	pool, err := Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := Migrate(ctx, pool, fsys, wait, log); err != nil {
		pool.Close()
		return nil, fmt.Errorf("migrations: %w", err)
	}
	return pool, nil
}

// Migrate applies the migrations in fsys (goose SQL files). A Postgres advisory lock makes
// it safe to call from every replica at once: one applies, the others wait and find
// nothing left to do. It retries while Postgres is still starting, for up to wait.
func Migrate(ctx context.Context, pool *pgxpool.Pool, fsys fs.FS, wait time.Duration, log *slog.Logger) error {
	return MigrateTable(ctx, pool, goose.DefaultTablename, fsys, wait, log)
}

// MigrateTable is Migrate with the applied versions kept in table: a package whose schema
// evolves on its own (jobs, from stage 07) numbers its migrations independently of the
// users' and is applied by services that never touch users (the workers).
func MigrateTable(ctx context.Context, pool *pgxpool.Pool, table string, fsys fs.FS, wait time.Duration, log *slog.Logger) error {
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return err
	}
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	provider, err := goose.NewProvider(goose.DialectPostgres, db, fsys, goose.WithSessionLocker(locker), goose.WithTableName(table))
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	deadline := time.Now().Add(wait)
	for {
		results, err := provider.Up(ctx)
		if err == nil {
			for _, r := range results {
				log.Info("migration applied", "version", r.Source.Version, "file", r.Source.Path, "took", r.Duration.String())
			}
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("migrations: %w", err)
		}
		log.Warn("migrations: database not ready, retrying", "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// IsNotFound reports a query that found no row.
func IsNotFound(err error) bool { return errors.Is(err, pgx.ErrNoRows) }

// unavailableCodes are the SQLSTATEs, besides class 08 (connection exception), that mean
// "not now" rather than "wrong": retrying the same statement later can succeed.
var unavailableCodes = map[string]bool{
	"57P01": true, // admin_shutdown: Postgres is stopping
	"57P02": true, // crash_shutdown
	"57P03": true, // cannot_connect_now: Postgres is starting or recovering
	"57014": true, // query_canceled: our statement_timeout, the database too slow right now
	"53300": true, // too_many_connections
	"40001": true, // serialization_failure: the transaction lost a race; retry it
	"40P01": true, // deadlock_detected: likewise
}

// IsUnavailable reports errors that mean "the database cannot answer now": down,
// unreachable, starting or stopping, out of connections, too slow, or the connection
// died. They deserve a 503 and a retry. Anything else (a scan into the wrong type, a
// syntax error, a wrong password) is a bug no retry fixes: the caller answers 500 and
// logs the cause.
func IsUnavailable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) { // Postgres answered: its code says which kind
		return strings.HasPrefix(pgErr.Code, "08") || unavailableCodes[pgErr.Code]
	}
	var netErr net.Error // dial, refused, reset, DNS, network timeouts
	var connectErr *pgconn.ConnectError
	return errors.As(err, &netErr) || errors.As(err, &connectErr) ||
		errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || // the server hung up mid-exchange
		errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, puddle.ErrClosedPool)
}
