package httpserver

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAdminEndpointsAreNotOnThePublicSide(t *testing.T) {
	s := New(Config{Instance: "s1"}, quiet())
	for _, path := range []string{"/metrics", "/debug/pprof/", "/debug/pprof/heap"} {
		w, body := serve(t, s, http.MethodGet, path)
		assert.Equal(t, http.StatusNotFound, w.Code, path)
		assert.Equal(t, http.StatusNotFound, body.Status, path)

		w = httptest.NewRecorder()
		s.Admin.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		assert.Equal(t, http.StatusOK, w.Code, "admin side: "+path)
	}
	for _, path := range []string{"/ping", "/healthz", "/readyz"} {
		w := httptest.NewRecorder()
		s.Admin.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		assert.Equal(t, http.StatusNotFound, w.Code, "the admin side serves no public route: "+path)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func TestRunServesBothListenersAndStopsBoth(t *testing.T) {
	s := New(Config{Instance: "s1", AdminAddr: "127.0.0.1:0"}, quiet())
	ctx, stop := context.WithCancel(context.Background())
	url, done := runOn(t, s, ctx)
	code, _ := get(t, url+"/ping")
	require.Equal(t, http.StatusOK, code)

	var admin net.Addr
	require.Eventually(t, func() bool { admin = s.Admin.ListenerAddr(); return admin != nil }, 5*time.Second, 10*time.Millisecond)
	code, body := get(t, "http://"+admin.String()+"/metrics")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, `http_requests_total{code="200",method="GET",route="/ping"} 1`)
	assert.NotContains(t, body, `route="/metrics"`, "scrapes are not counted as client requests")

	stop()
	require.NoError(t, <-done)
	_, err := http.Get("http://" + admin.String() + "/metrics")
	assert.Error(t, err, "the admin listener is closed after shutdown")
}

func TestRunFailsWhenTheAdminAddressIsTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()
	s := New(Config{Instance: "s1", AdminAddr: taken.Addr().String()}, quiet())
	_, done := runOn(t, s, context.Background())
	assert.ErrorContains(t, <-done, "admin listener")
}
