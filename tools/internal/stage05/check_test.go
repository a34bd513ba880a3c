package stage05

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sysdesign-course/course/shared/httpserver"
	"github.com/sysdesign-course/course/shared/users"
	"github.com/sysdesign-course/course/tools/internal/check"
	"github.com/sysdesign-course/course/tools/internal/check/checktest"
	"github.com/sysdesign-course/course/tools/internal/load"
	"github.com/sysdesign-course/course/tools/internal/report"
)

// The fake is the stage-05 stack in one process: three replicas (the real httpserver, so
// X-Served-By and the JSON errors are the real ones; each with its own admin address for
// its /metrics, which the front never forwards) behind a round-robin front standing in for
// nginx, sharing one "Postgres" (a map with unique usernames and emails, seeded with users
// 1..10000 as shared/users/migrations does) and one "Redis" (a map of copies, with
// not-found markers, that can be stopped). The fake is also the check's Stack.
//
// Its liberties all serve one end: that the correct fake passes on a loaded machine under
// -race, where the shortened steps see only a few hundred requests.
//   - Every seeded user starts cached, as on a stack whose background client has run for a
//     while: only the load's writes then make misses (about 3 % of reads, far from the 20 %
//     a correct server may miss).
//   - compose's Redis restarts empty (no snapshot, no AOF); this one keeps its copies.
//     Refilling 100 hot keys takes a few hundred hot reads: the check's default 1 s warmup
//     at 400 req/s has them, a 300 ms one starved of CPU may not. The recovery the outage
//     step checks (hits come back once Redis does) is still proven: the stuckBreaker and
//     neverFills variants fail it.
//   - A replica's /metrics holds only the cache's counter: the real one also has Go,
//     process and HTTP series, which the check ignores and which, gathered under -race on
//     a busy machine, made each scrape of three replicas cost most of a second.

// flaws are the known-broken variants of the fake; the zero value is a correct server.
type flaws struct {
	racyFill     bool // a miss fills Redis with what it read even if a write deleted the key meanwhile (no lease)
	localCopy    bool // each replica also keeps its own copy for 300 ms, dropped only by its own writes
	neverFills   bool // a miss reads Postgres but never stores the copy: every read is a miss
	outage503    bool // a Redis error is returned to the client as a 503 instead of read from Postgres
	stuckBreaker bool // after a Redis error a replica skips Redis for good: its breaker never closes
	lostPut      bool // PUT answers 200 with the new user but Postgres keeps the old one
	writeBehind  bool // PUT and DELETE are acknowledged once in Redis; Postgres would get them later
	putCacheOnly bool // PUT writes the new user to Redis only; DELETE is correct (see the known gap)
	badInput500  bool // a body that does not decode is an unhandled error: a JSON 500
	stage03      bool // the stage-03 server: reads only, no cache, no Redis in the stack
	dropsNewGets bool // GET /users/:id of a user created during the check drops the connection
	staleRanks   bool // a profile is cached until its own user is written: other users' deletes do not move it
	slowRedis    bool // a paused Redis makes every read wait slowWait (no short timeout, no breaker)
}

// entry is what "Redis" holds for an id: a copy, or the not-found marker.
type entry struct {
	u    users.User
	gone bool
}

const (
	seededUsers = allUsers
	maxBody     = 4 << 10               // shared/users/input.go's limit
	fillDelay   = 60 * time.Millisecond // a racy fill lands 30 to 60 ms after its read
	localFor    = 300 * time.Millisecond
	slowWait    = 1200 * time.Millisecond // longer than Params.SlowBound
)

var seedEpoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

type fake struct {
	flaws
	names    []string
	adminURL map[string]string // replica name -> its admin listener
	front    *httptest.Server  // "nginx"
	replicas []*replica

	mu        sync.Mutex
	store     map[int64]users.User // "Postgres"
	byName    map[string]int64
	byEmail   map[string]int64
	nextID    int64
	cache     map[int64]entry // "Redis"
	redisDown bool
	paused    bool                    // Redis paused: down, and silent rather than refusing
	messages  map[int64]int64         // each user's message count
	byCount   map[int64]int           // how many users have each message count: ranks
	profiles  map[int64]users.Profile // flaws.staleRanks only

	stops, starts, queries atomic.Int32
}

