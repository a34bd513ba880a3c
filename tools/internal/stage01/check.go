// Package stage01 proves stage 01's concepts on a live server: it answers, it serves slow
// requests concurrently, it refuses bad input with a JSON 4xx, and it shuts down gracefully.
package stage01

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"time"

	"github.com/sysdesign-course/course/tools/internal/bench"
	"github.com/sysdesign-course/course/tools/internal/check"
	"github.com/sysdesign-course/course/tools/internal/load"
	"github.com/sysdesign-course/course/tools/internal/report"
)

// Params size the steps; tests shrink the durations.
type Params struct {
	Service       string        // Compose service that the faults target
	Concurrent    int           // long queries sent at once
	LongQuery     time.Duration // each one's duration
	PingP99       time.Duration // /ping must stay under this at p99 during them
	InFlight      int           // long queries in flight when the server is stopped
	ShutdownQuery time.Duration // their duration
	RestartWithin time.Duration // how long the restarted server may take to be healthy
	Metrics       string        // the server's /metrics, on its admin listener
}

// Defaults are what `make stage 1 check` uses.
var Defaults = Params{
	Service: "server", Concurrent: 20, LongQuery: 2 * time.Second, PingP99: 250 * time.Millisecond,
	InFlight: 10, ShutdownQuery: 3 * time.Second, RestartWithin: 30 * time.Second,
	Metrics: check.AdminURL("server") + "/metrics",
}

const doc = "docs/01-base.md"

// Steps returns stage 01's check, in order. Graceful shutdown is last: it stops the server.
func Steps(p Params) []check.Step {
	return []check.Step{
		{
			Name: "ping", Title: "the server answers GET /ping with JSON, its instance and a request id",
			Doc:  doc + "#what-to-look-at",
			Hint: "is the stack up (make stage 1 up) and healthy (make stage 1 logs)? The route is registered in shared/httpserver/server.go.",
			Run:  ping,
		},
		{
			Name: "concurrency", Title: fmt.Sprintf("%d long queries of %s at once all finish in well under 2x their duration while /ping stays fast", p.Concurrent, p.LongQuery),
			Doc:  doc + "#concurrency",
			Hint: "the server serialises requests: look for a global lock or a single worker around the handlers; a Go HTTP server runs each request on its own goroutine, and a waiting request must not hold anything others need.",
			Run:  func(ctx context.Context, e *check.Env) check.Verdict { return concurrency(ctx, e, p) },
		},
		{
			Name: "bad-input", Title: "bad durations and unknown routes get a 4xx with a JSON error body, never a 5xx or a hang",
			Doc:  doc + "#bad-input",
			Hint: "validate the duration before using it and return httpserver.BadRequest; errors go through the JSON error handler in shared/httpserver/errors.go.",
			Run:  badInput,
		},
		{
			Name: "graceful-shutdown", Title: fmt.Sprintf("stopping the server with %d long queries in flight completes them all, and it serves again after start", p.InFlight),
			Doc:  doc + "#graceful-shutdown",
			Hint: "on SIGTERM the server must stop accepting, then wait for in-flight requests (http.Server.Shutdown) for up to SHUTDOWN_TIMEOUT; check that variable in compose.yaml and that stop_grace_period is longer than it.",
			Run:  func(ctx context.Context, e *check.Env) check.Verdict { return gracefulShutdown(ctx, e, p) },
		},
	}
}

func ping(ctx context.Context, e *check.Env) check.Verdict {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	r, err := e.Get(ctx, "ping", "/ping")
	if err != nil {
		return check.Failed("200 from GET /ping", "no response: "+load.Classify(err))
	}
	var body struct{ Message string }
	switch {
	case r.Status != http.StatusOK:
		return check.Failed("200 from GET /ping", fmt.Sprintf("%d %s", r.Status, check.Short(r.Body)))
	case !check.IsJSON(r.Header):
		return check.Failed("Content-Type: application/json", "Content-Type: "+r.Header.Get("Content-Type"))
	case json.Unmarshal(r.Body, &body) != nil || body.Message != "pong":
		return check.Failed(`a JSON body with "message": "pong"`, check.Short(r.Body))
	case r.Header.Get("X-Served-By") == "":
		return check.Failed("an X-Served-By header naming the instance", "no X-Served-By header").
			WithHint("the instance header is set by middleware in shared/httpserver/server.go")
	case r.Header.Get("X-Request-Id") == "":
		return check.Failed("an X-Request-Id header", "no X-Request-Id header").
			WithHint("the request id middleware (echo middleware.RequestID) is registered in shared/httpserver/server.go")
	}
	return check.Passed("200 pong from %s in %s, request id %s", r.Header.Get("X-Served-By"), check.MS(r.Latency), r.Header.Get("X-Request-Id"))
}

