package users

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sysdesign-course/course/shared/cacheaside"
)

// fakeStore is Postgres in memory: users, their message counts, ranks computed like the
// Store's query, and a count of the reads that reached it.
type fakeStore struct {
	mu        sync.Mutex
	users     map[int64]User
	messages  map[int64]int64
	nextID    int64
	reads     map[string]int // "get" and "profile" reads that missed the cache
	deleteErr error          // returned by Delete after it deleted (an unknown outcome)
	updateErr error          // returned by Update after it updated
}

func newFakeStore() *fakeStore {
	f := &fakeStore{users: map[int64]User{}, messages: map[int64]int64{}, nextID: 1, reads: map[string]int{}}
	for _, m := range []int64{5, 3, 1} { // users 1, 2, 3 rank 1, 2, 3
		f.add(m)
	}
	return f
}

func (f *fakeStore) add(messages int64) User {
	u := User{ID: f.nextID, Username: "u", Email: "u@example.com"}
	f.users[u.ID], f.messages[u.ID] = u, messages
	f.nextID++
	return u
}

// read counts a read of kind that reached the store and looks id up; f.mu must be held.
func (f *fakeStore) read(kind string, id int64) (User, error) {
	f.reads[kind]++
	u, ok := f.users[id]
	if !ok {
		return User{}, pgx.ErrNoRows
	}
	return u, nil
}

func (f *fakeStore) Get(_ context.Context, id int64) (User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.read("get", id)
}

func (f *fakeStore) Profile(_ context.Context, id int64) (Profile, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	u, err := f.read("profile", id)
	if err != nil {
		return Profile{}, err
	}
	p := Profile{User: u, Messages: f.messages[id], Rank: 1}
	for other, n := range f.messages {
		if other != id && n > p.Messages {
			p.Rank++
		}
	}
	return p, nil
}

func (f *fakeStore) List(context.Context, int64, int) ([]User, error) {
	return nil, errors.New("not used")
}

func (f *fakeStore) Messages(context.Context, int64, int64, int) (User, []Message, error) {
	return User{}, nil, errors.New("not used")
}

func (f *fakeStore) Create(_ context.Context, in Input) (User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	u := f.add(0)
	u.Username, u.Email = in.Username, in.Email
	f.users[u.ID] = u
	return u, nil
}

func (f *fakeStore) Update(_ context.Context, id int64, in Input) (User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	u, ok := f.users[id]
	if !ok {
		return User{}, pgx.ErrNoRows
	}
	u.Username, u.Email = in.Username, in.Email
	f.users[id] = u
	return u, f.updateErr
}

func (f *fakeStore) Delete(_ context.Context, id int64) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.users[id]; !ok {
		return 0, pgx.ErrNoRows
	}
	n := f.messages[id]
	delete(f.users, id)
	delete(f.messages, id)
	return n, f.deleteErr
}

// misses says how many reads of kind ("get" or "profile") reached the store.
func (f *fakeStore) misses(kind string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads[kind]
}