type replica struct {
	f          *fake
	srvHandler http.Handler           // its echo, for the front to call
	requests   *prometheus.CounterVec // cache_requests_total{cache="users",result=...}
	tripped    atomic.Bool            // flaws.stuckBreaker: Redis failed once, so it is skipped

	mu    sync.Mutex
	local map[int64]localEntry // flaws.localCopy only
}

type localEntry struct {
	u     users.User
	until time.Time
}

func newFake(t *testing.T, fl flaws) *fake {
	t.Helper()
	f := &fake{flaws: fl, adminURL: map[string]string{},
		store: make(map[int64]users.User, seededUsers), byName: make(map[string]int64, seededUsers),
		byEmail: make(map[string]int64, seededUsers), nextID: seededUsers + 1, cache: map[int64]entry{},
		messages: make(map[int64]int64, seededUsers), byCount: map[int64]int{}, profiles: map[int64]users.Profile{}}
	for id := int64(1); id <= seededUsers; id++ {
		name, mail := seeded(int(id))
		f.messages[id] = id%19 + 1 // the seed's rule
		f.put(users.User{ID: id, Username: name, Email: mail, CreatedAt: seedEpoch.Add(time.Duration(id) * time.Minute)})
	}
	// Warm, as the stack's background client leaves it (see the liberties above).
	for id := int64(1); id <= seededUsers && !fl.neverFills && !fl.stage03; id++ {
		f.cache[id] = entry{u: f.store[id]}
	}
	for i := range 3 {
		name := fmt.Sprintf("server-%d", i+1)
		r := &replica{f: f, local: map[int64]localEntry{}}
		srv := httpserver.New(httpserver.Config{Instance: name}, slog.New(slog.DiscardHandler))
		reg := prometheus.NewRegistry()
		if fl.stage03 {
			srv.Echo.GET("/users", r.list)
			srv.Echo.GET("/users/:id", r.get)
		} else {
			r.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "cache_requests_total", Help: "Cache reads by outcome.",
			}, []string{"cache", "result"})
			reg.MustRegister(r.requests)
			srv.Echo.GET("/users/:id", r.get)
			srv.Echo.GET("/users/:id/profile", r.profile)
			srv.Echo.POST("/users", r.create)
			srv.Echo.PUT("/users/:id", r.update)
			srv.Echo.DELETE("/users/:id", r.remove)
		}
		// The replica's admin listener, where the check scrapes it (only the cache's counter).
		admin := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		t.Cleanup(admin.Close)
		f.names = append(f.names, name)
		f.adminURL[name] = admin.URL
		f.replicas = append(f.replicas, r)
		r.srvHandler = srv.Echo
	}
	var next atomic.Uint64
	f.front = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		f.replicas[next.Add(1)%uint64(len(f.replicas))].srvHandler.ServeHTTP(w, req)
	}))
	t.Cleanup(f.front.Close)
	return f
}

// put stores u in "Postgres" with its unique indexes; the caller holds mu (or owns f).
func (f *fake) put(u users.User) {
	if old, ok := f.store[u.ID]; ok {
		delete(f.byName, old.Username)
		delete(f.byEmail, old.Email)
	} else {
		f.byCount[f.messages[u.ID]]++
	}
	delete(f.profiles, u.ID)
	f.store[u.ID] = u
	f.byName[u.Username] = u.ID
	f.byEmail[u.Email] = u.ID
}

func (f *fake) drop(id int64) {
	if _, ok := f.store[id]; ok {
		f.byCount[f.messages[id]]--
		delete(f.messages, id) // the cascade
	}
	delete(f.profiles, id)
	old := f.store[id]
	delete(f.byName, old.Username)
	delete(f.byEmail, old.Email)
	delete(f.store, id)
}

// taken is the unique constraints: a 409 if another user has the username or email.
func (f *fake) taken(id int64, in users.Input) error {
	if other, ok := f.byName[in.Username]; ok && other != id {
		return echo.NewHTTPError(http.StatusConflict, "username "+strconv.Quote(in.Username)+" is taken")
	}
	if other, ok := f.byEmail[in.Email]; ok && other != id {
		return echo.NewHTTPError(http.StatusConflict, "email "+strconv.Quote(in.Email)+" is taken")
	}
	return nil
}

