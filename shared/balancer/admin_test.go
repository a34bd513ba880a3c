package balancer

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// admin sends one request to lb's admin handler.
func admin(lb *Balancer, method, path, body string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	lb.Admin().ServeHTTP(w, r)
	return w
}

func decodeJSON[T any](t *testing.T, w *httptest.ResponseRecorder) T {
	t.Helper()
	require.True(t, strings.HasPrefix(w.Header().Get("Content-Type"), "application/json"), w.Header().Get("Content-Type"))
	var v T
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &v), w.Body.String())
	return v
}

func weights(lb *Balancer) map[string]int64 {
	m := map[string]int64{}
	for _, s := range lb.Stats().Backends {
		m[s.URL] = s.Weight
	}
	return m
}

func TestRegisterAddsThenIsAHeartbeat(t *testing.T) {
	t.Parallel()
	be, other := okBackend(t), okBackend(t)
	lb := newLB(t, testConfig())

	w := admin(lb, http.MethodPost, "/register", fmt.Sprintf(`{"url":%q,"weight":2}`, be.URL))
	assert.Equal(t, http.StatusCreated, w.Code)
	assert.Equal(t, Registration{URL: be.URL, Weight: 2}, decodeJSON[Registration](t, w))
	assert.Equal(t, []Stats{{URL: be.URL, State: "up", Weight: 2}}, lb.Stats().Backends)
	assert.Equal(t, http.StatusOK, serve(lb, http.MethodGet, "/", "").Code, "registered backends receive traffic")

	// Registering again (with or without the slash) is a heartbeat: 200, and the weight set
	// by the operator stays.
	require.NoError(t, lb.SetWeight(be.URL, 7))
	w = admin(lb, http.MethodPost, "/register", fmt.Sprintf(`{"url":%q,"weight":5}`, be.URL+"/"))
	assert.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, map[string]int64{be.URL: 7}, weights(lb))

	// The registrar may leave the weight out; JSON cannot tell that from an explicit 0, and
	// both mean the default, 1.
	w = admin(lb, http.MethodPost, "/register", fmt.Sprintf(`{"url":%q,"weight":0}`, other.URL))
	assert.Equal(t, http.StatusCreated, w.Code)
	assert.Equal(t, Registration{URL: other.URL, Weight: 1}, decodeJSON[Registration](t, w))
	require.True(t, lb.Remove(other.URL))
	w = admin(lb, http.MethodPost, "/register", fmt.Sprintf(`{"url":%q}`, other.URL))
	assert.Equal(t, http.StatusCreated, w.Code)
	assert.Equal(t, map[string]int64{be.URL: 7, other.URL: 1}, weights(lb))
}

func TestRegisterRejectsBadBodies(t *testing.T) {
	t.Parallel()
	lb := newLB(t, testConfig("http://kept:8080"))
	for _, c := range []struct{ body, msg string }{
		{`{"url":"backend:8080"}`, "backend url must look like"},
		{`{"url":"ftp://backend:8080"}`, "backend url must look like"},
		{`{"url":"http://backend:8080/api"}`, "backend url must look like"},
		{`{"url":""}`, "backend url must look like"},
		{`{"url":"http://u:p@backend:8080"}`, "backend url must look like"},
		{`{"url":"http://backend:8080?x=1"}`, "backend url must look like"},
		{`{"url":"http://backend:8080#top"}`, "backend url must look like"},
		{`{"url":"http://:8080"}`, "backend url must look like"},
		{`{"url":"http://bäckend:8080"}`, "backend url must look like"},
		{`{"url":"http://backend:8080"} x`, "exactly one JSON object"},
		{`{"url":"http://backend:8080"}}`, "exactly one JSON object"},
		{`{"url":"http://backend:8080","weight":101}`, "weight must be from 1 to 100"},
		{`{"url":"http://backend:8080","weight":-1}`, "weight must be from 1 to 100"},
		{`{"url":"http://backend:8080","wieght":2}`, `unknown field "wieght"`},
		{`{"url":"http://backend:8080","weight":"2"}`, "body must be JSON"},
		{`{"url":"http://backend:8080"`, "body must be JSON"},
		{``, "body must be JSON"},
		{`{"url":"http://backend:8080","pad":"` + strings.Repeat("x", 5000) + `"}`, "body must be JSON"},
	} {
		w := admin(lb, http.MethodPost, "/register", c.body)
		assert.Equal(t, http.StatusBadRequest, w.Code, c.body)
		e := decodeJSON[errorBody](t, w)
		assert.Equal(t, 400, e.Status, c.body)
		assert.Contains(t, e.Error, c.msg, c.body)
	}
	assert.Equal(t, map[string]int64{"http://kept:8080": 1}, weights(lb), "nothing changed")
}

