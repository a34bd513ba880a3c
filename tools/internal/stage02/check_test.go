package stage02

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sysdesign-course/course/shared/httpserver"
	"github.com/sysdesign-course/course/shared/users"
	"github.com/sysdesign-course/course/tools/internal/check"
	"github.com/sysdesign-course/course/tools/internal/check/checktest"
	"github.com/sysdesign-course/course/tools/internal/load"
	"github.com/sysdesign-course/course/tools/internal/report"
)

// fakeDB stands in for Postgres and is the fake fault injector: Stop("postgres") takes the
// "database" down and Start brings it back, healthy at once.
type fakeDB struct {
	down          atomic.Bool
	stops, starts atomic.Int32
}

func (d *fakeDB) Stop(_ context.Context, service string) error {
	if service != "postgres" {
		return fmt.Errorf("no %q service", service)
	}
	d.stops.Add(1)
	d.down.Store(true)
	return nil
}

func (d *fakeDB) Start(_ context.Context, service string) error {
	if service != "postgres" {
		return fmt.Errorf("no %q service", service)
	}
	d.starts.Add(1)
	d.down.Store(false)
	return nil
}

func (d *fakeDB) WaitHealthy(context.Context, string) error { return nil }
func (d *fakeDB) Kill(context.Context, string) error        { return errors.New("not used") }
func (d *fakeDB) Pause(context.Context, string) error       { return errors.New("not used") }
func (d *fakeDB) Unpause(context.Context, string) error     { return errors.New("not used") }

// ping is what /readyz checks, as pool.Ping does on the real server.
func (d *fakeDB) ping(context.Context) error {
	if d.down.Load() {
		return errors.New("dial tcp: connection refused")
	}
	return nil
}

// flaws are the known-broken variants of the fake; the zero value is a correct server.
type flaws struct {
	repeatsBoundary bool   // a page starts at ?after= itself (>= instead of >): repeats a row
	skipsBoundary   bool   // next_after is the last id + 1: skips a row
	badID500        bool   // a non-numeric id is an unhandled error: a JSON 500
	whenDown        string // with the database down: "" a JSON 503, "hang" 10 s, "500"
	restarts        bool   // /metrics reports a new process start once the database is back
}

// fakeServer is stage 02's server with the database replaced by the seed's rules: the real
// httpserver (/ping, /healthz, /readyz, JSON errors; /metrics on its admin side) plus the
// three users reads, answering with shared/users' exported types so the JSON has the real
// shapes.
type fakeServer struct {
	db *fakeDB
	flaws
}

