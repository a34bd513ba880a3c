// Package stage02 proves stage 02's concepts on a live stack: the seeded users are served
// and paginate without gaps, bad ids are refused, and the server survives its database
// going away: it answers 503 fast, keeps answering /ping, and recovers by itself.
package stage02

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sysdesign-course/course/tools/internal/bench"
	"github.com/sysdesign-course/course/tools/internal/check"
	"github.com/sysdesign-course/course/tools/internal/load"
)

// The seed's rules (shared/users/migrations/00002_seed.sql).
const (
	Users = 10000
	Hot   = 100
)

// MessagesOf is how many messages the seed gives user u.
func MessagesOf(u int) int { return u%19 + 1 }

// Username is the seed's name for user u.
func Username(u int) string { return fmt.Sprintf("user%05d", u) }

// Params size the steps.
type Params struct {
	Database      string        // the Compose service that is stopped
	Outage        time.Duration // how long to keep probing while the database is down
	FailFast      time.Duration // a 503 must come back within this
	RecoverWithin time.Duration // after the database is healthy again
	Metrics       string        // the server's /metrics, on its admin listener
}

// Defaults are what `make stage 2 check` uses.
var Defaults = Params{Database: "postgres", Outage: 4 * time.Second, FailFast: 3 * time.Second, RecoverWithin: 10 * time.Second,
	Metrics: check.AdminURL("server") + "/metrics"}

const doc = "docs/02-db.md"

// Steps returns stage 02's check, in order; the outage is last.
func Steps(p Params) []check.Step {
	return []check.Step{
		{
			Name: "seeded-data", Title: "the seeded users are served by id, and an unknown id is a JSON 404",
			Doc:  doc + "#the-data",
			Hint: "the server applies migrations (schema, then the generated seed) at start: look for \"migration applied\" in make stage 2 logs; the routes are in shared/users/handlers.go.",
			Run:  seeded,
		},
		{
			Name: "pagination", Title: fmt.Sprintf("keyset pagination walks all %d users and a user's messages without gaps or repeats", Users),
			Doc:  doc + "#pagination",
			Hint: "a page must hold ids above ?after= in order, and next_after must be the last id of a full page: see Store.List and Store.Messages in shared/users/store.go.",
			Run:  paginate,
		},
		{
			Name: "bad-input", Title: "malformed, negative, huge and SQL-laden ids and limits get a 4xx JSON error, never a 5xx",
			Doc:  doc + "#bad-input",
			Hint: "parse and bound ids and limits before querying (pathID and pageParams in shared/users/handlers.go); queries take parameters, never strings pasted into SQL.",
			Run:  badInput,
		},
		{
			Name: "database-outage", Title: "with Postgres stopped, user reads fail fast with 503 while /ping stays 200; they recover without a server restart",
			Doc:  doc + "#when-the-database-goes-away",
			Hint: "bound every query (context timeout, pool connect timeout), map connection errors to 503 (dbError in shared/users/handlers.go), and let the pool reconnect instead of exiting.",
			Run:  func(ctx context.Context, e *check.Env) check.Verdict { return outage(ctx, e, p) },
		},
	}
}

type user struct {
	ID       int64  `json:"id"`
	Username string `json:"username"`
	Email    string `json:"email"`
}

func getJSON(ctx context.Context, e *check.Env, series, path string, into any) (int, string, error) {
	r, err := e.Get(ctx, series, path)
	if err != nil {
		return 0, "", err
	}
	if r.Status == http.StatusOK {
		if err := json.Unmarshal(r.Body, into); err != nil {
			return r.Status, check.Short(r.Body), fmt.Errorf("%s: not the JSON expected: %w", path, err)
		}
	}
	return r.Status, check.Short(r.Body), nil
}

// seenAs says what a request got, for the "actual" line.
func seenAs(status int, body string, err error) string {
	if err != nil && status == 0 {
		return "no answer: " + load.Classify(err)
	}
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%d %s", status, body)
}