func TestDeregister(t *testing.T) {
	t.Parallel()
	lb := newLB(t, testConfig("http://a:8080", "http://b:8080"))

	w := admin(lb, http.MethodDelete, "/register", `{"url":"http://a:8080/"}`)
	assert.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, Registration{URL: "http://a:8080/"}, decodeJSON[Registration](t, w))
	assert.Equal(t, map[string]int64{"http://b:8080": 1}, weights(lb))

	w = admin(lb, http.MethodDelete, "/register", `{"url":"http://a:8080"}`)
	assert.Equal(t, http.StatusNotFound, w.Code)
	assert.Equal(t, errorBody{Error: "no backend http://a:8080", Status: 404}, decodeJSON[errorBody](t, w))

	w = admin(lb, http.MethodDelete, "/register", `{"url":"http://b:8080","x":1}`)
	assert.Equal(t, http.StatusBadRequest, w.Code)
	assert.Equal(t, 400, decodeJSON[errorBody](t, w).Status)
	w = admin(lb, http.MethodDelete, "/register", `not json`)
	assert.Equal(t, http.StatusBadRequest, w.Code)
	assert.Equal(t, map[string]int64{"http://b:8080": 1}, weights(lb))
}

func TestConfig(t *testing.T) {
	t.Parallel()
	a, b := okBackend(t), okBackend(t)
	lb := newLB(t, testConfig(a.URL, b.URL))

	w := admin(lb, http.MethodPut, "/config", `{"strategy":"random"}`)
	assert.Equal(t, http.StatusBadRequest, w.Code)
	assert.Contains(t, decodeJSON[errorBody](t, w).Error, `unknown strategy "random"`)

	w = admin(lb, http.MethodPut, "/config", `{"strategy":"weighted","weights":{"http://unknown:8080":3}}`)
	assert.Equal(t, http.StatusNotFound, w.Code)
	e := decodeJSON[errorBody](t, w)
	assert.Equal(t, 404, e.Status)
	assert.Contains(t, e.Error, "http://unknown:8080")

	w = admin(lb, http.MethodPut, "/config", fmt.Sprintf(`{"weights":{%q:101}}`, a.URL))
	assert.Equal(t, http.StatusBadRequest, w.Code)
	assert.Contains(t, decodeJSON[errorBody](t, w).Error, "weight must be from 1 to 100")

	w = admin(lb, http.MethodPut, "/config", `{"strategy":"weighted","retries":2}`)
	assert.Equal(t, http.StatusBadRequest, w.Code, "unknown field")

	assert.Equal(t, RoundRobin, lb.Stats().Strategy, "rejected requests change nothing")
	assert.Equal(t, map[string]int64{a.URL: 1, b.URL: 1}, weights(lb))

	w = admin(lb, http.MethodPut, "/config", fmt.Sprintf(`{"strategy":"weighted","weights":{%q:3}}`, a.URL))
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	snap := decodeJSON[Snapshot](t, w)
	assert.Equal(t, lb.Stats(), snap, "the answer is the new state")
	assert.Equal(t, Weighted, snap.Strategy)
	assert.Equal(t, map[string]int64{a.URL: 3, b.URL: 1}, weights(lb))
	assert.Equal(t, map[string]int{hostOf(a): 300, hostOf(b): 100}, count(picks(t, lb, 400)), "traffic follows")

	w = admin(lb, http.MethodPut, "/config", `{"strategy":"least-conn"}`)
	require.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, LeastConn, lb.Stats().Strategy)
	assert.Equal(t, map[string]int64{a.URL: 3, b.URL: 1}, weights(lb), "weights left as they were")

	w = admin(lb, http.MethodPut, "/config", `{}`)
	require.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, LeastConn, lb.Stats().Strategy)
}

