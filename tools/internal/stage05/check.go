// Package stage05 proves stage 05's concepts on a live stack: users are a REST resource
// with validation; reads through the cache never return a value older than the last
// acknowledged write, on any replica; skewed load is served mostly from Redis; losing
// Redis fails no request; and every acknowledged write is in Postgres.
package stage05

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sysdesign-course/course/tools/internal/bench"
	"github.com/sysdesign-course/course/tools/internal/check"
	"github.com/sysdesign-course/course/tools/internal/load"
)

// Stack is what the check needs from Docker: the replicas whose metrics it reads, Redis
// to stop and start, and psql in the postgres container. *fault.Docker is one.
type Stack interface {
	Replicas(ctx context.Context, service string) ([]string, error)
	Stop(ctx context.Context, service string) error
	Start(ctx context.Context, service string) error
	Pause(ctx context.Context, service string) error
	Unpause(ctx context.Context, service string) error
	WaitHealthy(ctx context.Context, service string) error
	Output(ctx context.Context, service string, cmd ...string) (string, error)
}

// Params size the steps.
type Params struct {
	Service, Redis, Postgres string
	Admin                    func(host string) string // a replica's admin listener (metrics, cache switch)
	Users                    int                      // users written concurrently in read-after-write
	Readers                  int
	RAWFor                   time.Duration
	Workers                  int
	Rate                     float64 // req/s of the skewed load
	Warmup, Window           time.Duration
	Outage                   time.Duration
	Refill                   time.Duration // after Redis is back: breakers close (CACHE_BREAK_FOR) and hot keys refill
	Pause                    time.Duration // how long Redis stays paused (slow: connected, silent)
	SlowBound                time.Duration // p99 a request may take while Redis is paused
	MinHitRatio              float64
}

// Defaults are what `make stage 5 check` uses.
var Defaults = Params{
	Service: "server", Redis: "redis", Postgres: "postgres",
	Admin: check.AdminURL,
	Users: 8, Readers: 12, RAWFor: 5 * time.Second,
	Workers: 16, Rate: 400, Warmup: time.Second, Window: 3 * time.Second, Outage: 4 * time.Second, Refill: 2 * time.Second,
	Pause: 3 * time.Second, SlowBound: time.Second,
	MinHitRatio: 0.8,
}

const (
	doc      = "docs/05-cache.md"
	hotUsers = 100
	allUsers = 10000
)

// Steps returns stage 05's check. The steps share a ledger of acknowledged writes, which
// the last one looks for in Postgres.
func Steps(p Params, s Stack) []check.Step {
	led := &ledger{run: strconv.FormatInt(time.Now().UnixMilli()%1e9, 36), last: map[int64]state{}}
	return []check.Step{
		{
			Name: "crud", Title: "users are a REST resource: POST creates (201), GET reads, PUT updates, DELETE removes (204), then 404",
			Doc:  doc + "#the-users-resource",
			Hint: "the routes are in shared/users/handlers.go (RegisterWrites); the stage-05 server registers them in stages/05-cache/server/main.go.",
			Run:  func(ctx context.Context, e *check.Env) check.Verdict { return crud(ctx, e, p, s, led) },
		},
		{
			Name: "bad-input", Title: "bad bodies and ids get a 4xx with a JSON error (duplicates 409, unknown ids 404), never a 5xx",
			Doc:  doc + "#the-users-resource",
			Hint: "input is decoded and validated in shared/users/input.go; unique violations become 409 in store.go (taken) and handlers.go (dbError).",
			Run:  func(ctx context.Context, e *check.Env) check.Verdict { return badInput(ctx, e) },
		},
		{
			Name: "read-after-write", Title: "with concurrent writers and readers on every replica, no read returns a value older than the last acknowledged write, and a deleted user is 404 at once",
			Doc:  doc + "#invalidation-delete-after-the-write",
			Hint: "a write must commit in Postgres and then delete the key (and its lease) before it is acknowledged; a fill must not land after a delete: see Invalidate and loadAndFill in shared/cacheaside/aside.go.",
			Run:  func(ctx context.Context, e *check.Env) check.Verdict { return readAfterWrite(ctx, e, p, s, led) },
		},
		{
			Name: "rank-after-delete", Title: "deleting a user who had messages moves other users' ranks at once, on every replica",
			Doc:  doc + "#ranks-a-value-that-depends-on-other-rows",
			Hint: "a profile's rank depends on every user's message count: Cached.Delete must move the profiles cache to a new generation (InvalidateAll) when the deleted user had messages; see shared/users/cached.go.",
			Run:  func(ctx context.Context, e *check.Env) check.Verdict { return rankAfterDelete(ctx, e, p, s, led) },
		},
		{
			Name: "hit-ratio", Title: fmt.Sprintf("under skewed load (most reads on %d hot users) at least %.0f%% of reads are cache hits", hotUsers, 100*p.MinHitRatio),
			Doc:  doc + "#cache-aside",
			Hint: "reads must go through the cache (Cached.Get in shared/users/cached.go) and fill it on a miss; check the cache is on (make stage 5 cache on) and Redis is up.",
			Run:  func(ctx context.Context, e *check.Env) check.Verdict { return hitRatio(ctx, e, p, s, led) },
		},
		{
			Name: "redis-outage", Title: "with Redis stopped under load no request fails (reads come from Postgres); once it is back the hit ratio recovers",
			Doc:  doc + "#when-the-cache-dies",
			Hint: "a Redis error must fall back to the source, never to a 5xx: see Get and the circuit breaker in shared/cacheaside/aside.go, and the timeouts in shared/redisdb.",
			Run:  func(ctx context.Context, e *check.Env) check.Verdict { return redisOutage(ctx, e, p, s, led) },
		},
		{
			Name: "redis-slow", Title: fmt.Sprintf("with Redis paused (connected, silent) no request fails, and 99%% of them take under %s: reads come from Postgres", p.SlowBound),
			Doc:  doc + "#when-the-cache-dies",
			Hint: "a slow Redis must cost a request at most a short read timeout, and a circuit breaker must stop paying even that: see the timeouts in shared/redisdb and the breaker in shared/cacheaside/aside.go.",
			Run:  func(ctx context.Context, e *check.Env) check.Verdict { return redisSlow(ctx, e, p, s, led) },
		},
		{
			Name: "writes-durable", Title: "every write acknowledged during the check is in Postgres",
			Doc:  doc + "#invalidation-delete-after-the-write",
			Hint: "a write is acknowledged only after Postgres committed it; the cache only ever holds copies.",
			Run:  func(ctx context.Context, e *check.Env) check.Verdict { return writesDurable(ctx, e, p, s, led) },
		},
	}
}

