// Package check runs a stage's steps against a live stack and reports, one line per step,
// pass, fail or inconclusive; a failure says what was expected, what was seen, where to
// look and which section of the chapter explains it.
package check

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/sysdesign-course/course/tools/internal/fault"
	"github.com/sysdesign-course/course/tools/internal/report"
)

// Outcome of a step or a whole check.
type Outcome string

// The three outcomes; a check exits 0, 1 or 2 accordingly.
const (
	Pass         Outcome = "pass"
	Fail         Outcome = "fail"
	Inconclusive Outcome = "inconclusive"
)

// ExitCode maps an outcome to the process exit status.
func (o Outcome) ExitCode() int {
	switch o {
	case Pass:
		return 0
	case Fail:
		return 1
	default:
		return 2
	}
}

// Verdict is what a step concluded.
type Verdict struct {
	Outcome  Outcome
	Seen     string // one line: what happened (always shown)
	Expected string // on failure: what the concept promises
	Actual   string // on failure: what the stack did instead
	Hint     string // overrides the step's default hint
}

// Passed is a passing verdict with a one-line summary.
func Passed(format string, args ...any) Verdict {
	return Verdict{Outcome: Pass, Seen: fmt.Sprintf(format, args...)}
}

// Failed is a failing verdict; the step's hint and doc section are added when printed.
func Failed(expected, actual string) Verdict {
	return Verdict{Outcome: Fail, Expected: expected, Actual: actual}
}

// NotProven is an inconclusive verdict: the step could not exercise the concept.
func NotProven(format string, args ...any) Verdict {
	return Verdict{Outcome: Inconclusive, Seen: fmt.Sprintf(format, args...)}
}

// WithHint replaces the step's default hint for this verdict.
func (v Verdict) WithHint(h string) Verdict { v.Hint = h; return v }

// Step is one thing a stage's check proves.
type Step struct {
	Name  string // short id, used in output and by the negative controls
	Title string // what it proves, in a sentence
	Doc   string // chapter section to read when it fails, e.g. docs/01-base.md#graceful-shutdown
	Hint  string // where to look when it fails
	Run   func(ctx context.Context, env *Env) Verdict
}

// Env is what steps get: the target, the means to break it, and the run's timeline.
type Env struct {
	Target   string // base URL of the service under test, e.g. http://server:8080
	Faults   fault.Injector
	Stack    Observer // the containers' state, for waits on a settling stack (nil: unknown)
	Timeline *report.Timeline
	Client   *http.Client
}

// Response is a fetched response with its body read.
type Response struct {
	Status  int
	Header  http.Header
	Body    []byte
	Latency time.Duration
}

// Unpooled returns a copy of e whose client opens a fresh connection per request. Steps
// that break the server use it: a pooled client silently retries a GET whose reused
// connection died, which would hide exactly the failure the step is looking for.
func (e *Env) Unpooled() *Env {
	c := *e
	t := &http.Transport{}
	if have, ok := e.Client.Transport.(*http.Transport); ok {
		t = have.Clone() // the same dialer and timeouts
	}
	t.DisableKeepAlives = true
	c.Client = &http.Client{Timeout: e.Client.Timeout, Transport: t}
	return &c
}

// Get fetches Target+path, recording the request on the timeline under series.
func (e *Env) Get(ctx context.Context, series, path string) (*Response, error) {
	return e.Do(ctx, series, http.MethodGet, path)
}

// Do sends a body-less request to Target+path, recording it on the timeline under series.
func (e *Env) Do(ctx context.Context, series, method, path string) (*Response, error) {
	return e.Send(ctx, series, method, path, "")
}

// Send is Do with a JSON body (none if body is empty).
func (e *Env) Send(ctx context.Context, series, method, path, body string) (*Response, error) {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, method, e.Target+path, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.Client.Do(req)
	if err == nil {
		defer resp.Body.Close()
		var body []byte
		body, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err == nil {
			r := &Response{Status: resp.StatusCode, Header: resp.Header, Body: body, Latency: time.Since(start)}
			e.Timeline.Record(series, start, r.Latency, r.Status >= 500)
			return r, nil
		}
	}
	if ctx.Err() == nil { // a request the step itself gave up on is not the stack's failure
		e.Timeline.Record(series, start, time.Since(start), true)
	}
	return nil, err
}

// Result is a step's verdict as printed and saved in report.json.
type Result struct {
	Step     string  `json:"step"`
	Title    string  `json:"title"`
	Outcome  Outcome `json:"outcome"`
	Seen     string  `json:"seen,omitempty"`
	Expected string  `json:"expected,omitempty"`
	Actual   string  `json:"actual,omitempty"`
	Hint     string  `json:"hint,omitempty"`
	Doc      string  `json:"doc,omitempty"`
	Seconds  float64 `json:"seconds"`
}

// Run executes every step in order (a failed step does not stop the others, so one run
// shows everything that is wrong) and prints one line per step to out, prefixed like
// "[stage-1]". The overall outcome is fail if any step failed, else inconclusive if any
// was, else pass.
func Run(ctx context.Context, prefix string, steps []Step, env *Env, out io.Writer) ([]Result, Outcome) {
	overall := Pass
	results := make([]Result, 0, len(steps))
	for _, s := range steps {
		start := time.Now()
		fmt.Fprintf(out, "[%s] %s: %s\n", prefix, s.Name, s.Title)
		v := s.Run(ctx, env)
		r := Result{Step: s.Name, Title: s.Title, Outcome: v.Outcome, Seen: v.Seen, Seconds: time.Since(start).Seconds()}
		switch v.Outcome {
		case Pass:
			fmt.Fprintf(out, "[%s] ✓ %s (%.1fs)\n", prefix, v.Seen, r.Seconds)
		case Inconclusive:
			fmt.Fprintf(out, "[%s] ? inconclusive: %s\n", prefix, v.Seen)
			if overall == Pass {
				overall = Inconclusive
			}
		default:
			r.Outcome, r.Expected, r.Actual, r.Hint, r.Doc = Fail, v.Expected, v.Actual, s.Hint, s.Doc
			if v.Hint != "" {
				r.Hint = v.Hint
			}
			fmt.Fprintf(out, "[%s] ✗ %s failed\n", prefix, s.Name)
			pad := strings.Repeat(" ", len(prefix)+3)
			fmt.Fprintf(out, "%sexpected: %s\n%sactual:   %s\n", pad, r.Expected, pad, r.Actual)
			if r.Hint != "" {
				fmt.Fprintf(out, "%shint:     %s\n", pad, r.Hint)
			}
			fmt.Fprintf(out, "%sread:     %s\n", pad, r.Doc)
			overall = Fail
		}
		results = append(results, r)
	}
	return results, overall
}