// newFakeServer starts the fake's public and admin listeners; the Params it returns are
// fast ones that scrape this fake's /metrics.
func newFakeServer(t *testing.T, f flaws) (*httptest.Server, *fakeDB, Params) {
	s := &fakeServer{db: &fakeDB{}, flaws: f}
	srv := httpserver.New(httpserver.Config{Instance: "test"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv.Ready("postgres", s.db.ping)
	srv.Echo.GET("/users", s.list)
	srv.Echo.GET("/users/:id", s.get)
	srv.Echo.GET("/users/:id/messages", s.messages)
	ts := httptest.NewServer(srv.Echo)
	t.Cleanup(ts.Close)
	var admin http.Handler = srv.Admin
	if f.restarts {
		admin = restartedAfterOutage(admin, s.db)
	}
	as := httptest.NewServer(admin)
	t.Cleanup(as.Close)
	p := fast
	p.Metrics = as.URL + "/metrics"
	return ts, s.db, p
}

var seedEpoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

func seedUser(id int64) users.User {
	name := Username(int(id))
	return users.User{ID: id, Username: name, Email: name + "@example.com", CreatedAt: seedEpoch.Add(time.Duration(id) * 17 * time.Minute)}
}

// seedMessages are user u's messages. Their ids are u*100+k, increasing per user and unique
// (the real seed numbers all messages in one sequence; the check only needs the order).
func seedMessages(u int64) []users.Message {
	msgs := make([]users.Message, MessagesOf(int(u)))
	for k := range msgs {
		msgs[k] = users.Message{ID: u*100 + int64(k+1), Body: fmt.Sprintf("message %d of %s", k+1, Username(int(u))),
			CreatedAt: seedUser(u).CreatedAt.Add(time.Duration(k+1) * time.Hour)}
	}
	return msgs
}

// query stands in for a round trip to the database.
func (s *fakeServer) query(c echo.Context) error {
	if !s.db.down.Load() {
		return nil
	}
	switch s.whenDown {
	case "hang": // no timeout on the query: it waits for the dead database
		select {
		case <-time.After(10 * time.Second):
		case <-c.Request().Context().Done():
		}
	case "500": // the connection error is not mapped: an unhandled error
		return errors.New("dial tcp: connection refused")
	}
	c.Response().Header().Set("Retry-After", "1")
	return echo.NewHTTPError(http.StatusServiceUnavailable, "database unavailable, retry later")
}

func (s *fakeServer) pathID(c echo.Context) (int64, error) {
	raw := c.Param("id")
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil && s.badID500 {
		return 0, err
	}
	if err != nil || id < 1 {
		return 0, httpserver.BadRequest("id must be a positive integer below 2^63, got " + strconv.Quote(raw))
	}
	return id, nil
}

func pageParams(c echo.Context) (after int64, limit int, err error) {
	after, limit = 0, users.DefaultLimit
	if raw := c.QueryParam("after"); raw != "" {
		if after, err = strconv.ParseInt(raw, 10, 64); err != nil || after < 0 {
			return 0, 0, httpserver.BadRequest("after must be an integer of at least 0")
		}
	}
	if raw := c.QueryParam("limit"); raw != "" {
		if limit, err = strconv.Atoi(raw); err != nil || limit < 1 || limit > users.MaxLimit {
			return 0, 0, httpserver.BadRequest("limit must be an integer from 1 to 100")
		}
	}
	return after, limit, nil
}

func (s *fakeServer) get(c echo.Context) error {
	id, err := s.pathID(c)
	if err != nil {
		return err
	}
	if err := s.query(c); err != nil {
		return err
	}
	if id > Users {
		return echo.NewHTTPError(http.StatusNotFound, "user not found")
	}
	return c.JSON(http.StatusOK, seedUser(id))
}

func (s *fakeServer) list(c echo.Context) error {
	after, limit, err := pageParams(c)
	if err != nil {
		return err
	}
	if err := s.query(c); err != nil {
		return err
	}
	first := after + 1
	if s.repeatsBoundary {
		first = max(after, 1)
	}
	page := users.ListPage{Users: []users.User{}}
	for id := first; id <= Users && len(page.Users) < limit; id++ {
		page.Users = append(page.Users, seedUser(id))
	}
	if len(page.Users) == limit {
		next := page.Users[limit-1].ID
		if s.skipsBoundary {
			next++
		}
		page.NextAfter = &next
	}
	return c.JSON(http.StatusOK, page)
}

func (s *fakeServer) messages(c echo.Context) error {
	id, err := s.pathID(c)
	if err != nil {
		return err
	}
	after, limit, err := pageParams(c)
	if err != nil {
		return err
	}
	if err := s.query(c); err != nil {
		return err
	}
	if id > Users {
		return echo.NewHTTPError(http.StatusNotFound, "user not found")
	}
	page := users.MessagesPage{User: seedUser(id), Messages: []users.Message{}}
	for _, m := range seedMessages(id) {
		if m.ID > after && len(page.Messages) < limit {
			page.Messages = append(page.Messages, m)
		}
	}
	if len(page.Messages) == limit {
		page.NextAfter = &page.Messages[limit-1].ID
	}
	return c.JSON(http.StatusOK, page)
}

// restartedAfterOutage makes /metrics report a new process start time once the database
// has been started again: what a server that exits on the outage and is restarted looks
// like from outside, minus the downtime.
func restartedAfterOutage(h http.Handler, db *fakeDB) http.Handler {
	restartedAt := time.Now().Add(time.Hour).Unix()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" && db.starts.Load() > 0 {
			fmt.Fprintf(w, "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %d\n", restartedAt)
			return
		}
		h.ServeHTTP(w, r)
	})
}