// user is the resource as the API returns it.
type user struct {
	ID       int64  `json:"id"`
	Username string `json:"username"`
	Email    string `json:"email"`
}

// state is what Postgres must hold for an id after the acknowledged writes: a username
// and email, or nothing.
type state struct {
	username, email string
	deleted         bool
}

// ledger records every acknowledged write; last holds each id's final state.
type ledger struct {
	run   string
	mu    sync.Mutex
	last  map[int64]state
	acked int
}

func (l *ledger) ack(id int64, s state) {
	l.mu.Lock()
	l.last[id] = s
	l.acked++
	l.mu.Unlock()
}

// cleanUp deletes the users the check created and left in place (best effort).
func (l *ledger) cleanUp(ctx context.Context, e *check.Env) {
	l.mu.Lock()
	var paths []string
	for id, st := range l.last {
		if !st.deleted && strings.HasPrefix(st.username, "chk"+l.run) {
			paths = append(paths, "/users/"+strconv.FormatInt(id, 10))
		}
	}
	l.mu.Unlock()
	for _, path := range paths {
		_, _ = e.Do(ctx, "clean-up", http.MethodDelete, path)
	}
}

func (l *ledger) name(i, version int) string { return fmt.Sprintf("chk%s-u%d-v%d", l.run, i, version) }

func body(username, email string) string {
	b, _ := json.Marshal(map[string]string{"username": username, "email": email})
	return string(b)
}

// seeded is the body that restores seeded user u (shared/users/migrations/00002_seed.sql).
func seeded(u int) (string, string) {
	name := fmt.Sprintf("user%05d", u)
	return name, name + "@example.com"
}

func decode(r *check.Response) (user, error) {
	var u user
	err := json.Unmarshal(r.Body, &u)
	return u, err
}

