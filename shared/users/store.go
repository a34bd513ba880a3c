// Package users is the course's users resource: a Postgres store with keyset pagination
// and a join, its migrations (schema and deterministic seed), its HTTP handlers, and (from
// stage 05) writes and a cache-aside in front of the reads.
package users

import (
	"context"
	"embed"
	"errors"
	"io/fs"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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

// Profile is a user with their activity: how many messages they wrote and where that
// puts them among all users (1 = most messages). The rank reads every user's message
// count: the expensive read a cache is for.
type Profile struct {
	User
	Messages int64 `json:"messages"`
	Rank     int64 `json:"rank"`
}

// Store reads and writes users in Postgres. Every query is parameterised.
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

// Profile returns one user's profile, or pgx.ErrNoRows. Its cost is the rank: a count of
// every user's messages (tens of milliseconds here), however few the user has.
func (s *Store) Profile(ctx context.Context, id int64) (Profile, error) {
	var p Profile
	err := s.pool.QueryRow(ctx, `
		SELECT u.id, u.username, u.email, u.created_at, m.n,
		       1 + (SELECT count(*) FROM (
		              SELECT 1 FROM messages GROUP BY user_id HAVING count(*) > m.n) more)
		FROM users u
		CROSS JOIN LATERAL (SELECT count(*) AS n FROM messages WHERE user_id = u.id) m
		WHERE u.id = $1`, id,
	).Scan(&p.ID, &p.Username, &p.Email, &p.CreatedAt, &p.Messages, &p.Rank)
	return p, err
}

// Create inserts a user; a taken username or email is ErrTaken.
func (s *Store) Create(ctx context.Context, in Input) (User, error) {
	var u User
	err := s.pool.QueryRow(ctx,
		`INSERT INTO users (username, email) VALUES ($1, $2) RETURNING id, username, email, created_at`,
		in.Username, in.Email,
	).Scan(&u.ID, &u.Username, &u.Email, &u.CreatedAt)
	return u, taken(err)
}

// Update replaces a user's username and email: pgx.ErrNoRows if there is no such user,
// ErrTaken if another user has either.
func (s *Store) Update(ctx context.Context, id int64, in Input) (User, error) {
	var u User
	err := s.pool.QueryRow(ctx,
		`UPDATE users SET username = $2, email = $3 WHERE id = $1 RETURNING id, username, email, created_at`,
		id, in.Username, in.Email,
	).Scan(&u.ID, &u.Username, &u.Email, &u.CreatedAt)
	return u, taken(err)
}

// Delete removes a user and, by the foreign key's cascade, their messages, and says how
// many messages went (other users' ranks change when that is not zero); pgx.ErrNoRows if
// there is no such user. RETURNING's subquery sees the messages as they were before the
// statement, so before the cascade.
func (s *Store) Delete(ctx context.Context, id int64) (messages int64, err error) {
	err = s.pool.QueryRow(ctx,
		`DELETE FROM users WHERE id = $1 RETURNING (SELECT count(*) FROM messages WHERE user_id = $1)`, id,
	).Scan(&messages)
	return messages, err
}

// ErrTaken is a write refused because another user has that username or email.
type ErrTaken struct{ Field string }

func (e ErrTaken) Error() string { return e.Field + " is already taken" }

// taken turns a unique violation into ErrTaken naming the field.
func taken(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		field := "username"
		if strings.Contains(pgErr.ConstraintName, "email") {
			field = "email"
		}
		return ErrTaken{Field: field}
	}
	return err
}
