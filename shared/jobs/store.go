// Package jobs is stage 07's asynchronous work: POST /jobs records a job in Postgres and
// queues it on RabbitMQ, workers compute it and store the result, GET /jobs/:id reads the
// state. The queue is at-least-once, so everything here is idempotent on the job id.
package jobs

import (
	"context"
	"embed"
	"errors"
	"io/fs"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sysdesign-course/course/shared/pgdb"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate applies the jobs schema; its versions live in their own goose table, so the
// workers, which never touch users, apply exactly this.
func Migrate(ctx context.Context, pool *pgxpool.Pool, wait time.Duration, log *slog.Logger) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	return pgdb.MigrateTable(ctx, pool, "goose_jobs_version", sub, wait, log)
}

// States of a job.
const (
	Pending = "pending"
	Done    = "done"
	Failed  = "failed"
)

// Job is one row of jobs, as GET /jobs/:id shows it.
type Job struct {
	ID          string     `json:"id"`
	N           *int64     `json:"n"`
	State       string     `json:"state"`
	Prime       *bool      `json:"prime,omitempty"`
	Reason      string     `json:"reason,omitempty"`
	Deliveries  int        `json:"deliveries"`
	Completions int        `json:"completions"`
	Worker      string     `json:"worker,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	FinishedAt  *time.Time `json:"finished_at,omitempty"`
}

// ErrNotFound is a job id with no row.
var ErrNotFound = errors.New("no such job")

// Store is the jobs table.
type Store struct{ pool *pgxpool.Pool }

// NewStore wraps pool.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

const columns = `id::text, n, state, prime, coalesce(reason, ''), deliveries, completions, coalesce(worker, ''), created_at, finished_at`

func scan(row pgx.Row) (Job, error) {
	var j Job
	err := row.Scan(&j.ID, &j.N, &j.State, &j.Prime, &j.Reason, &j.Deliveries, &j.Completions, &j.Worker, &j.CreatedAt, &j.FinishedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return j, ErrNotFound
	}
	return j, err
}

// Create records a pending job for n.
func (s *Store) Create(ctx context.Context, n int64) (Job, error) {
	return scan(s.pool.QueryRow(ctx, `INSERT INTO jobs (n) VALUES ($1) RETURNING `+columns, n))
}

// Delete removes a job the broker never accepted: its client got a 503, not an id.
func (s *Store) Delete(ctx context.Context, id string) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM jobs WHERE id = $1 AND state = 'pending'`, id)
	return err
}

// Get reads one job.
func (s *Store) Get(ctx context.Context, id string) (Job, error) {
	return scan(s.pool.QueryRow(ctx, `SELECT `+columns+` FROM jobs WHERE id = $1`, id))
}

// Delivered counts one delivery of the job's message and says the job's state: a job no
// longer pending was finished by an earlier delivery, which died before its ack.
func (s *Store) Delivered(ctx context.Context, id string) (string, error) {
	var state string
	err := s.pool.QueryRow(ctx, `UPDATE jobs SET deliveries = deliveries + 1 WHERE id = $1 RETURNING state`, id).Scan(&state)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", ErrNotFound
	}
	return state, err
}

// Complete stores the result if the job is still pending, and reports whether it did:
// false means another delivery finished it first, and nothing changed.
func (s *Store) Complete(ctx context.Context, id string, prime bool, worker string) (bool, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE jobs SET state = 'done', prime = $2, worker = $3, finished_at = now(), completions = completions + 1
		WHERE id = $1 AND state = 'pending'`, id, prime, worker)
	return tag.RowsAffected() == 1, err
}

// Fail marks a pending job failed with reason. A message whose job has no row (it was
// never a valid job) gets a failed row, so every message that reached the queue is
// accounted for. It reports whether a row changed.
func (s *Store) Fail(ctx context.Context, id, reason string) (bool, error) {
	tag, err := s.pool.Exec(ctx, `INSERT INTO jobs (id, state, reason, finished_at) VALUES ($1, 'failed', $2, now())
		ON CONFLICT (id) DO UPDATE SET state = 'failed', reason = EXCLUDED.reason, finished_at = now() WHERE jobs.state = 'pending'`, id, reason)
	return tag.RowsAffected() == 1, err
}