func crud(ctx context.Context, e *check.Env, p Params, s Stack, led *ledger) check.Verdict {
	replicas, v, ok := check.AwaitRotation(ctx, e, s, p.Service, check.Settled.Within)
	if !ok {
		return v
	}
	expect := func(what string, r *check.Response, err error, status int) string {
		switch {
		case err != nil:
			return fmt.Sprintf("%s: no answer (%s)", what, load.Classify(err))
		case r.Status != status:
			return fmt.Sprintf("%s: %d %s", what, r.Status, check.Short(r.Body))
		}
		return ""
	}
	name, mail := led.name(0, 0), led.name(0, 0)+"@example.com"
	r, err := e.Send(ctx, "crud", http.MethodPost, "/users", body(name, mail))
	if bad := expect("POST /users", r, err, http.StatusCreated); bad != "" {
		return check.Failed("POST /users answers 201 Created with the new user", bad)
	}
	u, err := decode(r)
	if err != nil || u.ID < 1 || u.Username != name || u.Email != mail {
		return check.Failed("201 with the user as JSON (id, username, email)", "201 "+check.Short(r.Body))
	}
	led.ack(u.ID, state{username: name, email: mail})
	path := "/users/" + strconv.FormatInt(u.ID, 10)
	if loc := r.Header.Get("Location"); loc != path {
		return check.Failed("a Location header naming "+path, fmt.Sprintf("Location: %q", loc))
	}
	if r, err = e.Get(ctx, "crud", path); err != nil || r.Status != 200 || !strings.Contains(string(r.Body), name) {
		return check.Failed("GET "+path+" returns the new user", statusOf(r, err))
	}
	name2 := led.name(0, 1)
	r, err = e.Send(ctx, "crud", http.MethodPut, path, body(name2, mail))
	if bad := expect("PUT "+path, r, err, 200); bad != "" {
		return check.Failed("PUT "+path+" answers 200 with the updated user", bad)
	}
	led.ack(u.ID, state{username: name2, email: mail})
	if bad := everyReplica(ctx, e, replicas, path, func(r *check.Response) bool {
		return r.Status == 200 && strings.Contains(string(r.Body), name2)
	}); bad != "" {
		return check.Failed("every replica's GET after the PUT returns "+name2, bad)
	}
	if r, err = e.Get(ctx, "crud", path+"/profile"); err != nil || r.Status != 200 || !strings.Contains(string(r.Body), `"rank"`) {
		return check.Failed("GET "+path+"/profile returns the user with messages and rank", statusOf(r, err))
	}
	r, err = e.Do(ctx, "crud", http.MethodDelete, path)
	if bad := expect("DELETE "+path, r, err, http.StatusNoContent); bad != "" {
		return check.Failed("DELETE "+path+" answers 204 No Content", bad)
	}
	led.ack(u.ID, state{deleted: true})
	if bad := everyReplica(ctx, e, replicas, path, func(r *check.Response) bool { return r.Status == http.StatusNotFound }); bad != "" {
		return check.Failed("404 for the deleted user, on every replica", bad)
	}
	for _, req := range []check.Request{check.Get(path + "/profile"), check.Delete(path), check.PutJSON(path, body(name, mail))} {
		r, err = e.Send(ctx, "crud", req.Method, req.Path, req.Body)
		if bad := expect(req.Method+" "+req.Path+" after DELETE", r, err, http.StatusNotFound); bad != "" {
			return check.Failed("404 for the deleted user", bad)
		}
	}

	// Create after a cached 404: every replica has just been told id+1 does not exist; the
	// next POST should get that id, and then every replica must serve it.
	next := "/users/" + strconv.FormatInt(u.ID+1, 10)
	if bad := everyReplica(ctx, e, replicas, next, func(r *check.Response) bool { return r.Status == http.StatusNotFound }); bad != "" {
		return check.Failed("404 for "+next+", not created yet", bad)
	}
	name3 := led.name(0, 2)
	r, err = e.Send(ctx, "crud", http.MethodPost, "/users", body(name3, name3+"@example.com"))
	if bad := expect("POST /users", r, err, http.StatusCreated); bad != "" {
		return check.Failed("POST /users answers 201 Created", bad)
	}
	u3, _ := decode(r)
	led.ack(u3.ID, state{username: name3, email: name3 + "@example.com"})
	created := "not checked: another client took that id"
	if u3.ID == u.ID+1 {
		if bad := everyReplica(ctx, e, replicas, next, func(r *check.Response) bool { return r.Status == 200 }); bad != "" {
			return check.Failed("every replica serves a user created after its id was read as 404 (the cached not-found is deleted)", bad)
		}
		created = "served at once everywhere"
	}
	if r, err = e.Do(ctx, "crud", http.MethodDelete, "/users/"+strconv.FormatInt(u3.ID, 10)); err == nil && r.Status == http.StatusNoContent {
		led.ack(u3.ID, state{deleted: true})
	}
	return check.Passed("user %d created (201, Location), read, updated, read on all %d replicas, deleted (204), then 404 everywhere for GET, profile, DELETE and PUT; user %d created after its id was read as 404: %s",
		u.ID, len(replicas), u3.ID, created)
}

// everyReplica GETs path through the balancer until every replica has answered (at most
// 12 tries per replica) and returns "" if each answer satisfied ok, else what was wrong.
func everyReplica(ctx context.Context, e *check.Env, replicas []string, path string, ok func(*check.Response) bool) string {
	seen := map[string]int{}
	for range 12 * len(replicas) {
		r, err := e.Get(ctx, "crud", path)
		if err != nil || !ok(r) {
			return fmt.Sprintf("GET %s: %s from %s", path, statusOf(r, err), servedBy(r))
		}
		seen[r.Header.Get("X-Served-By")]++
		if len(absent(replicas, seen)) == 0 {
			return ""
		}
	}
	return fmt.Sprintf("GET %s never reached %s", path, strings.Join(absent(replicas, seen), ", "))
}