func seeded(ctx context.Context, e *check.Env) check.Verdict {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, id := range []int{1, 4242, Users} {
		var u user
		status, body, err := getJSON(ctx, e, "users", fmt.Sprintf("/users/%d", id), &u)
		want := fmt.Sprintf(`200 {"id": %d, "username": %q, "email": "%s@example.com", ...}`, id, Username(id), Username(id))
		switch {
		case err != nil:
			return check.Failed(want, load.Classify(err))
		case status != http.StatusOK:
			return check.Failed(want, fmt.Sprintf("%d %s", status, body))
		case u.ID != int64(id) || u.Username != Username(id) || u.Email != Username(id)+"@example.com":
			return check.Failed(want, body)
		}
	}
	r, err := e.Get(ctx, "users", fmt.Sprintf("/users/%d", Users+1))
	switch {
	case err != nil:
		return check.Failed("404 for an unknown user", load.Classify(err))
	case r.Status != http.StatusNotFound || !check.IsJSON(r.Header) || !check.HasError(r.Body):
		return check.Failed(`404 with a JSON {"error": ...} for an unknown user`, fmt.Sprintf("%d %s", r.Status, check.Short(r.Body)))
	}
	return check.Passed("users 1, 4242 and %d served as seeded; user %d is a JSON 404", Users, Users+1)
}

// walk follows next_after from page to page. It fails if a page repeats or skips an id
// (ids must rise by one from first), if next_after is not the last id of a full page, or
// if the walk does not end (no next_after) within maxPages.
func walk(ctx context.Context, e *check.Env, maxPages int, pathAt func(after int64) string, ids func(body []byte) ([]int64, *int64, error), first int64, step int64) (count, pages int, v *check.Verdict) {
	after, want := int64(0), first
	for pages < maxPages {
		path := pathAt(after)
		r, err := e.Get(ctx, "users", path)
		if err != nil || r.Status != http.StatusOK {
			status, body := 0, ""
			if r != nil {
				status, body = r.Status, check.Short(r.Body)
			}
			f := check.Failed("200 with a page from "+path, seenAs(status, body, err))
			return count, pages, &f
		}
		pages++
		got, next, err := ids(r.Body)
		if err != nil {
			f := check.Failed("a page as JSON from "+path, err.Error())
			return count, pages, &f
		}
		for _, id := range got {
			if id != want && step > 0 || id <= after {
				f := check.Failed(fmt.Sprintf("id %d next on page %d", want, pages), fmt.Sprintf("id %d (%s)", id, path))
				return count, pages, &f
			}
			after, want = id, id+step
			count++
		}
		if next == nil {
			return count, pages, nil
		}
		if len(got) == 0 || *next != got[len(got)-1] {
			f := check.Failed("next_after equal to the last id of a full page, and absent after the last page",
				fmt.Sprintf("next_after %d after a page of ids %s (%s)", *next, span(got), path))
			return count, pages, &f
		}
	}
	f := check.Failed(fmt.Sprintf("the walk ends (no next_after) within %d pages", maxPages), "next_after never went away")
	return count, pages, &f
}

// span is a page's ids as "first..last (n)".
func span(ids []int64) string {
	if len(ids) == 0 {
		return "(none)"
	}
	return fmt.Sprintf("%d..%d (%d)", ids[0], ids[len(ids)-1], len(ids))
}

func paginate(ctx context.Context, e *check.Env) check.Verdict {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// All users, 100 a page: ids must run 1, 2, ... Users with nothing skipped or repeated.
	seen, pages, v := walk(ctx, e, Users/100+2, func(after int64) string {
		return fmt.Sprintf("/users?after=%d&limit=100", after)
	}, func(body []byte) ([]int64, *int64, error) {
		var page struct {
			Users     []user
			NextAfter *int64 `json:"next_after"`
		}
		err := json.Unmarshal(body, &page)
		ids := make([]int64, len(page.Users))
		for i, u := range page.Users {
			ids[i] = u.ID
		}
		return ids, page.NextAfter, err
	}, 1, 1)
	if v != nil {
		return *v
	}
	if seen != Users {
		return check.Failed(fmt.Sprintf("%d users in all", Users), fmt.Sprintf("%d users in %d pages", seen, pages))
	}
	// The join: two users' messages, 3 a page, must be theirs, in order, and complete.
	for _, u := range []int{7, 18} {
		var wrongOwner string
		got, _, v := walk(ctx, e, MessagesOf(u)/3+2, func(after int64) string {
			return fmt.Sprintf("/users/%d/messages?after=%d&limit=3", u, after)
		}, func(body []byte) ([]int64, *int64, error) {
			var page struct {
				User      user
				Messages  []struct{ ID int64 }
				NextAfter *int64 `json:"next_after"`
			}
			err := json.Unmarshal(body, &page)
			if page.User.Username != Username(u) {
				wrongOwner = page.User.Username
			}
			ids := make([]int64, len(page.Messages))
			for i, m := range page.Messages {
				ids[i] = m.ID
			}
			return ids, page.NextAfter, err
		}, 0, 0) // message ids only need to rise
		switch {
		case v != nil:
			return *v
		case wrongOwner != "":
			return check.Failed(fmt.Sprintf("messages of %s", Username(u)), "messages of "+wrongOwner)
		case got != MessagesOf(u):
			return check.Failed(fmt.Sprintf("%d messages for user %d (the seed gives user u u%%19+1)", MessagesOf(u), u), fmt.Sprint(got))
		}
	}
	return check.Passed("%d users in %d pages, ids 1..%d in order; users 7 and 18 have %d and %d messages across pages of 3",
		seen, pages, Users, MessagesOf(7), MessagesOf(18))
}

