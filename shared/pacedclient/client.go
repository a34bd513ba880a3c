// Package pacedclient is the course's background client: it sends one request per tick,
// picked from a weighted mix of paths, and logs every outcome with its latency and the
// server instance that answered. Stages differ only in the mix they configure.
package pacedclient

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Config is read from the environment.
type Config struct {
	Target   string        `env:"TARGET" envDefault:"http://server:8080"`
	Interval time.Duration `env:"INTERVAL" envDefault:"2s"`
	// Mix is "weight [METHOD] path" entries, comma separated: "3 /ping, 1 /long-query?duration=1s".
	// In a path, {user} becomes a user id drawn uniformly from 1..USERS and {hot} one from
	// the hot set 1..HOT_USERS, so a mix can model skewed traffic: "8 /users/{hot}, 2 /users/{user}".
	// A PUT rewrites that user with its seeded username and email (see WriteBody): the load
	// writes, and invalidates caches, without drifting the data: "1 PUT /users/{hot}".
	Mix          string        `env:"MIX" envDefault:"3 /ping, 1 /long-query?duration=1s"`
	Users        int           `env:"USERS" envDefault:"10000"`
	HotUsers     int           `env:"HOT_USERS" envDefault:"100"`
	Timeout      time.Duration `env:"REQUEST_TIMEOUT" envDefault:"10s"`
	SummaryEvery time.Duration `env:"SUMMARY_EVERY" envDefault:"30s"`
}

// Entry is one request of the mix with its relative weight.
type Entry struct {
	Weight int
	Method string
	Path   string
}

// ParseMix reads the Mix format; every weight must be a positive integer, the method GET
// (the default) or PUT, and every path must start with a slash.
func ParseMix(s string) ([]Entry, error) {
	var mix []Entry
	for part := range strings.SplitSeq(s, ",") {
		fields := strings.Fields(part)
		if len(fields) == 2 {
			fields = []string{fields[0], http.MethodGet, fields[1]}
		}
		if len(fields) != 3 {
			return nil, fmt.Errorf("mix entry %q: want \"WEIGHT [METHOD] /path\"", strings.TrimSpace(part))
		}
		w, err := strconv.Atoi(fields[0])
		if err != nil || w <= 0 {
			return nil, fmt.Errorf("mix entry %q: weight must be a positive integer", part)
		}
		if fields[1] != http.MethodGet && fields[1] != http.MethodPut {
			return nil, fmt.Errorf("mix entry %q: method must be GET or PUT", part)
		}
		if !strings.HasPrefix(fields[2], "/") {
			return nil, fmt.Errorf("mix entry %q: path must start with /", part)
		}
		mix = append(mix, Entry{Weight: w, Method: fields[1], Path: fields[2]})
	}
	if len(mix) == 0 {
		return nil, fmt.Errorf("mix is empty")
	}
	return mix, nil
}

// Pick returns the entry that r (uniform in [0, total weight)) falls in.
func Pick(mix []Entry, r int) Entry {
	for _, e := range mix {
		if r < e.Weight {
			return e
		}
		r -= e.Weight
	}
	return mix[len(mix)-1]
}

func totalWeight(mix []Entry) int {
	t := 0
	for _, e := range mix {
		t += e.Weight
	}
	return t
}

// Expand fills a path's placeholders with r, a source of random ints in [0, n), and
// returns the user id it drew (0 if none).
func Expand(path string, users, hot int, r func(n int) int) (string, int) {
	id := 0
	if strings.Contains(path, "{user}") {
		id = r(users) + 1
		path = strings.ReplaceAll(path, "{user}", strconv.Itoa(id))
	}
	if strings.Contains(path, "{hot}") {
		id = r(hot) + 1
		path = strings.ReplaceAll(path, "{hot}", strconv.Itoa(id))
	}
	return path, id
}

// WriteBody is what a PUT sends for user id: its username and email as seeded
// (shared/users/migrations/00002_seed.sql).
func WriteBody(id int) string {
	name := fmt.Sprintf("user%05d", id)
	return fmt.Sprintf(`{"username":%q,"email":%q}`, name, name+"@example.com")
}

// tally counts outcomes per path template between two summaries.
type tally struct {
	ok, failed int
	total      time.Duration
}

// Run sends requests until ctx is done. Requests run concurrently so a slow one does not
// delay the next tick: the client keeps its rate whatever the server does.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	mix, err := ParseMix(cfg.Mix)
	if err != nil {
		return err
	}
	if cfg.Interval <= 0 {
		return fmt.Errorf("INTERVAL must be positive, got %s", cfg.Interval)
	}
	if cfg.Users < 1 || cfg.HotUsers < 1 || cfg.HotUsers > cfg.Users {
		return fmt.Errorf("need 1 <= HOT_USERS <= USERS, got %d and %d", cfg.HotUsers, cfg.Users)
	}
	client := &http.Client{Timeout: cfg.Timeout}
	results := make(chan result, 64)
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	summary := time.NewTicker(cfg.SummaryEvery)
	defer summary.Stop()
	counts := map[string]*tally{}
	total := totalWeight(mix)

	log.Info("sending requests", "target", cfg.Target, "interval", cfg.Interval, "mix", cfg.Mix)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			e := Pick(mix, rand.IntN(total))
			path, id := Expand(e.Path, cfg.Users, cfg.HotUsers, rand.IntN)
			body := ""
			if e.Method == http.MethodPut {
				body = WriteBody(id)
			}
			label := e.Path
			if e.Method != http.MethodGet {
				label = e.Method + " " + e.Path
			}
			go func() { results <- send(ctx, client, e.Method, cfg.Target+path, body, label) }()
		case r := <-results:
			t := counts[r.path]
			if t == nil {
				t = &tally{}
				counts[r.path] = t
			}
			t.total += r.latency
			attrs := []any{"path", r.path, "url", r.url, "latency_ms", r.latency.Milliseconds(), "served_by", r.servedBy}
			if r.err != nil || r.status >= 500 {
				t.failed++
				log.Warn("request failed", append(attrs, "status", r.status, "err", r.err)...)
			} else {
				t.ok++
				log.Info("request", append(attrs, "status", r.status)...)
			}
		case <-summary.C:
			for path, t := range counts {
				n := t.ok + t.failed
				log.Info("summary", "path", path, "ok", t.ok, "failed", t.failed,
					"mean_latency_ms", (t.total / time.Duration(n)).Milliseconds())
			}
			clear(counts)
		}
	}
}

type result struct {
	path     string // the mix's template, for the per-path summary
	url      string
	status   int
	servedBy string
	latency  time.Duration
	err      error
}

func send(ctx context.Context, client *http.Client, method, url, body, label string) result {
	start := time.Now()
	r := result{path: label, url: url}
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		r.err = err
		return r
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		r.err, r.latency = err, time.Since(start)
		return r
	}
	_, r.err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	r.status, r.servedBy, r.latency = resp.StatusCode, resp.Header.Get("X-Served-By"), time.Since(start)
	return r
}
