package check

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sysdesign-course/course/tools/internal/load"
)

// AdminPort is where a course server's admin listener answers (shared/httpserver's
// ADMIN_ADDR): /metrics, /debug/pprof/, /admin/... No balancer forwards it, so checks reach
// each server by its name or hostname on the stack's network.
const AdminPort = "9090"

// AdminURL is the base URL of host's admin listener, e.g. http://server:9090.
func AdminURL(host string) string { return "http://" + net.JoinHostPort(host, AdminPort) }

// Request names one request a step sends, with its JSON body if it has one, and the
// status it must get if one in particular (ClientErrors otherwise accepts any 4xx).
type Request struct {
	Method, Path, Body string
	Want               int
}

// Wants sets the one status r must get.
func (r Request) Wants(status int) Request { r.Want = status; return r }

// ClientErrors sends every request at once and returns, sorted, a line for each that did
// not get a 4xx (its Want, if set) with a JSON {"error": "..."} body within 5 s (a 5xx, a
// hang, plain text).
func ClientErrors(ctx context.Context, e *Env, reqs []Request) []string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var mu sync.Mutex
	var wrong []string
	var wg sync.WaitGroup
	for _, r := range reqs {
		wg.Go(func() {
			got := ""
			resp, err := e.Send(ctx, "bad-input", r.Method, r.Path, r.Body)
			switch {
			case err != nil:
				got = "no answer: " + load.Classify(err)
			case resp.Status < 400 || resp.Status > 499, r.Want != 0 && resp.Status != r.Want:
				got = fmt.Sprintf("%d %s", resp.Status, Short(resp.Body))
				if r.Want != 0 {
					got += fmt.Sprintf(" (want %d)", r.Want)
				}
			case !IsJSON(resp.Header) || !HasError(resp.Body):
				got = fmt.Sprintf("%d with body %s", resp.Status, Short(resp.Body))
			}
			if got != "" {
				mu.Lock()
				req := r.Method + " " + r.Path
				if r.Body != "" {
					req += " " + Short([]byte(r.Body))
				}
				wrong = append(wrong, req+" -> "+got)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	sort.Strings(wrong)
	return wrong
}

// IsJSON reports a JSON content type.
func IsJSON(h http.Header) bool { return strings.HasPrefix(h.Get("Content-Type"), "application/json") }

// HasError reports a JSON body with a non-empty "error" string.
func HasError(body []byte) bool {
	var b struct{ Error string }
	return json.Unmarshal(body, &b) == nil && b.Error != ""
}

// Short is a body trimmed to one readable line.
func Short(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	if s == "" {
		return "(empty body)"
	}
	return s
}

// MS formats a duration for people: 0.8ms, 12ms, 2.004s.
func MS(d time.Duration) string {
	if d < 10*time.Millisecond {
		return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000)
	}
	return d.Round(time.Millisecond).String()
}

// Unfair names the replicas that served less than frac of an even share of the requests
// counted in by (replica -> requests), nothing at all included: a fair-share step's failure.
func Unfair[N int | int64](by map[string]N, replicas []string, frac float64) []string {
	var total N
	for _, n := range by {
		total += n
	}
	even := float64(total) / float64(len(replicas))
	var short []string
	for _, r := range replicas {
		if float64(by[r]) < frac*even {
			short = append(short, fmt.Sprintf("%s got %d (even share %.0f)", r, by[r], even))
		}
	}
	return short
}

// Counts formats a tally as "a x2, b x1", sorted.
func Counts(m map[string]int) string {
	parts := make([]string, 0, len(m))
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s x%d", k, v))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// Get, Post, Put and Delete build Requests.
func Get(path string) Request  { return Request{Method: http.MethodGet, Path: path} }
func Post(path string) Request { return Request{Method: http.MethodPost, Path: path} }
func PostJSON(path, body string) Request {
	return Request{Method: http.MethodPost, Path: path, Body: body}
}
func PutJSON(path, body string) Request {
	return Request{Method: http.MethodPut, Path: path, Body: body}
}
func Delete(path string) Request { return Request{Method: http.MethodDelete, Path: path} }
