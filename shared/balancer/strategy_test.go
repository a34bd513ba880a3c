package balancer

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// picks sends n GETs one after the other and returns the X-Backend of each.
func picks(t *testing.T, lb *Balancer, n int) []string {
	t.Helper()
	out := make([]string, n)
	for i := range out {
		w := serve(lb, http.MethodGet, "/", "")
		require.Equal(t, http.StatusOK, w.Code, w.Body.String())
		out[i] = w.Header().Get("X-Backend")
	}
	return out
}

func count(seq []string) map[string]int {
	m := map[string]int{}
	for _, s := range seq {
		m[s]++
	}
	return m
}

func TestParseStrategy(t *testing.T) {
	t.Parallel()
	for _, s := range []Strategy{RoundRobin, Weighted, LeastConn} {
		got, err := ParseStrategy(string(s))
		require.NoError(t, err)
		assert.Equal(t, s, got)
	}
	for _, s := range []string{"", "random", "Round-Robin", "least_conn"} {
		_, err := ParseStrategy(s)
		assert.ErrorContains(t, err, "unknown strategy", s)
	}
}

func TestRoundRobinIsExactlyEven(t *testing.T) {
	t.Parallel()
	a, b, c := okBackend(t), okBackend(t), okBackend(t)
	lb := newLB(t, testConfig(a.URL, b.URL, c.URL))
	seq := picks(t, lb, 300)
	assert.Equal(t, map[string]int{hostOf(a): 100, hostOf(b): 100, hostOf(c): 100}, count(seq))
	for i := 3; i < len(seq); i++ {
		assert.Equal(t, seq[i-3], seq[i], "pick %d: each in turn, in a fixed order", i)
	}
	for _, srv := range []*httptest.Server{a, b, c} {
		s, _ := statsOf(lb, srv.URL)
		assert.Equal(t, int64(100), s.Total)
	}
}

func TestSmoothWeightedThreeToOne(t *testing.T) {
	t.Parallel()
	heavy, light := okBackend(t), okBackend(t)
	cfg := testConfig()
	cfg.Strategy = string(Weighted)
	lb := newLB(t, cfg)
	_, err := lb.Add(heavy.URL, 3)
	require.NoError(t, err)
	_, err = lb.Add(light.URL, 1)
	require.NoError(t, err)

	seq := picks(t, lb, 400)
	h, l := hostOf(heavy), hostOf(light)
	assert.Equal(t, map[string]int{h: 300, l: 100}, count(seq))
	assert.Equal(t, []string{h, h, l, h}, seq[:4], "smooth: a a b a, not a a a b")
	for i := 4; i < len(seq); i++ {
		require.Equal(t, seq[i-4], seq[i], "pick %d: the pattern repeats every 4", i)
	}
	sinceLight := 0
	for i, s := range seq {
		if s == l {
			sinceLight = 0
			continue
		}
		sinceLight++
		require.LessOrEqual(t, sinceLight, 3, "pick %d: the light backend waited more than 3 picks", i)
	}
}

func TestSmoothWeightedMatchesNginx(t *testing.T) {
	t.Parallel()
	a, b, c := okBackend(t), okBackend(t), okBackend(t)
	cfg := testConfig()
	cfg.Strategy = string(Weighted)
	lb := newLB(t, cfg)
	for _, r := range []struct {
		srv    *httptest.Server
		weight int64
	}{{a, 5}, {b, 1}, {c, 1}} { // registration order breaks ties
		_, err := lb.Add(r.srv.URL, r.weight)
		require.NoError(t, err)
	}
	name := map[string]string{hostOf(a): "a", hostOf(b): "b", hostOf(c): "c"}
	got := ""
	for _, host := range picks(t, lb, 14) {
		got += name[host]
	}
	// nginx's own example for weights 5, 1, 1 (ngx_http_upstream_round_robin.c): a a b a c a a.
	assert.Equal(t, "aabacaa"+"aabacaa", got)
}