// PUT /config is all or nothing: a request answered 400 or 404 changes no weight, whatever
// the order in which Go's map hands the entries over.
func TestConfigIsAllOrNothing(t *testing.T) {
	t.Parallel()
	lb := newLB(t, testConfig("http://a:8080", "http://b:8080"))
	for range 20 { // map order is random: 20 tries all but guarantee the bad entry comes second at least once
		w := admin(lb, http.MethodPut, "/config", `{"strategy":"weighted","weights":{"http://a:8080":7,"http://b:8080":0}}`)
		require.Equal(t, http.StatusBadRequest, w.Code)
		w = admin(lb, http.MethodPut, "/config", `{"strategy":"weighted","weights":{"http://a:8080":9,"http://unknown:8080":2}}`)
		require.Equal(t, http.StatusNotFound, w.Code)
	}
	assert.Equal(t, map[string]int64{"http://a:8080": 1, "http://b:8080": 1}, weights(lb))
	assert.Equal(t, RoundRobin, lb.Stats().Strategy)
}

func TestStatsPage(t *testing.T) {
	t.Parallel()
	lb := newLB(t, testConfig())
	w := admin(lb, http.MethodGet, "/stats", "")
	assert.Equal(t, http.StatusOK, w.Code)
	assert.Contains(t, w.Body.String(), "no backends registered")

	up, down := okBackend(t), okBackend(t)
	for _, u := range []string{up.URL, down.URL} {
		_, err := lb.Add(u, 1)
		require.NoError(t, err)
	}
	lb.backends[1].observe(Check{At: time.Now(), Error: "HTTP 503"}, 1, 1)
	serve(lb, http.MethodGet, "/", "")

	w = admin(lb, http.MethodGet, "/stats", "")
	require.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, "text/html; charset=utf-8", w.Header().Get("Content-Type"))
	page := w.Body.String()
	assert.Contains(t, page, `<meta http-equiv="refresh" content="1">`)
	assert.Contains(t, page, "strategy: <b>round-robin</b>")
	assert.Contains(t, page, `<tr class="up"><td>`+up.URL+`</td><td>up</td><td>1</td><td>0</td><td>1</td><td>0</td>`)
	assert.Contains(t, page, `<tr class="down"><td>`+down.URL+`</td><td>down</td>`)
	assert.Contains(t, page, "HTTP 503")
	assert.NotContains(t, page, "no backends registered")

	w = admin(lb, http.MethodGet, "/stats.json", "")
	require.Equal(t, http.StatusOK, w.Code)
	snap := decodeJSON[Snapshot](t, w)
	assert.Equal(t, RoundRobin, snap.Strategy)
	require.Len(t, snap.Backends, 2)
	assert.Equal(t, Stats{URL: up.URL, State: "up", Weight: 1, Total: 1}, snap.Backends[0])
	assert.Equal(t, "down", snap.Backends[1].State)
	require.NotNil(t, snap.Backends[1].LastCheck)
	assert.Equal(t, "HTTP 503", snap.Backends[1].LastCheck.Error)
	assert.NotContains(t, w.Body.String(), `"last_check":null`)
}

func TestAdminHealthAndUnknownRoutes(t *testing.T) {
	t.Parallel()
	lb := newLB(t, testConfig())
	w := admin(lb, http.MethodGet, "/healthz", "")
	assert.Equal(t, http.StatusOK, w.Code)
	assert.JSONEq(t, `{"status":"ok"}`, w.Body.String())
	for _, r := range [][2]string{{http.MethodGet, "/nope"}, {http.MethodGet, "/register"}, {http.MethodPost, "/stats"}} {
		w = admin(lb, r[0], r[1], "")
		assert.Equal(t, http.StatusNotFound, w.Code, r)
		assert.Equal(t, errorBody{Error: "not found", Status: 404}, decodeJSON[errorBody](t, w), r)
	}
}
