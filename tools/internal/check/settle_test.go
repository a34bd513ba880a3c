package check

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sysdesign-course/course/tools/internal/fault"
	"github.com/sysdesign-course/course/tools/internal/report"
)

// stack is a fake stage-03 stack: an "nginx" round-robin front over replicas, of which
// only those in rotation answer, and the containers' state as Docker would report it.
type stack struct {
	mu         sync.Mutex
	containers []fault.Container
	rotation   []string // replicas the front sends to
	front      *httptest.Server
	looks      atomic.Int32            // calls of Stack and Replicas
	onLook     func(n int32, s *stack) // changes the stack as time passes, under mu
}

func newStack(t *testing.T, replicas ...string) *stack {
	s := &stack{rotation: replicas}
	long := time.Now().Add(-time.Minute)
	s.containers = []fault.Container{{Service: "nginx", Name: "course-03-replicas-nginx-1", Host: "nginx", State: "running", Health: "healthy", StartedAt: long}}
	for i, r := range replicas {
		s.containers = append(s.containers, fault.Container{Service: "server", Name: "course-03-replicas-server-" + string(rune('1'+i)),
			Host: r, State: "running", Health: "healthy", StartedAt: long})
	}
	var next atomic.Uint64
	s.front = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		rot := slices.Clone(s.rotation)
		s.mu.Unlock()
		if len(rot) == 0 {
			http.Error(w, "bad gateway", http.StatusBadGateway)
			return
		}
		w.Header().Set("X-Served-By", rot[next.Add(1)%uint64(len(rot))])
		_, _ = w.Write([]byte(`{"pong":true}`))
	}))
	t.Cleanup(s.front.Close)
	return s
}

func (s *stack) Stack(context.Context) ([]fault.Container, error) {
	n := s.looks.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.onLook != nil {
		s.onLook(n, s)
	}
	return slices.Clone(s.containers), nil
}

func (s *stack) Replicas(context.Context, string) ([]string, error) {
	n := s.looks.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.onLook != nil {
		s.onLook(n, s)
	}
	var hosts []string
	for _, c := range s.containers {
		if c.Service == "server" && c.State == "running" {
			hosts = append(hosts, c.Host)
		}
	}
	return hosts, nil
}

// env points at the front under the name "nginx", as the stage's target does.
func (s *stack) env() *Env {
	front := s.front.Listener.Addr().String()
	return &Env{Target: "http://nginx:8080", Stack: s, Timeline: report.NewTimeline(250 * time.Millisecond), Client: &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, front)
		}},
	}}
}

var quick = Settle{Stage: 3, Replicas: "server", Probe: "/ping", Quiet: 3 * time.Second, Within: 1500 * time.Millisecond, Poll: 20 * time.Millisecond, Recent: 30 * time.Second}

func TestPreflightPassesASettledStack(t *testing.T) {
	s := newStack(t, "aaa", "bbb", "ccc")
	var out bytes.Buffer
	v := Preflight(context.Background(), s.env(), s, quick, &out, "stage-3")
	assert.Equal(t, Pass, v.Outcome, v.Seen)
	assert.Contains(t, v.Seen, "4 containers running and healthy, 3 of 3 server replicas answer through http://nginx:8080")
	assert.Empty(t, out.String(), "no progress line when nothing had to be waited for")
}

func TestPreflightWaitsForARestartedReplica(t *testing.T) {
	s := newStack(t, "aaa", "bbb", "ccc")
	s.rotation = []string{"aaa", "bbb"} // nginx still has ccc in fail_timeout
	s.containers[3].StartedAt, s.containers[3].Health = time.Now(), "starting"
	s.onLook = func(n int32, s *stack) {
		switch n {
		case 5: // healthy, and started long enough ago
			s.containers[3].Health, s.containers[3].StartedAt = "healthy", time.Now().Add(-5*time.Second)
		case 10: // back in rotation
			s.rotation = append(s.rotation, "ccc")
		}
	}
	var out bytes.Buffer
	v := Preflight(context.Background(), s.env(), s, quick, &out, "stage-3")
	assert.Equal(t, Pass, v.Outcome, v.Seen)
	assert.Contains(t, v.Seen, "settled after")
	assert.Equal(t, "[stage-3] preflight: waiting up to 1.5s for the stack to settle: server-3 is running but its healthcheck has not passed yet\n", out.String())
}