func TestWeightedSkipsDownBackendsAndFollowsWeightChanges(t *testing.T) {
	t.Parallel()
	a, b, c := okBackend(t), okBackend(t), okBackend(t)
	cfg := testConfig(a.URL, b.URL, c.URL)
	cfg.Strategy = string(Weighted)
	lb := newLB(t, cfg)
	lb.backends[2].observe(Check{}, 1, 1) // c down
	require.NoError(t, lb.SetWeight(a.URL, 2))
	assert.Equal(t, map[string]int{hostOf(a): 200, hostOf(b): 100}, count(picks(t, lb, 300)))
}

func TestEveryStrategySkipsDownBackends(t *testing.T) {
	t.Parallel()
	for _, st := range []Strategy{RoundRobin, Weighted, LeastConn} {
		t.Run(string(st), func(t *testing.T) {
			t.Parallel()
			a, b, c := okBackend(t), okBackend(t), okBackend(t)
			cfg := testConfig(a.URL, b.URL, c.URL)
			cfg.Strategy = string(st)
			lb := newLB(t, cfg)
			lb.backends[1].observe(Check{}, 1, 1) // b down
			require.Equal(t, "down", stateOf(lb, b.URL))
			assert.Equal(t, map[string]int{hostOf(a): 30, hostOf(c): 30}, count(picks(t, lb, 60)))
		})
	}
}

func TestLeastConnTiesGoRoundRobin(t *testing.T) {
	t.Parallel()
	a, b, c := okBackend(t), okBackend(t), okBackend(t)
	cfg := testConfig(a.URL, b.URL, c.URL)
	cfg.Strategy = string(LeastConn)
	lb := newLB(t, cfg)
	assert.Equal(t, map[string]int{hostOf(a): 100, hostOf(b): 100, hostOf(c): 100}, count(picks(t, lb, 300)),
		"idle backends tie: not always the first")
}

func TestLeastConnPrefersTheLessBusyBackend(t *testing.T) {
	t.Parallel()
	const held = 5
	arrived := make(chan struct{}, held)
	release := make(chan struct{})
	slow := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		case <-r.Context().Done():
			return
		}
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "slow")
	})
	releaseAll := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseAll) // before slow.Close, which waits for its handlers
	fast := okBackend(t)
	cfg := testConfig(slow.URL)
	cfg.Strategy = string(LeastConn)
	lb := newLB(t, cfg)
	lbURL := serveLB(t, lb)

	// Hold held requests on the slow backend, alone for now.
	var holding sync.WaitGroup
	for range held {
		holding.Go(func() {
			status, backend, body := get(t, lbURL+"/")
			assert.Equal(t, http.StatusOK, status)
			assert.Equal(t, hostOf(slow), backend)
			assert.Equal(t, "slow", body)
		})
	}
	for i := range held {
		select {
		case <-arrived:
		case <-time.After(5 * time.Second):
			t.Fatalf("only %d of %d requests reached the slow backend", i, held)
		}
	}
	_, err := lb.Add(fast.URL, 1)
	require.NoError(t, err)

	// One after the other, and then as many at once as the slow one holds: all to the fast one.
	// A request wrongly sent to the slow backend would hang there: give up after a second.
	quick := func() (int, string, string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, lbURL+"/", nil)
		if err != nil {
			return 0, "", err.Error()
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("X-Backend"), string(body)
	}
	for range 10 {
		status, backend, body := quick()
		require.Equal(t, http.StatusOK, status, body)
		require.Equal(t, hostOf(fast), backend)
	}
	var burst sync.WaitGroup
	for range held {
		burst.Go(func() {
			status, backend, body := quick()
			assert.Equal(t, http.StatusOK, status, body)
			assert.Equal(t, hostOf(fast), backend)
		})
	}
	burst.Wait()
	s, _ := statsOf(lb, slow.URL)
	assert.Equal(t, int64(held), s.InFlight)
	assert.Equal(t, int64(held), s.Total)

	releaseAll()
	holding.Wait()
	s, _ = statsOf(lb, slow.URL)
	assert.Zero(t, s.InFlight)
	f, _ := statsOf(lb, fast.URL)
	assert.Equal(t, int64(10+held), f.Total)
}
