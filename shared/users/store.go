// Package users is the course's users resource: a Postgres store with keyset pagination
// and a join, its migrations (schema and deterministic seed), and its HTTP handlers.
package users

import (
	"context"
	"embed"
	"io/fs"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations are the goose SQL files: schema, then the generated seed.
func Migrations() fs.FS {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		panic(err) // the embedded folder is part of the binary
	}
	return sub
}

// User is one row of users.
type User struct {
	ID        int64     `json:"id"`
	Username  string    `json:"username"`
	Email     string    `json:"email"`
	CreatedAt time.Time `json:"created_at"`
}

// Message is one of a user's messages.
type Message struct {
	ID        int64     `json:"id"`
	Body      string    `json:"body"`
	CreatedAt time.Time `json:"created_at"`
}

// Store reads users from Postgres. Every query is parameterised.
type Store struct{ pool *pgxpool.Pool }

// NewStore wraps a pool.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Get returns one user, or pgx.ErrNoRows.
func (s *Store) Get(ctx context.Context, id int64) (User, error) {
	var u User
	err := s.pool.QueryRow(ctx,
		`SELECT id, username, email, created_at FROM users WHERE id = $1`, id,
	).Scan(&u.ID, &u.Username, &u.Email, &u.CreatedAt)
	return u, err
}

// List returns up to limit users with ids above after, in id order: keyset pagination,
// which costs the same on the last page as on the first (OFFSET would scan every
// skipped row) and never repeats or skips a row when others are inserted meanwhile.
func (s *Store) List(ctx context.Context, after int64, limit int) ([]User, error) {
	rows, err := s.pool.Query(ctx,
		`SELECT id, username, email, created_at FROM users WHERE id > $1 ORDER BY id LIMIT $2`, after, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (User, error) {
		var u User
		err := r.Scan(&u.ID, &u.Username, &u.Email, &u.CreatedAt)
		return u, err
	})
}

// Messages returns the user and up to limit of their messages with ids above after. One
// round trip: the user row joined laterally with a page of messages, so an unknown user
// (no row: pgx.ErrNoRows) is told apart from a user with no more messages.
func (s *Store) Messages(ctx context.Context, userID, after int64, limit int) (User, []Message, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT u.id, u.username, u.email, u.created_at, m.id, m.body, m.created_at
		FROM users u
		LEFT JOIN LATERAL (
			SELECT id, body, created_at FROM messages
			WHERE user_id = u.id AND id > $2 ORDER BY id LIMIT $3
		) m ON true
		WHERE u.id = $1
		ORDER BY m.id`, userID, after, limit)
	if err != nil {
		return User{}, nil, err
	}
	defer rows.Close()
	var u User
	msgs := []Message{}
	found := false
	for rows.Next() {
		var mid *int64
		var body *string
		var at *time.Time
		if err := rows.Scan(&u.ID, &u.Username, &u.Email, &u.CreatedAt, &mid, &body, &at); err != nil {
			return User{}, nil, err
		}
		found = true
		if mid != nil {
			msgs = append(msgs, Message{ID: *mid, Body: *body, CreatedAt: *at})
		}
	}
	if err := rows.Err(); err != nil {
		return User{}, nil, err
	}
	if !found {
		return User{}, nil, pgx.ErrNoRows
	}
	return u, msgs, nil
}