func TestPreflightNamesWhatNeverSettles(t *testing.T) {
	for name, tc := range map[string]struct {
		change func(s *stack)
		want   string
	}{
		"not in rotation": {func(s *stack) {
			s.rotation = []string{"aaa", "bbb"}
			s.containers[3].StartedAt = time.Now().Add(-7 * time.Second)
		}, "server replica ccc started 7s ago and is not in nginx's rotation yet"},
		"paused":     {func(s *stack) { s.containers[2].State = "paused" }, "server-2 is paused"},
		"stopped":    {func(s *stack) { s.containers[2].State, s.containers[2].ExitCode = "exited", 137 }, "server-2 is exited (exit code 137)"},
		"crash loop": {func(s *stack) { s.onLook = func(_ int32, s *stack) { s.containers[1].StartedAt = time.Now() } }, "server-1 started "},
		"unhealthy":  {func(s *stack) { s.containers[0].Health = "unhealthy" }, "nginx-1 is unhealthy"},
		"no replica running": {func(s *stack) {
			for i := 1; i < 4; i++ {
				s.containers[i].State = "exited"
			}
			s.containers = s.containers[:1]
		}, "no server replica is running"},
	} {
		t.Run(name, func(t *testing.T) {
			s := newStack(t, "aaa", "bbb", "ccc")
			tc.change(s)
			var out bytes.Buffer
			brief := quick
			brief.Within, brief.Rejoin = 500*time.Millisecond, "reload nginx"
			v := Preflight(context.Background(), s.env(), s, brief, &out, "stage-3")
			assert.Equal(t, Inconclusive, v.Outcome)
			assert.Contains(t, v.Seen, tc.want)
			assert.Contains(t, v.Seen, "make stage 3 ps")
			assert.Equal(t, name == "not in rotation", strings.Contains(v.Seen, "if it never rejoins: reload nginx"), v.Seen)
			assert.Contains(t, out.String(), "waiting up to 500ms")
		})
	}
}

// A stack without the balancer the check talks to (a negative control), or whose
// balancer answers nothing, is not settling: it is broken, and the steps say how.
func TestPreflightLeavesABrokenStackToTheSteps(t *testing.T) {
	s := newStack(t, "aaa", "bbb")
	s.containers = s.containers[1:] // the stage-02 stack: no nginx
	v := Preflight(context.Background(), s.env(), s, quick, &bytes.Buffer{}, "stage-3")
	assert.Equal(t, Pass, v.Outcome, v.Seen)

	s = newStack(t, "aaa", "bbb")
	s.rotation = []string{"aaa"} // bbb runs for a minute already and nginx never sends to it
	v = Preflight(context.Background(), s.env(), s, quick, &bytes.Buffer{}, "stage-3")
	assert.Equal(t, Pass, v.Outcome, v.Seen)

	s = newStack(t, "aaa", "bbb")
	s.rotation = nil // nginx answers 502 to everything
	v = Preflight(context.Background(), s.env(), s, quick, &bytes.Buffer{}, "stage-3")
	assert.Equal(t, Pass, v.Outcome, v.Seen)
}

func TestRunSettledSkipsTheStepsOfAnUnsettledStack(t *testing.T) {
	s := newStack(t, "aaa")
	s.containers[1].State = "paused"
	ran := false
	steps := []Step{{Name: "fair-share", Run: func(context.Context, *Env) Verdict { ran = true; return Passed("") }}}
	results, outcome := RunSettled(context.Background(), "stage-3", s, quick, steps, s.env(), &bytes.Buffer{})
	assert.Equal(t, Inconclusive, outcome)
	assert.False(t, ran)
	require.Len(t, results, 1)
	assert.Equal(t, PreflightStep, results[0].Step)

	s.containers[1].State = "running"
	results, outcome = RunSettled(context.Background(), "stage-3", s, quick, steps, s.env(), &bytes.Buffer{})
	assert.Equal(t, Pass, outcome)
	assert.True(t, ran)
	assert.Len(t, results, 2)
}

func TestAwaitRotation(t *testing.T) {
	s := newStack(t, "aaa", "bbb", "ccc")
	s.rotation = []string{"aaa", "bbb"}
	// Left out for longer than a restart explains: not waited for, the step judges.
	start := time.Now()
	hosts, _, ok := AwaitRotation(context.Background(), s.env(), s, "server", 5*time.Second)
	assert.True(t, ok)
	assert.Less(t, time.Since(start), 2*time.Second)
	assert.Equal(t, []string{"aaa", "bbb", "ccc"}, hosts)

	s.containers[3].StartedAt = time.Now().Add(-5 * time.Second) // ccc just came back
	hosts, v, ok := AwaitRotation(context.Background(), s.env(), s, "server", 300*time.Millisecond)
	assert.False(t, ok)
	assert.Equal(t, Inconclusive, v.Outcome)
	assert.Contains(t, v.Seen, "server replicas ccc started recently and did not answer through nginx")
	assert.Equal(t, []string{"aaa", "bbb", "ccc"}, hosts)

	s.onLook = func(n int32, s *stack) {
		if n == 3 { // ccc joins after two rounds of probes missed it
			s.rotation = append(s.rotation, "ccc")
		}
	}
	s.looks.Store(0)
	hosts, _, ok = AwaitRotation(context.Background(), s.env(), s, "server", 5*time.Second)
	assert.True(t, ok)
	assert.Equal(t, []string{"aaa", "bbb", "ccc"}, hosts, "in the lister's order")
}