var badCases = []check.Request{
	check.Get("/users/abc"),
	check.Get("/users/-1"),
	check.Get("/users/0"),
	check.Get("/users/1.5"),
	check.Get("/users/99999999999999999999"),
	check.Get("/users/1%27%20OR%20%271%27=%271"),
	check.Get("/users/1;DROP%20TABLE%20users"),
	check.Get("/users?limit=0"),
	check.Get("/users?limit=101"),
	check.Get("/users?limit=abc"),
	check.Get("/users?after=-5"),
	check.Get("/users?after=1%20OR%201=1"),
	check.Get("/users/1/messages?limit=1000"),
	check.Get("/users/x/messages"),
	check.Get(fmt.Sprintf("/users/%d", Users+1)),
	check.Get(fmt.Sprintf("/users/%d/messages", Users+1)),
}

func badInput(ctx context.Context, e *check.Env) check.Verdict {
	if wrong := check.ClientErrors(ctx, e, badCases); len(wrong) > 0 {
		return check.Failed(`a 4xx with a JSON body {"error": "..."} for each bad request`, strings.Join(wrong, "; "))
	}
	return check.Passed("%d bad requests all answered 4xx with a JSON error (unknown users 404)", len(badCases))
}

// processStart reads the server's start time from its /metrics: if it changes, the
// server restarted, which is not what "recovers by itself" means.
func processStart(ctx context.Context, e *check.Env, metrics string) (string, error) {
	m, err := bench.Scrape(ctx, e.Client, metrics)
	if err != nil {
		return "", err
	}
	start, ok := m["process_start_time_seconds"]
	if !ok {
		return "", fmt.Errorf("%s has no process_start_time_seconds", metrics)
	}
	return strconv.FormatFloat(start, 'f', -1, 64), nil
}

// probe is one round of requests during the outage.
type probe struct {
	users               string // what the user read got: "JSON 503", "plain 500", "no answer: timeout"
	code                int    // its status code (0: no answer)
	ping, ready, health int    // status codes
	usersTook           time.Duration
}

func sample(ctx context.Context, e *check.Env, fast time.Duration) probe {
	var p probe
	get := func(series, path string) (*check.Response, time.Duration, error) {
		rctx, cancel := context.WithTimeout(ctx, fast+2*time.Second)
		defer cancel()
		start := time.Now()
		r, err := e.Get(rctx, series, path)
		return r, time.Since(start), err
	}
	r, took, err := get("users", fmt.Sprintf("/users/%d", rand.IntN(Hot)+1))
	p.usersTook = took
	switch {
	case err != nil:
		p.users = "no answer: " + load.Classify(err)
	case r.Status == http.StatusServiceUnavailable && check.IsJSON(r.Header) && check.HasError(r.Body):
		p.users = "JSON 503"
	case check.IsJSON(r.Header):
		p.users = fmt.Sprintf("JSON %d", r.Status)
	default:
		p.users = fmt.Sprintf("plain %d", r.Status)
	}
	p.code = 0
	if r != nil {
		p.code = r.Status
	}
	status := func(series, path string) int {
		if r, _, err := get(series, path); err == nil {
			return r.Status
		}
		return 0
	}
	p.ping, p.ready, p.health = status("ping", "/ping"), status("readyz", "/readyz"), status("healthz", "/healthz")
	return p
}