// current is the user as the server sees it: a write-behind server believes Redis first.
func (f *fake) current(id int64) (users.User, bool) {
	if f.writeBehind && !f.redisDown {
		if e, ok := f.cache[id]; ok {
			return e.u, !e.gone
		}
	}
	u, ok := f.store[id]
	return u, ok
}

func (f *fake) down() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.redisDown
}

// Stack.

func (f *fake) Replicas(_ context.Context, service string) ([]string, error) {
	if service != "server" {
		return nil, fmt.Errorf("no %q service", service)
	}
	return f.names, nil
}

// Stop and Start take "Redis" down and back; Pause and Unpause do the same, silently (see
// flaws.slowRedis).
func (f *fake) Stop(_ context.Context, service string) error {
	return f.setRedis(service, true, false, &f.stops)
}

func (f *fake) Start(_ context.Context, service string) error {
	return f.setRedis(service, false, false, &f.starts)
}

func (f *fake) Pause(_ context.Context, service string) error {
	return f.setRedis(service, true, true, nil)
}

func (f *fake) Unpause(_ context.Context, service string) error {
	return f.setRedis(service, false, false, nil)
}

func (f *fake) setRedis(service string, down, paused bool, count *atomic.Int32) error {
	if service != "redis" || f.stage03 {
		return fmt.Errorf("no %q service", service)
	}
	if count != nil {
		count.Add(1)
	}
	f.mu.Lock()
	f.redisDown, f.paused = down, paused
	f.mu.Unlock()
	return nil
}

func (f *fake) WaitHealthy(_ context.Context, service string) error {
	if service != "redis" {
		return fmt.Errorf("no %q service", service)
	}
	return nil
}

var (
	inList  = regexp.MustCompile(`WHERE id IN \(([0-9,]+)\)$`)
	addMsgs = regexp.MustCompile(`SELECT (\d+), '[^']*' FROM generate_series\(1, (\d+)\); INSERT INTO messages \(user_id, body\) VALUES \((\d+), `)
)

// Output answers writes-durable's psql query as psql -A -t -F ' ' prints it.
func (f *fake) Output(_ context.Context, service string, cmd ...string) (string, error) {
	if service != "postgres" || len(cmd) == 0 {
		return "", fmt.Errorf("no %q service", service)
	}
	sql := cmd[len(cmd)-1]
	f.mu.Lock()
	defer f.mu.Unlock()
	if m := addMsgs.FindStringSubmatch(sql); m != nil { // rank-after-delete's messages
		for _, add := range [][2]string{{m[1], m[2]}, {m[3], "1"}} {
			id, _ := strconv.ParseInt(add[0], 10, 64)
			n, _ := strconv.ParseInt(add[1], 10, 64)
			f.byCount[f.messages[id]]--
			f.messages[id] += n
			f.byCount[f.messages[id]]++
		}
		return "INSERT 0 3\nINSERT 0 1\n", nil
	}
	m := inList.FindStringSubmatch(sql)
	if m == nil {
		return "", fmt.Errorf("unexpected query %q", sql)
	}
	f.queries.Add(1)
	var out strings.Builder
	for s := range strings.SplitSeq(m[1], ",") {
		id, _ := strconv.ParseInt(s, 10, 64)
		if u, ok := f.store[id]; ok {
			fmt.Fprintf(&out, "%d %s %s\n", u.ID, u.Username, u.Email)
		}
	}
	return out.String(), nil
}

// The replica's handlers.

var errRedis = errors.New("dial tcp redis:6379: connect: connection refused")

func (r *replica) count(result string) { r.requests.WithLabelValues("users", result).Inc() }