func concurrency(ctx context.Context, e *check.Env, p Params) check.Verdict {
	// A serial server would need Concurrent x LongQuery; wait only a little longer than 2x.
	deadline := 2*p.LongQuery + time.Second
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()

	type outcome struct {
		latency time.Duration
		err     string
	}
	results := make(chan outcome, p.Concurrent)
	start := time.Now()
	path := "/long-query?duration=" + p.LongQuery.String()
	for range p.Concurrent {
		go func() {
			r, err := e.Get(ctx, "long-query", path)
			switch {
			case err != nil:
				results <- outcome{err: load.Classify(err)}
			case r.Status != http.StatusOK:
				results <- outcome{err: fmt.Sprintf("HTTP %d", r.Status)}
			default:
				results <- outcome{latency: r.Latency}
			}
		}()
	}

	// Ping alongside until every long query is back.
	pings := report.NewHistogram()
	pingFailed := 0
	var mu sync.Mutex
	pingCtx, stopPing := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-pingCtx.Done():
				return
			case <-t.C:
			}
			r, err := e.Get(pingCtx, "ping", "/ping")
			mu.Lock()
			if err == nil && r.Status == http.StatusOK {
				_ = pings.RecordValue(max(r.Latency.Microseconds(), 1))
			} else if pingCtx.Err() == nil {
				pingFailed++
			}
			mu.Unlock()
		}
	})

	done, slowest := 0, time.Duration(0)
	failures := map[string]int{}
	for range p.Concurrent {
		o := <-results
		if o.err != "" {
			failures[o.err]++
			continue
		}
		done++
		slowest = max(slowest, o.latency)
	}
	wall := time.Since(start)
	stopPing()
	wg.Wait()

	limit := p.LongQuery * 3 / 2
	expected := fmt.Sprintf("all %d finish with 200 within %s (1.5x one query)", p.Concurrent, check.MS(limit))
	switch {
	case done < p.Concurrent:
		return check.Failed(expected, fmt.Sprintf("%d of %d finished within %s; the rest: %s", done, p.Concurrent, check.MS(deadline), check.Counts(failures)))
	case slowest > limit:
		return check.Failed(expected, fmt.Sprintf("all finished but the slowest took %s", check.MS(slowest)))
	}
	pingP99 := time.Duration(pings.ValueAtQuantile(99)) * time.Microsecond
	switch {
	case pings.TotalCount() == 0:
		return check.Failed(fmt.Sprintf("/ping answers during the long queries, p99 under %s", check.MS(p.PingP99)), fmt.Sprintf("no /ping answered (%d failed)", pingFailed))
	case pingFailed > 0 || pingP99 > p.PingP99:
		return check.Failed(fmt.Sprintf("/ping answers during the long queries, p99 under %s", check.MS(p.PingP99)),
			fmt.Sprintf("%d pings failed, p99 %s", pingFailed, check.MS(pingP99))).
			WithHint("long queries must not block other requests: nothing shared should be held while a request waits.")
	}
	return check.Passed("%d long queries of %s done in %s (slowest %s); %d pings meanwhile, p99 %s",
		p.Concurrent, p.LongQuery, check.MS(wall), check.MS(slowest), pings.TotalCount(), check.MS(pingP99))
}

var badCases = []check.Request{
	check.Get("/long-query?duration=-1s"),
	check.Get("/long-query?duration=31s"),
	check.Get("/long-query?duration=876000h"),
	check.Get("/long-query?duration=99999999999999999999h"),
	check.Get("/long-query?duration=abc"),
	check.Get("/long-query?duration=2"),
	check.Get("/long-query?duration=%27%3B%20DROP%20TABLE%20users%3B--"),
	check.Get("/no-such-path"),
	check.Post("/ping"),
}