func badInput(ctx context.Context, e *check.Env) check.Verdict {
	long := strings.Repeat("a", 65)
	reqs := []check.Request{
		check.PostJSON("/users", `not json`),
		check.PostJSON("/users", `[1, 2]`),
		check.PostJSON("/users", `{"username": 5, "email": "a@example.com"}`),
		check.PostJSON("/users", `{"username": "only-a-name"}`),
		check.PostJSON("/users", `{"email": "only@example.com"}`),
		check.PostJSON("/users", body(long, "long@example.com")),
		check.PostJSON("/users", body("longmail", strings.Repeat("m", 250)+"@example.com")),
		check.PostJSON("/users", body("has space", "space@example.com")),
		check.PostJSON("/users", body("badmail", "not-an-address")),
		check.PostJSON("/users", `{"username": "x", "email": "x@example.com", "admin": true}`),
		check.PostJSON("/users", `{"username": "x", "email": "x@example.com"} {}`),
		check.PostJSON("/users", `{"username": "`+strings.Repeat("z", 5000)+`", "email": "z@example.com"}`),
		check.Post("/users"),
		check.PostJSON("/users", body("user00001", "someone-new@example.com")).Wants(http.StatusConflict), // taken username
		check.PostJSON("/users", body("someone-new", "user00001@example.com")).Wants(http.StatusConflict), // taken email
		check.PutJSON("/users/2", body("user00001", "user00002@example.com")).Wants(http.StatusConflict),  // taken by user 1
		check.PutJSON("/users/abc", body("x", "x@example.com")),
		check.PutJSON("/users/0", body("x", "x@example.com")),
		check.PutJSON("/users/9223372036854775807", body("x", "x@example.com")).Wants(http.StatusNotFound),
		check.PutJSON("/users/3", `{"username": null, "email": "x@example.com"}`),
		check.Delete("/users/-1"),
		check.Delete("/users/9223372036854775807").Wants(http.StatusNotFound),
		check.Get("/users/99999999999999999999"),
		check.Get("/users/x/profile"),
		check.Get("/users/9223372036854775807/profile").Wants(http.StatusNotFound),
	}
	if wrong := check.ClientErrors(ctx, e, reqs); len(wrong) > 0 {
		return check.Failed("a 4xx with a JSON error body for each of the bad requests",
			fmt.Sprintf("%d of %d were not: %s", len(wrong), len(reqs), strings.Join(wrong, "; ")))
	}
	return check.Passed("%d bad requests (malformed or wrong-typed JSON, missing, oversize or unknown fields, taken username or email, bad or unknown ids) all answered 4xx with a JSON error", len(reqs))
}

// version reads the v<N> suffix of a username written by read-after-write.
func version(username string) (int, bool) {
	i := strings.LastIndex(username, "-v")
	if i < 0 {
		return 0, false
	}
	v, err := strconv.Atoi(username[i+2:])
	return v, err == nil
}

// deleted is the acknowledged "version" of a deleted user: every later read must be 404.
const deleted = 1 << 30

func readAfterWrite(ctx context.Context, e *check.Env, p Params, s Stack, led *ledger) check.Verdict {
	replicas, v, ok := check.AwaitRotation(ctx, e, s, p.Service, check.Settled.Within)
	if !ok {
		return v
	}
	ids := make([]int64, p.Users)
	acked := make([]int64, p.Users)   // last acknowledged version per user, read before each GET
	deleting := make([]bool, p.Users) // a DELETE was sent: a 404 may come before its 204 does
	var ackMu sync.RWMutex
	for i := range ids {
		name := led.name(i+1, 0)
		r, err := e.Send(ctx, "writes", http.MethodPost, "/users", body(name, name+"@example.com"))
		if err != nil || r.Status != http.StatusCreated {
			return check.Failed("POST /users creates the test users", statusOf(r, err))
		}
		u, err := decode(r)
		if err != nil {
			return check.Failed("201 with the user as JSON", check.Short(r.Body))
		}
		ids[i] = u.ID
		led.ack(u.ID, state{username: name, email: name + "@example.com"})
	}
	before, scrapeErr := scrapeReplicas(ctx, e.Client, p, replicas) // for the summary only

	var mu sync.Mutex
	var stale, errs []string
	reads, writes := 0, 0
	served := map[string]int{}
	note := func(list *[]string, msg string) {
		mu.Lock()
		*list = append(*list, msg)
		mu.Unlock()
	}
	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for reader := range p.Readers {
		// Most readers read users; a sixth read profiles, whose slow loads (the rank) leave
		// the widest window for a fill that lands late.
		profiles := reader%6 == 5
		wg.Go(func() {
			for rctx.Err() == nil {
				i := rand.IntN(len(ids))
				ackMu.RLock()
				floor := acked[i]
				ackMu.RUnlock()
				path := "/users/" + strconv.FormatInt(ids[i], 10)
				if profiles {
					path += "/profile"
				}
				r, err := e.Get(rctx, "reads", path)
				if rctx.Err() != nil {
					return
				}
				if err != nil {
					note(&errs, "GET: "+load.Classify(err))
					continue
				}
				host := r.Header.Get("X-Served-By")
				ackMu.RLock()
				goingAway := deleting[i]
				ackMu.RUnlock()
				mu.Lock()
				reads++
				served[host]++
				mu.Unlock()
				switch {
				case floor == deleted && r.Status != http.StatusNotFound:
					note(&stale, fmt.Sprintf("user %d answered %d from %s after its DELETE was acknowledged", ids[i], r.Status, host))
				case floor == deleted, r.Status == http.StatusNotFound && goingAway:
				case r.Status != http.StatusOK:
					note(&errs, fmt.Sprintf("GET %s: %d %s", path, r.Status, check.Short(r.Body)))
				default:
					u, _ := decode(r)
					if v, ok := version(u.Username); !ok || int64(v) < floor {
						note(&stale, fmt.Sprintf("user %d read as %q from %s after v%d was acknowledged", ids[i], u.Username, host, floor))
					}
				}
			}
		})
	}
	// One writer per user: each PUT carries the next version; a version counts as
	// acknowledged once its 200 is in. At the end every user but the first is deleted: the
	// first one's last version must then be in Postgres (writes-durable looks, then
	// deletes it), so a write acknowledged from Redis alone cannot pass.
	var writers sync.WaitGroup
	for i := range ids {
		writers.Go(func() {
			path := "/users/" + strconv.FormatInt(ids[i], 10)
			deadline := time.Now().Add(p.RAWFor)
			for v := 1; time.Now().Before(deadline) && ctx.Err() == nil; v++ {
				name := led.name(i+1, v)
				r, err := e.Send(ctx, "writes", http.MethodPut, path, body(name, name+"@example.com"))
				if err != nil || r.Status != http.StatusOK {
					note(&errs, fmt.Sprintf("PUT %s: %s", path, statusOf(r, err)))
					return
				}
				led.ack(ids[i], state{username: name, email: name + "@example.com"})
				ackMu.Lock()
				acked[i] = int64(v)
				ackMu.Unlock()
				mu.Lock()
				writes++
				mu.Unlock()
				time.Sleep(time.Duration(10+rand.IntN(60)) * time.Millisecond) // let readers hit the cached copy
			}
			if i == 0 {
				return
			}
			ackMu.Lock()
			deleting[i] = true
			ackMu.Unlock()
			r, err := e.Do(ctx, "writes", http.MethodDelete, path)
			if err != nil || r.Status != http.StatusNoContent {
				note(&errs, fmt.Sprintf("DELETE %s: %s", path, statusOf(r, err)))
				return
			}
			led.ack(ids[i], state{deleted: true})
			ackMu.Lock()
			acked[i] = deleted
			ackMu.Unlock()
		})
	}
	// Writers are never cut off: a write whose answer was lost would leave the ledger
	// unsure of what Postgres holds. Readers go on reading the deleted users a little longer.
	writers.Wait()
	time.Sleep(500 * time.Millisecond)
	stop()
	wg.Wait()
	hits := "cache hits not counted"
	if after, err := scrapeReplicas(ctx, e.Client, p, replicas); err == nil && scrapeErr == nil {
		hits = fmt.Sprintf("%.0f cache hits", bench.Sum(after, "cache_requests_total", `result="hit"`)-bench.Sum(before, "cache_requests_total", `result="hit"`))
	}

	if len(stale) > 0 {
		return check.Failed("every read at least as new as the last write acknowledged before it was sent; 404 once deleted",
			fmt.Sprintf("%d stale reads of %d (during %d writes), e.g. %s", len(stale), reads, writes, strings.Join(first(stale, 3), "; ")))
	}
	if len(errs) > 0 {
		return check.Failed("no failed reads or writes", fmt.Sprintf("%d failed, e.g. %s", len(errs), strings.Join(first(errs, 3), "; ")))
	}
	if missing := absent(replicas, served); len(missing) > 0 {
		return check.Failed("reads served by every replica ("+strings.Join(replicas, ", ")+")",
			fmt.Sprintf("none from %s (served: %v)", strings.Join(missing, ", "), served))
	}
	if writes == 0 || reads == 0 {
		return check.NotProven("no write or no read completed (%d writes, %d reads)", writes, reads)
	}
	return check.Passed("%d reads of users and profiles (%s) on %d replicas during %d acknowledged writes of %d users, then %d deletes: none stale", reads, hits, len(served), writes, len(ids), len(ids)-1)
}