// read is Cached.Get: Redis first, Postgres on a miss (filling Redis), Postgres when Redis fails.
func (r *replica) read(id int64) (users.User, bool, error) {
	f := r.f
	if f.localCopy {
		r.mu.Lock()
		l, ok := r.local[id]
		r.mu.Unlock()
		if ok && time.Now().Before(l.until) {
			r.count("hit")
			return l.u, true, nil
		}
	}
	f.mu.Lock()
	if f.slowRedis && f.paused {
		f.mu.Unlock()
		time.Sleep(slowWait) // waiting out the client's default timeout
		f.mu.Lock()
	}
	defer f.mu.Unlock()
	if r.tripped.Load() {
		r.count("breaker_open")
		u, ok := f.store[id]
		return u, ok, nil
	}
	if f.redisDown {
		r.count("redis_error")
		r.tripped.Store(f.stuckBreaker)
		if f.outage503 {
			return users.User{}, false, errRedis
		}
		u, ok := f.store[id]
		return u, ok, nil
	}
	if e, ok := f.cache[id]; ok {
		if e.gone {
			r.count("negative_hit")
			return users.User{}, false, nil
		}
		r.count("hit")
		r.keep(e.u)
		return e.u, true, nil
	}
	r.count("miss")
	u, ok := f.store[id]
	if f.racyFill { // read, then fill later without a lease: a write in between is undone
		f.mu.Unlock()
		time.Sleep(fillDelay/2 + time.Duration(rand.Int64N(int64(fillDelay/2))))
		f.mu.Lock()
	}
	if !f.neverFills && !f.redisDown {
		f.cache[id] = entry{u: u, gone: !ok}
	}
	if ok {
		r.keep(u)
	}
	return u, ok, nil
}

func (r *replica) keep(u users.User) {
	if r.f.localCopy {
		r.mu.Lock()
		r.local[u.ID] = localEntry{u: u, until: time.Now().Add(localFor)}
		r.mu.Unlock()
	}
}

// invalidate is Cached.invalidate after a committed write; the caller holds f.mu. While
// Redis is down the real server defers the delete and reads the key from Postgres until it
// succeeds (as soon as Redis is back), so dropping the copy at once is the same.
func (r *replica) invalidate(id int64) {
	delete(r.f.cache, id)
	if r.f.localCopy {
		r.mu.Lock()
		delete(r.local, id)
		r.mu.Unlock()
	}
}

func (r *replica) get(c echo.Context) error {
	id, err := users.PathID(c)
	if err != nil {
		return err
	}
	if r.f.stage03 {
		r.f.mu.Lock()
		u, ok := r.f.store[id]
		r.f.mu.Unlock()
		if !ok {
			return echo.NewHTTPError(http.StatusNotFound, "user not found")
		}
		return c.JSON(http.StatusOK, u)
	}
	if r.f.dropsNewGets && id > seededUsers {
		if conn, _, err := c.Response().Hijack(); err == nil {
			conn.Close()
		}
		return nil
	}
	u, ok, err := r.read(id)
	switch {
	case err != nil:
		return echo.NewHTTPError(http.StatusServiceUnavailable, "cache unavailable: "+err.Error())
	case !ok:
		return echo.NewHTTPError(http.StatusNotFound, "user not found")
	}
	return c.JSON(http.StatusOK, u)
}

func (r *replica) profile(c echo.Context) error {
	id, err := users.PathID(c)
	if err != nil {
		return err
	}
	f := r.f
	f.mu.Lock()
	defer f.mu.Unlock()
	u, ok := f.current(id)
	if !ok {
		return echo.NewHTTPError(http.StatusNotFound, "user not found")
	}
	if p, ok := f.profiles[id]; ok && f.staleRanks {
		return c.JSON(http.StatusOK, p)
	}
	p := users.Profile{User: u, Messages: f.messages[id], Rank: 1}
	for n, users := range f.byCount {
		if n > p.Messages {
			p.Rank += int64(users)
		}
	}
	f.profiles[id] = p
	return c.JSON(http.StatusOK, p)
}

func (r *replica) list(c echo.Context) error { // stage 03's GET /users, so POST /users is a 405
	return c.JSON(http.StatusOK, users.ListPage{Users: []users.User{}})
}

func (r *replica) create(c echo.Context) error {
	in, err := decodeInput(c, r.f.badInput500)
	if err != nil {
		return err
	}
	f := r.f
	f.mu.Lock()
	if err := f.taken(0, in); err != nil {
		f.mu.Unlock()
		return err
	}
	u := users.User{ID: f.nextID, Username: in.Username, Email: in.Email, CreatedAt: time.Now().UTC()}
	f.nextID++
	f.put(u)
	r.invalidate(u.ID) // a cached "not found" for the new id
	f.mu.Unlock()
	c.Response().Header().Set(echo.HeaderLocation, "/users/"+strconv.FormatInt(u.ID, 10))
	return c.JSON(http.StatusCreated, u)
}

