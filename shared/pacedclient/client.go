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
	// Mix is "weight path" pairs, comma separated: "3 /ping, 1 /long-query?duration=1s".
	// In a path, {user} becomes a user id drawn uniformly from 1..USERS and {hot} one from
	// the hot set 1..HOT_USERS, so a mix can model skewed traffic: "8 /users/{hot}, 2 /users/{user}".
	Mix          string        `env:"MIX" envDefault:"3 /ping, 1 /long-query?duration=1s"`
	Users        int           `env:"USERS" envDefault:"10000"`
	HotUsers     int           `env:"HOT_USERS" envDefault:"100"`
	Timeout      time.Duration `env:"REQUEST_TIMEOUT" envDefault:"10s"`
	SummaryEvery time.Duration `env:"SUMMARY_EVERY" envDefault:"30s"`
}

// Entry is one path of the mix with its relative weight.
type Entry struct {
	Weight int
	Path   string
}

// ParseMix reads the Mix format; every weight must be a positive integer and every path
// must start with a slash.
func ParseMix(s string) ([]Entry, error) {
	var mix []Entry
	for part := range strings.SplitSeq(s, ",") {
		fields := strings.Fields(part)
		if len(fields) != 2 {
			return nil, fmt.Errorf("mix entry %q: want \"WEIGHT /path\"", strings.TrimSpace(part))
		}
		w, err := strconv.Atoi(fields[0])
		if err != nil || w <= 0 {
			return nil, fmt.Errorf("mix entry %q: weight must be a positive integer", part)
		}
		if !strings.HasPrefix(fields[1], "/") {
			return nil, fmt.Errorf("mix entry %q: path must start with /", part)
		}
		mix = append(mix, Entry{Weight: w, Path: fields[1]})
	}
	if len(mix) == 0 {
		return nil, fmt.Errorf("mix is empty")
	}
	return mix, nil
}

// Pick returns the path of the entry that r (uniform in [0, total weight)) falls in.
func Pick(mix []Entry, r int) string {
	for _, e := range mix {
		if r < e.Weight {
			return e.Path
		}
		r -= e.Weight
	}
	return mix[len(mix)-1].Path
}

func totalWeight(mix []Entry) int {
	t := 0
	for _, e := range mix {
		t += e.Weight
	}
	return t
}

// Expand fills a path's placeholders with r, a source of random ints in [0, n).
func Expand(path string, users, hot int, r func(n int) int) string {
	if strings.Contains(path, "{user}") {
		path = strings.ReplaceAll(path, "{user}", strconv.Itoa(r(users)+1))
	}
	if strings.Contains(path, "{hot}") {
		path = strings.ReplaceAll(path, "{hot}", strconv.Itoa(r(hot)+1))
	}
	return path
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
			path := Pick(mix, rand.IntN(total))
			url := cfg.Target + Expand(path, cfg.Users, cfg.HotUsers, rand.IntN)
			go func() { results <- send(ctx, client, url, path) }()
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

func send(ctx context.Context, client *http.Client, url, path string) result {
	start := time.Now()
	r := result{path: path, url: url}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		r.err = err
		return r
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