func servedBy(r *check.Response) string {
	if r == nil {
		return "no replica"
	}
	return r.Header.Get("X-Served-By")
}

// statusOf describes an answer, or the lack of one.
func statusOf(r *check.Response, err error) string {
	if err != nil {
		return "no answer (" + load.Classify(err) + ")"
	}
	return fmt.Sprintf("%d %s", r.Status, check.Short(r.Body))
}

func first(xs []string, n int) []string { return xs[:min(n, len(xs))] }

func absent(replicas []string, served map[string]int) []string {
	var out []string
	for _, r := range replicas {
		if served[r] == 0 {
			out = append(out, r)
		}
	}
	return out
}

// counts are the cache's read outcomes over an interval, summed over replicas and caches.
type counts struct{ hits, total, fromDB float64 }

func (c counts) ratio() float64 {
	if c.total == 0 {
		return 0
	}
	return c.hits / c.total
}

func diff(before, after map[string]float64) counts {
	d := func(labels ...string) float64 {
		return bench.Sum(after, "cache_requests_total", labels...) - bench.Sum(before, "cache_requests_total", labels...)
	}
	return counts{
		hits:   d(`result="hit"`) + d(`result="negative_hit"`),
		total:  d(),
		fromDB: d(`result="redis_error"`) + d(`result="breaker_open"`),
	}
}

// skewed is the check's load: 90 % reads of hot users, 5 % of any user, 5 % writes that
// rewrite a hot user as seeded. failed collects every request that did not succeed.
type skewed struct {
	e      *check.Env
	led    *ledger
	mu     sync.Mutex
	failed map[string]int
	n      int
}