var fast = Params{Database: "postgres", Outage: 600 * time.Millisecond, FailFast: 500 * time.Millisecond, RecoverWithin: 2 * time.Second}

func runCheck(t *testing.T, target string, faults *fakeDB, steps []check.Step) (map[string]check.Result, check.Outcome, string) {
	t.Helper()
	var out strings.Builder
	env := &check.Env{Target: target, Faults: faults, Timeline: report.NewTimeline(100 * time.Millisecond), Client: load.NewClient(8, 10*time.Second)}
	results, outcome := check.Run(context.Background(), "stage-2", steps, env, &out)
	byName := map[string]check.Result{}
	for _, r := range results {
		byName[r.Step] = r
	}
	require.Len(t, byName, len(steps), out.String())
	return byName, outcome, out.String()
}

func TestCheckPassesOnACorrectServer(t *testing.T) {
	t.Parallel()
	ts, db, p := newFakeServer(t, flaws{})
	results, outcome, out := runCheck(t, ts.URL, db, Steps(p))
	assert.Equal(t, check.Pass, outcome, out)
	for name, r := range results {
		assert.Equal(t, check.Pass, r.Outcome, "%s: %s", name, out)
	}
	// The outage step really took the database away, once, and brought it back.
	assert.EqualValues(t, 1, db.stops.Load())
	assert.EqualValues(t, 1, db.starts.Load())
	assert.False(t, db.down.Load())
	t.Log("\n" + out)
}

// Each known-broken server must fail exactly the step that proves what it breaks, with the
// hint that points at the cause, and pass the others: a check that cannot fail proves nothing.
func TestCheckFailsOnKnownBrokenServers(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		flaws   flaws
		failing string
		hint    string // a phrase of the step's hint or of the verdict's own
		actual  string // a phrase of what the check saw
	}{
		{"page repeats its ?after= row", flaws{repeatsBoundary: true}, "pagination", "next_after must be the last id of a full page", "id 100 (/users?after=100&limit=100)"},
		{"next_after skips a row", flaws{skipsBoundary: true}, "pagination", "next_after must be the last id of a full page", "next_after 101 after a page of ids 1..100"},
		{"500 for a non-numeric id", flaws{badID500: true}, "bad-input", "parse and bound ids", "GET /users/abc -> 500"},
		{"reads hang while the database is down", flaws{whenDown: "hang"}, "database-outage", "bound every query", "slower than 500ms"},
		{"reads answer 500 while the database is down", flaws{whenDown: "500"}, "database-outage", "map connection errors to 503", "500 x"},
		{"restarted by the outage", flaws{restarts: true}, "database-outage", "survive a database outage without exiting", "process_start_time_seconds went from"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ts, db, p := newFakeServer(t, c.flaws)
			results, outcome, out := runCheck(t, ts.URL, db, Steps(p))
			assert.Equal(t, check.Fail, outcome, out)
			checktest.OnlyFails(t, results, out, c.failing, c.hint, c.actual, "docs/02-db.md#")
			t.Log("\n" + out)
		})
	}
}

// A database the injector cannot stop proves nothing about outages: inconclusive, not a pass.
func TestOutageIsInconclusiveWhenTheDatabaseCannotBeStopped(t *testing.T) {
	t.Parallel()
	ts, db, p := newFakeServer(t, flaws{})
	p.Database = "mysql"
	steps := Steps(p)
	results, outcome, out := runCheck(t, ts.URL, db, steps[len(steps)-1:])
	assert.Equal(t, check.Inconclusive, outcome, out)
	assert.Contains(t, results["database-outage"].Seen, "could not stop mysql")
}

func TestCheckFailsWhenNothingListens(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	results, outcome, out := runCheck(t, "http://"+addr, &fakeDB{}, Steps(fast)[:2])
	assert.Equal(t, check.Fail, outcome, out)
	assert.Contains(t, results["seeded-data"].Actual, "connection refused")
	assert.Contains(t, results["pagination"].Actual, "connection refused")
}