func newTestCached(t *testing.T) (*Cached, *fakeStore, *miniredis.Miniredis) {
	t.Helper()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	cfg := cacheaside.Config{Enabled: true, TTL: time.Minute, Jitter: 0.1, NotFoundTTL: 5 * time.Second,
		LoadTimeout: 2 * time.Second, BreakAfter: 3, BreakFor: 50 * time.Millisecond, RetryEvery: 20 * time.Millisecond}
	store := newFakeStore()
	c, err := newCached(store, rdb, cfg, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c, store, mr
}

// rank reads id's profile and returns its rank.
func rank(t *testing.T, c *Cached, id int64) int64 {
	t.Helper()
	p, err := c.Profile(context.Background(), id)
	require.NoError(t, err)
	return p.Rank
}

func TestCachedReadsThroughRedis(t *testing.T) {
	c, store, _ := newTestCached(t)
	ctx := context.Background()
	for range 3 {
		u, err := c.Get(ctx, 1)
		require.NoError(t, err)
		assert.EqualValues(t, 1, u.ID)
		assert.EqualValues(t, 2, rank(t, c, 2))
	}
	assert.Equal(t, 1, store.misses("get"))
	assert.Equal(t, 1, store.misses("profile"))
	assert.Len(t, c.Caches(), 2)
}

// Deleting a user who had messages moves other users' ranks: the profiles' generation
// moves, so no profile cached before the delete is served after it.
func TestCachedDeleteOfUserWithMessagesMovesTheProfilesGeneration(t *testing.T) {
	c, store, mr := newTestCached(t)
	ctx := context.Background()
	assert.EqualValues(t, 2, rank(t, c, 2))
	assert.EqualValues(t, 3, rank(t, c, 3))
	_, err := c.Get(ctx, 2)
	require.NoError(t, err)
	gen, _ := mr.Get("profiles:gen") // absent until the first bump

	require.NoError(t, c.Delete(ctx, 1)) // 5 messages: everyone below moves up

	after, err := mr.Get("profiles:gen")
	require.NoError(t, err)
	assert.NotEqual(t, gen, after, "the profiles' generation moved")
	assert.EqualValues(t, 1, rank(t, c, 2), "user 2's profile is not the cached rank 2")
	assert.EqualValues(t, 2, rank(t, c, 3), "user 3's profile is not the cached rank 3")
	assert.Equal(t, 4, store.misses("profile"))
	_, err = c.Profile(ctx, 1)
	assert.ErrorIs(t, err, pgx.ErrNoRows)
	_, err = c.Get(ctx, 1)
	assert.ErrorIs(t, err, pgx.ErrNoRows, "the deleted user is gone from the users cache")
	_, err = c.Get(ctx, 2)
	require.NoError(t, err)
	assert.Equal(t, 2, store.misses("get"), "only profiles hang on other users: user 2 is still cached")
}

// A user without messages changes no one's rank: other profiles stay cached.
func TestCachedDeleteOfUserWithoutMessagesKeepsOtherProfiles(t *testing.T) {
	c, store, mr := newTestCached(t)
	ctx := context.Background()
	u, err := c.Create(ctx, Input{Username: "new", Email: "new@example.com"})
	require.NoError(t, err)
	assert.EqualValues(t, 2, rank(t, c, 2))
	assert.EqualValues(t, 4, rank(t, c, u.ID))

	require.NoError(t, c.Delete(ctx, u.ID))

	assert.False(t, mr.Exists("profiles:gen"), "no generation bump")
	assert.EqualValues(t, 2, rank(t, c, 2))
	assert.Equal(t, 2, store.misses("profile"), "user 2's profile was a hit")
	_, err = c.Profile(ctx, u.ID)
	assert.ErrorIs(t, err, pgx.ErrNoRows, "the deleted user's own profile went")
}

// A delete whose outcome is unknown (an error after the commit) may have moved ranks;
// one that found no user moved nothing.
func TestCachedDeleteWithUnknownOutcomeMovesTheProfilesGeneration(t *testing.T) {
	c, store, mr := newTestCached(t)
	ctx := context.Background()
	assert.EqualValues(t, 3, rank(t, c, 3))

	assert.ErrorIs(t, c.Delete(ctx, 99), pgx.ErrNoRows)
	assert.False(t, mr.Exists("profiles:gen"), "no such user: nothing moved")

	store.deleteErr = errors.New("connection reset after commit")
	assert.Error(t, c.Delete(ctx, 2))
	assert.True(t, mr.Exists("profiles:gen"))
	assert.EqualValues(t, 2, rank(t, c, 3), "user 3's cached rank 3 is not served")
}

// A "not found" cached for an id is dropped when a user is created with it.
func TestCachedCreateDropsACachedNotFound(t *testing.T) {
	c, _, _ := newTestCached(t)
	ctx := context.Background()
	_, err := c.Get(ctx, 4)
	require.ErrorIs(t, err, pgx.ErrNoRows)
	_, err = c.Profile(ctx, 4)
	require.ErrorIs(t, err, pgx.ErrNoRows)

	u, err := c.Create(ctx, Input{Username: "new", Email: "new@example.com"})
	require.NoError(t, err)
	require.EqualValues(t, 4, u.ID)

	got, err := c.Get(ctx, 4)
	require.NoError(t, err)
	assert.Equal(t, "new", got.Username)
	assert.EqualValues(t, 4, rank(t, c, 4))
}

// An update invalidates the user and their profile, even when it reports an error (it may
// have committed).
func TestCachedUpdateInvalidatesEvenWhenItFails(t *testing.T) {
	c, store, _ := newTestCached(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		err  error
	}{{"renamed", nil}, {"renamed-again", errors.New("connection reset after commit")}} {
		_, err := c.Get(ctx, 2)
		require.NoError(t, err)
		_, err = c.Profile(ctx, 2)
		require.NoError(t, err)

		store.updateErr = tc.err
		_, err = c.Update(ctx, 2, Input{Username: tc.name, Email: tc.name + "@example.com"})
		require.Equal(t, tc.err, err)

		u, err := c.Get(ctx, 2)
		require.NoError(t, err)
		assert.Equal(t, tc.name, u.Username)
		p, err := c.Profile(ctx, 2)
		require.NoError(t, err)
		assert.Equal(t, tc.name, p.Username)
	}
}