func (l *skewed) op(ctx context.Context) (string, error) {
	var r *check.Response
	var err error
	var what string
	switch x := rand.IntN(100); {
	case x < 5:
		u := rand.IntN(hotUsers) + 1
		name, mail := seeded(u)
		what = "PUT"
		r, err = l.e.Send(ctx, "skewed load", http.MethodPut, fmt.Sprintf("/users/%d", u), body(name, mail))
		if err == nil && r.Status == http.StatusOK {
			l.led.ack(int64(u), state{username: name, email: mail})
		}
	case x < 10:
		what = "GET any"
		r, err = l.e.Get(ctx, "skewed load", fmt.Sprintf("/users/%d", rand.IntN(allUsers)+1))
	default:
		what = "GET hot"
		r, err = l.e.Get(ctx, "skewed load", fmt.Sprintf("/users/%d", rand.IntN(hotUsers)+1))
	}
	if ctx.Err() != nil {
		return "", ctx.Err() // the run's end, not the stack's failure
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n++
	switch {
	case err != nil:
		l.failed[what+": "+load.Classify(err)]++
		return "", err
	case r.Status != http.StatusOK:
		l.failed[fmt.Sprintf("%s: %d", what, r.Status)]++
		return "", load.StatusError{Code: r.Status}
	}
	return r.Header.Get("X-Served-By"), nil
}

func (l *skewed) run(ctx context.Context, p Params, d time.Duration) {
	_, _ = load.Run(ctx, load.Options{Workers: p.Workers, Duration: d, Rate: p.Rate}, l.op)
}

// redisSlow pauses Redis under the skewed load. A paused Redis accepts connections and
// never answers: only the client's own timeouts, and a breaker, keep requests from waiting.
// The load is a fixed number of requests (those of the pause at the check's rate), so
// requests stuck during the pause are measured when they end rather than cut off.
func redisSlow(ctx context.Context, e *check.Env, p Params, s Stack, led *ledger) check.Verdict {
	replicas, v, ok := check.AwaitRotation(ctx, e, s, p.Service, check.Settled.Within)
	if !ok {
		return v
	}
	before, err := scrapeReplicas(ctx, e.Client, p, replicas)
	if err != nil {
		return check.NotProven("cannot read the replicas' metrics: %v", err)
	}
	if err := s.Pause(ctx, p.Redis); err != nil {
		return check.NotProven("could not pause %s: %v", p.Redis, err)
	}
	paused := true
	unpause := func() {
		if paused {
			_ = s.Unpause(context.WithoutCancel(ctx), p.Redis)
			paused = false
		}
	}
	defer unpause() // never leave Redis paused
	l := &skewed{e: e, led: led, failed: map[string]int{}}
	var res *load.Result
	done := make(chan struct{})
	go func() {
		defer close(done)
		res, _ = load.Run(ctx, load.Options{Workers: p.Workers, Requests: int(p.Rate * p.Pause.Seconds()), Duration: p.Pause + 10*time.Second, Rate: p.Rate}, l.op)
	}()
	time.Sleep(p.Pause)
	unpause()
	<-done
	after, err := scrapeReplicas(ctx, e.Client, p, replicas)
	if err != nil {
		return check.NotProven("cannot read the replicas' metrics: %v", err)
	}
	c := diff(before, after)
	if res == nil || res.OK+res.Failed == 0 {
		return check.NotProven("no request completed while Redis was paused")
	}
	p99 := time.Duration(res.Latency.ValueAtQuantile(99)) * time.Microsecond
	worst := time.Duration(res.Latency.Max()) * time.Microsecond
	switch {
	case len(l.failed) > 0:
		return check.Failed("no failed request while Redis is paused (reads from Postgres)",
			fmt.Sprintf("%s of %d requests", check.Counts(l.failed), l.n))
	case p99 > p.SlowBound:
		return check.Failed(fmt.Sprintf("99%% of requests under %s while Redis is paused", p.SlowBound),
			fmt.Sprintf("p99 %s, slowest %s, over %d requests: requests waited for Redis", check.MS(p99), check.MS(worst), l.n))
	case c.fromDB == 0:
		return check.NotProven("no read was counted as served from Postgres because of Redis while it was paused (%.0f reads)", c.total)
	}
	return check.Passed("0 failed of %d requests with Redis paused %s: p99 %s, slowest %s; %.0f reads served from Postgres",
		l.n, p.Pause, check.MS(p99), check.MS(worst), c.fromDB)
}

func hitRatio(ctx context.Context, e *check.Env, p Params, s Stack, led *ledger) check.Verdict {
	replicas, v, ok := check.AwaitRotation(ctx, e, s, p.Service, check.Settled.Within)
	if !ok {
		return v
	}
	l := &skewed{e: e, led: led, failed: map[string]int{}}
	l.run(ctx, p, p.Warmup)
	before, err := scrapeReplicas(ctx, e.Client, p, replicas)
	if err != nil {
		return check.NotProven("cannot read the replicas' metrics: %v", err)
	}
	l.run(ctx, p, p.Window)
	after, err := scrapeReplicas(ctx, e.Client, p, replicas)
	if err != nil {
		return check.NotProven("cannot read the replicas' metrics: %v", err)
	}
	c := diff(before, after)
	switch {
	case len(l.failed) > 0:
		return check.Failed("no failed requests", fmt.Sprintf("%s of %d", check.Counts(l.failed), l.n))
	case c.total == 0:
		return check.Failed("cache_requests_total counting reads on every replica's /metrics",
			fmt.Sprintf("no cache reads counted on %s", strings.Join(replicas, ", ")))
	case c.ratio() < p.MinHitRatio:
		return check.Failed(fmt.Sprintf("at least %.0f%% hits", 100*p.MinHitRatio),
			fmt.Sprintf("%.1f%% (%.0f hits of %.0f reads)", 100*c.ratio(), c.hits, c.total))
	}
	return check.Passed("%.1f%% hits (%.0f of %.0f reads over %d replicas) under %.0f req/s of skewed load with 5%% writes", 100*c.ratio(), c.hits, c.total, len(replicas), p.Rate)
}

func redisOutage(ctx context.Context, e *check.Env, p Params, s Stack, led *ledger) check.Verdict {
	replicas, v, ok := check.AwaitRotation(ctx, e, s, p.Service, check.Settled.Within)
	if !ok {
		return v
	}
	l := &skewed{e: e, led: led, failed: map[string]int{}}
	lctx, stopLoad := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.run(lctx, p, time.Minute) // stopped below
	}()
	restarted := false
	defer func() { // never leave Redis down
		stopLoad()
		<-done
		if !restarted {
			_ = s.Start(context.WithoutCancel(ctx), p.Redis)
		}
	}()

	time.Sleep(p.Warmup)
	before, err := scrapeReplicas(ctx, e.Client, p, replicas)
	if err != nil {
		return check.NotProven("cannot read the replicas' metrics: %v", err)
	}
	if err := s.Stop(ctx, p.Redis); err != nil {
		return check.NotProven("could not stop %s: %v", p.Redis, err)
	}
	time.Sleep(p.Outage)
	down, err := scrapeReplicas(ctx, e.Client, p, replicas)
	if err != nil {
		return check.NotProven("cannot read the replicas' metrics: %v", err)
	}
	during := diff(before, down)
	if err := s.Start(ctx, p.Redis); err != nil {
		return check.NotProven("could not start %s: %v", p.Redis, err)
	}
	restarted = true
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := s.WaitHealthy(wctx, p.Redis); err != nil {
		return check.NotProven("%s did not become healthy again: %v", p.Redis, err)
	}
	time.Sleep(p.Refill)
	mark, err := scrapeReplicas(ctx, e.Client, p, replicas)
	if err != nil {
		return check.NotProven("cannot read the replicas' metrics: %v", err)
	}
	time.Sleep(p.Window)
	end, err := scrapeReplicas(ctx, e.Client, p, replicas)
	if err != nil {
		return check.NotProven("cannot read the replicas' metrics: %v", err)
	}
	back := diff(mark, end)
	stopLoad()
	<-done

	switch {
	case len(l.failed) > 0:
		return check.Failed("no failed request while Redis is down (reads from Postgres)",
			fmt.Sprintf("%s of %d requests", check.Counts(l.failed), l.n))
	case during.fromDB == 0:
		return check.NotProven("no read was counted as served from Postgres because of Redis during the outage (%.0f reads, %.0f hits)", during.total, during.hits)
	case back.ratio() < p.MinHitRatio:
		return check.Failed(fmt.Sprintf("the hit ratio back to at least %.0f%% once Redis is up", 100*p.MinHitRatio),
			fmt.Sprintf("%.1f%% (%.0f hits of %.0f reads) in the %s after a %s refill", 100*back.ratio(), back.hits, back.total, p.Window, p.Refill))
	}
	return check.Passed("0 failed of %d requests; Redis down %s: %.0f reads served from Postgres; back up: %.1f%% hits", l.n, p.Outage, during.fromDB, 100*back.ratio())
}