func outage(ctx context.Context, e *check.Env, p Params) check.Verdict {
	ctx, cancel := context.WithTimeout(ctx, p.Outage+p.RecoverWithin+90*time.Second)
	defer cancel()
	before, err := processStart(ctx, e, p.Metrics)
	if err != nil {
		return check.Failed("the server's /metrics with process_start_time_seconds", err.Error())
	}
	if s := sample(ctx, e, p.FailFast); s.code != http.StatusOK || s.ready != http.StatusOK {
		return check.Failed("user reads and /readyz answer 200 before the outage", fmt.Sprintf("users %s, readyz %d", s.users, s.ready))
	}

	// Steady background reads for the chart and to keep the pool busy while Postgres dies.
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		op := func(ctx context.Context) (string, error) {
			r, err := e.Get(ctx, "users load", fmt.Sprintf("/users/%d", rand.IntN(Hot)+1))
			if err == nil && r.Status >= 500 {
				err = load.StatusError{Code: r.Status}
			}
			return "", err
		}
		_, _ = load.Run(loadCtx, load.Options{Workers: 2, Rate: 40, Duration: 5 * time.Minute}, op)
	})
	defer func() { stopLoad(); wg.Wait() }()
	time.Sleep(time.Second)

	if err := e.Faults.Stop(ctx, p.Database); err != nil {
		return check.NotProven("could not stop %s: %v", p.Database, err)
	}
	var probes []probe
	for end := time.Now().Add(p.Outage); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		probes = append(probes, sample(ctx, e, p.FailFast))
	}
	if err := e.Faults.Start(ctx, p.Database); err != nil {
		return check.Failed(p.Database+" starts again", err.Error())
	}
	wctx, wcancel := context.WithTimeout(ctx, 60*time.Second)
	err = e.Faults.WaitHealthy(wctx, p.Database)
	wcancel()
	if err != nil {
		return check.Failed(p.Database+" healthy again after start", err.Error()).WithHint("look at make stage 2 logs for postgres")
	}
	healthyAt := time.Now()
	recovered := time.Duration(-1)
	for time.Since(healthyAt) < p.RecoverWithin {
		s := sample(ctx, e, p.FailFast)
		if s.code == http.StatusOK && s.ready == http.StatusOK {
			recovered = time.Since(healthyAt)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	after, err := processStart(ctx, e, p.Metrics)
	if err != nil {
		return check.Failed("the server answers /metrics after the outage", err.Error())
	}

	if len(probes) == 0 {
		return check.NotProven("no request was made while %s was down", p.Database)
	}
	slow, wrongUsers, pingFailed, notUnready, unhealthy := 0, map[string]int{}, 0, 0, 0
	worst := time.Duration(0)
	for _, s := range probes {
		worst = max(worst, s.usersTook)
		if s.usersTook > p.FailFast {
			slow++
		}
		if s.users != "JSON 503" {
			wrongUsers[s.users]++
		}
		if s.ping != http.StatusOK {
			pingFailed++
		}
		if s.ready != http.StatusServiceUnavailable {
			notUnready++
		}
		if s.health != http.StatusOK {
			unhealthy++
		}
	}
	n := len(probes)
	switch {
	case len(wrongUsers) > 0 || slow > 0:
		return check.Failed(fmt.Sprintf("every user read answers a JSON 503 within %s while the database is down", p.FailFast),
			fmt.Sprintf("of %d reads: %s other than a JSON 503; %d slower than %s (worst %s)", n, check.Counts(wrongUsers), slow, p.FailFast, check.MS(worst)))
	case pingFailed > 0 || unhealthy > 0:
		return check.Failed("/ping and /healthz answer 200 while the database is down (the process is alive)",
			fmt.Sprintf("of %d rounds, /ping failed %d times and /healthz %d times", n, pingFailed, unhealthy)).
			WithHint("/ping and /healthz must not touch the database; the process must not exit when it is gone.")
	case notUnready > 0:
		return check.Failed("/readyz answers 503 while the database is down", fmt.Sprintf("%d of %d rounds did not", notUnready, n)).
			WithHint("readiness checks the dependencies (srv.Ready with pool.Ping); liveness (/healthz) does not.")
	case recovered < 0:
		return check.Failed(fmt.Sprintf("user reads answer 200 within %s of the database being healthy again", p.RecoverWithin), "they still fail").
			WithHint("the pool must drop dead connections and dial again: pgxpool does so by itself unless the server holds on to a single connection.")
	case before != after:
		return check.Failed("the same server process before and after (no restart)", fmt.Sprintf("process_start_time_seconds went from %s to %s", before, after)).
			WithHint("the server must survive a database outage without exiting; look for a fatal error in make stage 2 logs.")
	}
	return check.Passed("%d rounds during the outage: reads 503 (worst %s), /ping 200, /readyz 503; recovered %s after Postgres was healthy, same process",
		n, check.MS(worst), check.MS(recovered))
}