func (r *replica) update(c echo.Context) error {
	id, err := users.PathID(c)
	if err != nil {
		return err
	}
	in, err := decodeInput(c, r.f.badInput500)
	if err != nil {
		return err
	}
	f := r.f
	f.mu.Lock()
	defer f.mu.Unlock()
	old, ok := f.current(id)
	if !ok {
		return echo.NewHTTPError(http.StatusNotFound, "user not found")
	}
	if err := f.taken(id, in); err != nil {
		return err
	}
	u := users.User{ID: id, Username: in.Username, Email: in.Email, CreatedAt: old.CreatedAt}
	switch {
	case (f.writeBehind || f.putCacheOnly) && !f.redisDown:
		f.cache[id] = entry{u: u} // acknowledged once Redis has it
	case f.lostPut:
		r.invalidate(id) // the UPDATE's error (or its missing COMMIT) went unnoticed
	default:
		f.put(u)
		r.invalidate(id)
	}
	return c.JSON(http.StatusOK, u)
}

func (r *replica) remove(c echo.Context) error {
	id, err := users.PathID(c)
	if err != nil {
		return err
	}
	f := r.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.current(id); !ok {
		return echo.NewHTTPError(http.StatusNotFound, "user not found")
	}
	if f.writeBehind && !f.redisDown {
		f.cache[id] = entry{gone: true}
	} else {
		f.drop(id)
		r.invalidate(id)
	}
	return c.NoContent(http.StatusNoContent)
}

// decodeInput is shared/users' own; a crashing server lets a decoding error through
// instead, which the error handler turns into a 500.
func decodeInput(c echo.Context, crash bool) (users.Input, error) {
	if crash {
		body, err := io.ReadAll(io.LimitReader(c.Request().Body, maxBody))
		if err != nil {
			return users.Input{}, err
		}
		var in users.Input
		if err := json.Unmarshal(body, &in); err != nil {
			return in, err
		}
		c.Request().Body = io.NopCloser(bytes.NewReader(body))
	}
	return users.DecodeInput(c)
}

// fast shrinks the defaults' durations; the hit ratio keeps its real 80 %.
func fast(f *fake) Params {
	p := Defaults
	p.Admin = func(host string) string { return f.adminURL[host] }
	p.Users, p.Readers, p.RAWFor = 4, 6, 600*time.Millisecond
	// A rate the machine keeps up with while every case runs at once (a few hundred req/s in
	// all under -race): latency counts from each request's intended send time, so a load
	// generator falling behind would read as slow requests in redis-slow.
	p.Rate, p.Warmup, p.Window, p.Outage, p.Refill = 50, 300*time.Millisecond, 500*time.Millisecond, 300*time.Millisecond, 300*time.Millisecond
	p.Pause = 300 * time.Millisecond
	return p
}

type run struct {
	results map[string]check.Result
	outcome check.Outcome
	out     string
	took    time.Duration
}

func runCheck(f *fake) run {
	var out strings.Builder
	env := &check.Env{Target: f.front.URL, Timeline: report.NewTimeline(100 * time.Millisecond), Client: load.NewClient(16, 10*time.Second)}
	start := time.Now()
	results, outcome := check.Run(context.Background(), "stage-5", Steps(fast(f), f), env, &out)
	byName := map[string]check.Result{}
	for _, r := range results {
		byName[r.Step] = r
	}
	return run{results: byName, outcome: outcome, out: out.String(), took: time.Since(start)}
}

// expectOutcomes asserts each step's outcome: those named in want as given, every other a pass.
func expectOutcomes(t *testing.T, r run, want map[string]check.Outcome) {
	t.Helper()
	for name, res := range r.results {
		o, ok := want[name]
		if !ok {
			o = check.Pass
		}
		assert.Equal(t, o, res.Outcome, "%s:\n%s", name, r.out)
		if res.Outcome == check.Fail {
			assert.NotEmpty(t, res.Expected, name)
			assert.NotEmpty(t, res.Hint, name)
			assert.True(t, strings.HasPrefix(res.Doc, doc+"#"), res.Doc)
		}
	}
}