func writesDurable(ctx context.Context, e *check.Env, p Params, s Stack, led *ledger) check.Verdict {
	defer led.cleanUp(ctx, e)
	led.mu.Lock()
	want := maps.Clone(led.last)
	acked := led.acked
	led.mu.Unlock()
	if len(want) == 0 {
		return check.NotProven("no write was acknowledged during the check")
	}
	ids := make([]string, 0, len(want))
	for id := range want {
		ids = append(ids, strconv.FormatInt(id, 10))
	}
	slices.Sort(ids)
	out, err := psql(ctx, p, s, "SELECT id, username, email FROM users WHERE id IN ("+strings.Join(ids, ",")+")")
	if err != nil {
		return check.NotProven("could not query Postgres: %v", err)
	}
	got := map[int64]state{}
	for line := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		id, _ := strconv.ParseInt(f[0], 10, 64)
		got[id] = state{username: f[1], email: f[2]}
	}
	var wrong []string
	for id, w := range want {
		g, ok := got[id]
		switch {
		case w.deleted && ok:
			wrong = append(wrong, fmt.Sprintf("user %d still there after its acknowledged DELETE", id))
		case !w.deleted && !ok:
			wrong = append(wrong, fmt.Sprintf("user %d missing (last acknowledged: %s)", id, w.username))
		case !w.deleted && g != w:
			wrong = append(wrong, fmt.Sprintf("user %d is %s <%s>, last acknowledged %s <%s>", id, g.username, g.email, w.username, w.email))
		}
	}
	if len(wrong) > 0 {
		slices.Sort(wrong)
		return check.Failed("Postgres holds the last acknowledged state of every user written",
			fmt.Sprintf("%d of %d users differ: %s", len(wrong), len(want), strings.Join(first(wrong, 3), "; ")))
	}
	return check.Passed("%d acknowledged writes to %d users: each user's last acknowledged state is in Postgres (deleted ones absent)", acked, len(want))
}