func badInput(ctx context.Context, e *check.Env) check.Verdict {
	if wrong := check.ClientErrors(ctx, e, badCases); len(wrong) > 0 {
		return check.Failed(`a 4xx with a JSON body {"error": "..."} for each bad request`, strings.Join(wrong, "; "))
	}
	return check.Passed("%d bad requests all answered 4xx with a JSON error", len(badCases))
}

func gracefulShutdown(ctx context.Context, e *check.Env, p Params) check.Verdict {
	ctx, cancel := context.WithTimeout(ctx, p.ShutdownQuery+p.RestartWithin+30*time.Second)
	defer cancel()
	pooled := e
	e = e.Unpooled()

	// Each query gets its own connection, and we only stop the server once every request
	// has been written to it: otherwise a failure could be ours, not the server's.
	var sent sync.WaitGroup
	sent.Add(p.InFlight)
	results := make(chan string, p.InFlight)
	path := "/long-query?duration=" + p.ShutdownQuery.String()
	for range p.InFlight {
		go func() {
			once := sync.OnceFunc(sent.Done)
			defer once()
			trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { once() }}
			r, err := e.Get(httptrace.WithClientTrace(ctx, trace), "long-query", path)
			switch {
			case err != nil:
				results <- load.Classify(err)
			case r.Status != http.StatusOK || !json.Valid(r.Body):
				results <- fmt.Sprintf("HTTP %d %s", r.Status, check.Short(r.Body))
			default:
				results <- ""
			}
		}()
	}
	if !waitTimeout(&sent, 5*time.Second) {
		return check.NotProven("the %d long queries could not all be sent within 5s, so nothing was in flight to protect", p.InFlight)
	}
	// Stop once every handler runs: the gauge counts them and the scrape that reads it.
	waitInFlight(ctx, pooled.Client, p.Metrics, p.InFlight, min(p.ShutdownQuery/4, 300*time.Millisecond))

	stopStart := time.Now()
	if err := e.Faults.Stop(ctx, p.Service); err != nil {
		return check.NotProven("could not stop %s: %v", p.Service, err)
	}
	stopTook := time.Since(stopStart)

	ok, failures := 0, map[string]int{}
	for range p.InFlight {
		if r := <-results; r == "" {
			ok++
		} else {
			failures[r]++
		}
	}

	restarted := e.Faults.Start(ctx, p.Service)
	if restarted == nil {
		wctx, wcancel := context.WithTimeout(ctx, p.RestartWithin)
		restarted = e.Faults.WaitHealthy(wctx, p.Service)
		wcancel()
	}
	pooled.Client.CloseIdleConnections() // their server is gone

	if ok < p.InFlight {
		return check.Failed(fmt.Sprintf("all %d in-flight long queries complete with 200 after the stop began", p.InFlight),
			fmt.Sprintf("%d of %d completed; the rest: %s (the stop took %s)", ok, p.InFlight, check.Counts(failures), check.MS(stopTook)))
	}
	if restarted != nil {
		return check.Failed(fmt.Sprintf("%s healthy again within %s of start", p.Service, p.RestartWithin), restarted.Error()).
			WithHint("look at the server's logs after the restart: make stage 1 logs")
	}
	rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
	defer rcancel()
	r, err := e.Get(rctx, "ping", "/ping")
	if err != nil || r.Status != http.StatusOK {
		got := "no answer"
		if err != nil {
			got += ": " + load.Classify(err)
		} else {
			got = fmt.Sprintf("HTTP %d", r.Status)
		}
		return check.Failed("200 from /ping after the restart", got).WithHint("look at the server's logs after the restart: make stage 1 logs")
	}
	return check.Passed("%d of %d in-flight queries completed while the server stopped (stop took %s); serving again after start",
		ok, p.InFlight, check.MS(stopTook))
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// waitInFlight polls the server's http_requests_in_flight gauge (at metrics, on the admin
// listener, whose own requests it does not count) until it reaches want, for at most
// within: a server whose /metrics cannot tell (or serves one request at a time) gets that
// long to start its handlers.
func waitInFlight(ctx context.Context, client *http.Client, metrics string, want int, within time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	for {
		m, err := bench.Scrape(ctx, client, metrics)
		if err == nil && bench.Sum(m, "http_requests_in_flight") >= float64(want) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}