// Each known-broken server must fail the step that proves what it breaks, with the hint
// that points at the cause, and pass the others: a check that cannot fail proves nothing.
// Where a flaw honestly breaks more than one promise, every failure is asserted (also).
// The steps last set times, so all the runs go at once: the test takes about as long as one.
func TestCheckOnCorrectAndKnownBrokenServers(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		flaws   flaws
		failing string // "" for the correct server: every step passes
		hint    string // a phrase of the failing step's hint
		actual  string // a phrase of what the check saw
		also    map[string]check.Outcome
	}{
		{name: "correct server"},
		// The lease bug: a reader that read Postgres before a write fills Redis after the
		// write's delete, so the old copy stays. Sequential requests (crud) never interleave
		// like that; concurrent writers and readers do within milliseconds.
		{name: "fill lands after the delete (no lease)", flaws: flaws{racyFill: true},
			failing: "read-after-write", hint: "a fill must not land after a delete", actual: "stale reads of"},
		{name: "500 on a body that does not decode", flaws: flaws{badInput500: true},
			failing: "bad-input", hint: "shared/users/input.go", actual: "POST /users not json -> 500"},
		{name: "503 while Redis is down", flaws: flaws{outage503: true},
			failing: "redis-outage", hint: "a Redis error must fall back to the source", actual: "GET hot: 503",
			also: map[string]check.Outcome{"redis-slow": check.Fail}},
		// No request fails and reads do come from Postgres during the outage, but once Redis
		// is back every read still bypasses it (counted breaker_open): no hits come back.
		{name: "circuit breaker never closes again", flaws: flaws{stuckBreaker: true},
			failing: "redis-outage", hint: "the circuit breaker", actual: "0.0% (0 hits of"},
		// Write-behind: PUT and DELETE are acknowledged once in Redis, and a job would copy
		// them to Postgres later (every 10 s, say: after this check). Every read looks right;
		// only Postgres shows that the acknowledged deletes of crud's and read-after-write's
		// users (and their updates) never happened: lost for good if Redis dies first.
		{name: "write-behind: writes acknowledged from Redis", flaws: flaws{writeBehind: true},
			failing: "writes-durable", hint: "the cache only ever holds copies", actual: "still there after its acknowledged DELETE",
			// its DELETE never reached Postgres, so the other user's rank does not move either
			also: map[string]check.Outcome{"rank-after-delete": check.Fail}},
		// A per-replica copy that only its own replica's writes drop: crud's GETs after the
		// PUT, twice per replica, already meet one, and so do read-after-write's readers.
		{name: "per-replica copy not dropped by other replicas' writes", flaws: flaws{localCopy: true},
			failing: "crud", hint: "shared/users/handlers.go", actual: `-u0-v0","email"`,
			also: map[string]check.Outcome{"read-after-write": check.Fail}},
		// Never filling Redis: every read is a miss. The outage step fails too, on the ratio
		// that should recover once Redis is back (during the outage reads are still counted
		// as redis_error, so it is not merely inconclusive).
		{name: "never fills Redis: no hits", flaws: flaws{neverFills: true},
			failing: "hit-ratio", hint: "fill it on a miss", actual: "0.0% (0 hits of",
			also: map[string]check.Outcome{"redis-outage": check.Fail}},
		// PUT's UPDATE is lost and the key deleted: the very next GETs read the old row, so
		// crud fails (before its DELETE, so its user stays, and writes-durable finds the
		// acknowledged v1 missing), and read-after-write sees every reader stuck at v0.
		// The same lost UPDATE hidden behind a copy in Redis is caught by writes-durable: see
		// TestPutKeptOnlyInRedisFailsWritesDurable.
		{name: "PUT answers 200 but Postgres keeps the old row", flaws: flaws{lostPut: true},
			failing: "crud", hint: "shared/users/handlers.go", actual: `-u0-v0","email"`,
			also: map[string]check.Outcome{"read-after-write": check.Fail, "writes-durable": check.Fail}},
		// The negative control of `make e2e` (course.toml: stack 3, fails = "crud"): the
		// stage-03 stack has no writes, no profile, no cache and no Redis. Its reads-only
		// routes answer the bad requests 4xx with JSON (405, 404, 400), but not the 409s and
		// 404s bad-input expects of a users resource; the load steps fail on their PUTs'
		// 405s; and with no write acknowledged there is nothing to look for in Postgres.
		{name: "stage-03 server: no POST (405)", flaws: flaws{stage03: true},
			failing: "crud", hint: "RegisterWrites", actual: "POST /users: 405",
			also: map[string]check.Outcome{"bad-input": check.Fail, "read-after-write": check.Fail, "rank-after-delete": check.Fail,
				"hit-ratio": check.Fail, "redis-outage": check.Inconclusive, "redis-slow": check.Inconclusive, "writes-durable": check.Inconclusive}},
		// Redis slow (paused) and every read waits for it: nothing fails, but requests hang.
		{name: "a paused Redis makes every read wait", flaws: flaws{slowRedis: true},
			failing: "redis-slow", hint: "short read timeout", actual: "requests waited for Redis"},
		// Profiles cached per user and dropped only by that user's own writes: after another
		// user (with more messages) is deleted, every replica keeps the old rank.
		{name: "ranks not moved by other users' deletes", flaws: flaws{staleRanks: true},
			failing: "rank-after-delete", hint: "InvalidateAll", actual: "ranks it"},
	}
	fakes := make([]*fake, len(cases))
	for i, c := range cases {
		fakes[i] = newFake(t, c.flaws)
	}
	runs := make([]run, len(cases))
	var wg sync.WaitGroup
	for i := range cases {
		wg.Go(func() { runs[i] = runCheck(fakes[i]) })
	}
	wg.Wait()
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, f := runs[i], fakes[i]
			require.Len(t, r.results, 8, r.out)
			t.Logf("%s\n%s", r.took.Round(time.Millisecond), r.out)
			switch {
			case c.failing == "":
				assert.Equal(t, check.Pass, r.outcome, r.out)
				expectOutcomes(t, r, nil)
				// The outage step really stopped Redis, once, and left it up; writes-durable
				// really asked Postgres.
				assert.EqualValues(t, 1, f.stops.Load())
				assert.EqualValues(t, 1, f.starts.Load())
				assert.False(t, f.down())
				assert.EqualValues(t, 1, f.queries.Load())
				return
			case c.also == nil:
				checktest.OnlyFails(t, r.results, r.out, c.failing, c.hint, c.actual, doc+"#")
			default:
				want := map[string]check.Outcome{c.failing: check.Fail}
				for k, v := range c.also {
					want[k] = v
				}
				expectOutcomes(t, r, want)
				assert.Contains(t, r.results[c.failing].Hint, c.hint)
				assert.Contains(t, r.results[c.failing].Actual, c.actual)
			}
			assert.Equal(t, check.Fail, r.outcome, r.out)
			assert.False(t, f.down(), "Redis left stopped")
		})
	}
}

