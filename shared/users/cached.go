package users

import (
	"context"
	"log/slog"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/sysdesign-course/course/shared/cacheaside"
	"github.com/sysdesign-course/course/shared/pgdb"
)

// Cached is a Store whose users and profiles are read through Redis (cache-aside), and
// whose writes delete the cached copies after Postgres committed and before the write is
// acknowledged. Lists and message pages are not cached.
//
// Nothing is served older than an acknowledged write, ranks included: a profile's rank
// depends on every user's message count, so deleting a user who had messages moves the
// profiles cache to a new generation (every cached profile becomes a miss). Creating a
// user (no messages) or renaming one changes no one else's rank.
type Cached struct {
	store    source
	users    *cacheaside.Aside[User]
	profiles *cacheaside.Aside[Profile]
}

// source is what Cached reads and writes through: a *Store (a fake in tests, which have
// no Postgres).
type source interface {
	Reader
	Profiler
	Create(ctx context.Context, in Input) (User, error)
	Update(ctx context.Context, id int64, in Input) (User, error)
	Delete(ctx context.Context, id int64) (messages int64, err error)
}

// NewCached puts caches named "users" and "profiles" in front of store.
func NewCached(store *Store, rdb redis.Cmdable, cfg cacheaside.Config, reg prometheus.Registerer, log *slog.Logger) (*Cached, error) {
	return newCached(store, rdb, cfg, reg, log)
}

func newCached(store source, rdb redis.Cmdable, cfg cacheaside.Config, reg prometheus.Registerer, log *slog.Logger) (*Cached, error) {
	u, err := cacheaside.New[User]("users", rdb, pgx.ErrNoRows, cfg, reg, log)
	if err != nil {
		return nil, err
	}
	p, err := cacheaside.New[Profile]("profiles", rdb, pgx.ErrNoRows, cfg, reg, log)
	if err != nil {
		u.Close()
		return nil, err
	}
	return &Cached{store: store, users: u, profiles: p}, nil
}

// Caches are the switches GET and PUT /admin/cache act on.
func (c *Cached) Caches() []cacheaside.Switch { return []cacheaside.Switch{c.users, c.profiles} }

// Close stops the caches' background work.
func (c *Cached) Close() {
	c.users.Close()
	c.profiles.Close()
}

// List is not cached: pages change with every create and delete.
func (c *Cached) List(ctx context.Context, after int64, limit int) ([]User, error) {
	return c.store.List(ctx, after, limit)
}

// Messages is not cached.
func (c *Cached) Messages(ctx context.Context, userID, after int64, limit int) (User, []Message, error) {
	return c.store.Messages(ctx, userID, after, limit)
}

// Get reads a user through the cache.
func (c *Cached) Get(ctx context.Context, id int64) (User, error) {
	return c.users.Get(ctx, key(id), func(ctx context.Context) (User, error) { return c.store.Get(ctx, id) })
}

// Profile reads a profile through the cache.
func (c *Cached) Profile(ctx context.Context, id int64) (Profile, error) {
	return c.profiles.Get(ctx, key(id), func(ctx context.Context) (Profile, error) { return c.store.Profile(ctx, id) })
}

// Create inserts, then deletes any cached "not found" for the new id.
func (c *Cached) Create(ctx context.Context, in Input) (User, error) {
	u, err := c.store.Create(ctx, in)
	if err == nil {
		c.invalidate(ctx, u.ID)
	}
	return u, err
}

// Update writes Postgres, then deletes the cached copies. It deletes even when the
// write failed: a failure after the commit left nothing to say it did not happen, and
// a needless delete costs one miss.
func (c *Cached) Update(ctx context.Context, id int64, in Input) (User, error) {
	u, err := c.store.Update(ctx, id, in)
	c.invalidate(ctx, id)
	return u, err
}

// Delete removes the user from Postgres, then the cached copies; if the user had
// messages, other users' ranks moved, so every cached profile goes too (also when the
// outcome is unknown: a failure after the commit).
func (c *Cached) Delete(ctx context.Context, id int64) error {
	messages, err := c.store.Delete(ctx, id)
	c.invalidate(ctx, id)
	if messages > 0 || (err != nil && !pgdb.IsNotFound(err)) {
		c.profiles.InvalidateAll(ctx)
	}
	return err
}

func (c *Cached) invalidate(ctx context.Context, id int64) {
	c.users.Invalidate(ctx, key(id))
	c.profiles.Invalidate(ctx, key(id))
}

func key(id int64) string { return strconv.FormatInt(id, 10) }