// psql runs sql in the postgres container (as its own user, so the check needs no
// credentials) and returns the rows, space-separated, one per line.
func psql(ctx context.Context, p Params, s Stack, sql string) (string, error) {
	return s.Output(ctx, p.Postgres, "sh", "-c", `psql -X -A -t -F ' ' -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" -c "$0"`, sql)
}

// profile is GET /users/:id/profile's answer, as far as the check reads it.
type profile struct {
	Username string `json:"username"`
	Messages int64  `json:"messages"`
	Rank     int64  `json:"rank"`
}

// ranks reads path (a profile) through the balancer until every replica has answered and
// returns the rank each gave.
func ranks(ctx context.Context, e *check.Env, replicas []string, path string) (map[string]profile, error) {
	out := map[string]profile{}
	seen := map[string]int{}
	for range 12 * len(replicas) {
		r, err := e.Get(ctx, "ranks", path)
		if err != nil || r.Status != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %s", path, statusOf(r, err))
		}
		var pr profile
		if err := json.Unmarshal(r.Body, &pr); err != nil {
			return nil, fmt.Errorf("GET %s: %s", path, check.Short(r.Body))
		}
		host := r.Header.Get("X-Served-By")
		seen[host]++
		out[host] = pr
		if len(absent(replicas, seen)) == 0 {
			return out, nil
		}
	}
	return nil, fmt.Errorf("GET %s never reached %s", path, strings.Join(absent(replicas, seen), ", "))
}

// rankAfterDelete gives two new users 3 messages and 1 message (with psql: the API writes
// no messages), reads the second one's profile on every replica, so each has it cached,
// deletes the first through the API, and reads again: every replica must rank the second
// one place higher at once.
func rankAfterDelete(ctx context.Context, e *check.Env, p Params, s Stack, led *ledger) check.Verdict {
	replicas, v, ok := check.AwaitRotation(ctx, e, s, p.Service, check.Settled.Within)
	if !ok {
		return v
	}
	var ids [2]int64
	for i := range ids {
		name := led.name(100+i, 0)
		r, err := e.Send(ctx, "ranks", http.MethodPost, "/users", body(name, name+"@example.com"))
		if err != nil || r.Status != http.StatusCreated {
			return check.Failed("POST /users creates the test users", statusOf(r, err))
		}
		u, _ := decode(r)
		ids[i] = u.ID
		led.ack(u.ID, state{username: name, email: name + "@example.com"})
	}
	defer func() { // the second user is the check's to remove
		if r, err := e.Do(ctx, "ranks", http.MethodDelete, "/users/"+strconv.FormatInt(ids[1], 10)); err == nil && r.Status == http.StatusNoContent {
			led.ack(ids[1], state{deleted: true})
		}
	}()
	if _, err := psql(ctx, p, s, fmt.Sprintf(
		"INSERT INTO messages (user_id, body) SELECT %d, 'from the check' FROM generate_series(1, 3); INSERT INTO messages (user_id, body) VALUES (%d, 'from the check')",
		ids[0], ids[1])); err != nil {
		return check.NotProven("could not add messages with psql: %v", err)
	}
	path := "/users/" + strconv.FormatInt(ids[1], 10) + "/profile"
	before, err := ranks(ctx, e, replicas, path)
	if err != nil {
		return check.Failed("the profile of a new user served by every replica", err.Error())
	}
	want := int64(-1)
	for host, pr := range before {
		if pr.Messages != 1 {
			return check.NotProven("replica %s says user %d has %d messages, not the 1 just added", host, ids[1], pr.Messages)
		}
		if want != -1 && pr.Rank != want {
			return check.Failed("every replica ranks a user alike", fmt.Sprintf("ranks before the delete: %v", before))
		}
		want = pr.Rank
	}
	r, err := e.Do(ctx, "ranks", http.MethodDelete, "/users/"+strconv.FormatInt(ids[0], 10))
	if err != nil || r.Status != http.StatusNoContent {
		return check.Failed("DELETE of the user with 3 messages answers 204", statusOf(r, err))
	}
	led.ack(ids[0], state{deleted: true})
	after, err := ranks(ctx, e, replicas, path)
	if err != nil {
		return check.Failed("the profile served by every replica after the delete", err.Error())
	}
	var wrong []string
	for _, host := range replicas {
		if after[host].Rank != want-1 {
			wrong = append(wrong, fmt.Sprintf("%s ranks it %d", host, after[host].Rank))
		}
	}
	if len(wrong) > 0 {
		return check.Failed(fmt.Sprintf("rank %d on every replica, one place up from %d once a user with more messages is deleted", want-1, want),
			strings.Join(wrong, "; "))
	}
	return check.Passed("user %d ranked %d on all %d replicas; after deleting user %d (3 messages): %d everywhere, at once", ids[1], want, len(replicas), ids[0], want-1)
}