// TestPutKeptOnlyInRedisFailsWritesDurable: a PUT acknowledged after writing the new user to
// Redis only (its UPDATE lost) serves every read from the copy, so only Postgres can tell.
// read-after-write leaves its first user undeleted for exactly this: writes-durable finds
// that user's last acknowledged version missing.
func TestPutKeptOnlyInRedisFailsWritesDurable(t *testing.T) {
	t.Parallel()
	r := runCheck(newFake(t, flaws{putCacheOnly: true}))
	assert.Equal(t, check.Fail, r.results["writes-durable"].Outcome, r.out)
}

// TestCrudFailsWithoutPanickingOnNoAnswer: a GET of crud's new user that gets no answer
// (connection dropped) fails the step with "no answer", instead of crashing the check.
func TestCrudFailsWithoutPanickingOnNoAnswer(t *testing.T) {
	t.Parallel()
	f := newFake(t, flaws{dropsNewGets: true})
	var out strings.Builder
	env := &check.Env{Target: f.front.URL, Timeline: report.NewTimeline(100 * time.Millisecond), Client: load.NewClient(4, 10*time.Second)}
	var results []check.Result
	assert.NotPanics(t, func() { results, _ = check.Run(context.Background(), "stage-5", Steps(fast(f), f)[:1], env, &out) })
	if assert.Len(t, results, 1) {
		assert.Equal(t, check.Fail, results[0].Outcome, out.String())
		assert.Contains(t, results[0].Actual, "no answer")
	}
}
