package balancer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// selfLB listens (on paper) on :8080 and :8081, with a resolver that knows "lb" as one of
// this host's addresses and "server" as another host's.
func selfLB(t *testing.T, ownIP string) *Balancer {
	t.Helper()
	cfg := testConfig()
	cfg.Addr, cfg.AdminAddr = ":8080", ":8081"
	lb := newLB(t, cfg)
	lb.self.addrs = func() ([]net.Addr, error) {
		return []net.Addr{&net.IPNet{IP: net.ParseIP("127.0.0.1"), Mask: net.CIDRMask(8, 32)},
			&net.IPNet{IP: net.ParseIP(ownIP), Mask: net.CIDRMask(16, 32)}}, nil
	}
	lb.self.lookup = func(_ context.Context, host string) ([]net.IPAddr, error) {
		switch host {
		case "lb":
			return []net.IPAddr{{IP: net.ParseIP(ownIP)}}, nil
		case "server":
			return []net.IPAddr{{IP: net.ParseIP("172.18.0.9")}}, nil
		case "sneaky":
			return []net.IPAddr{{IP: net.ParseIP("172.18.0.9")}, {IP: net.ParseIP("127.0.0.53")}}, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return lb
}

func TestRegisterRefusesTheBalancerItself(t *testing.T) {
	t.Parallel()
	lb := selfLB(t, "172.18.0.2")
	host, err := os.Hostname()
	require.NoError(t, err)
	for _, u := range []string{
		"http://127.0.0.1:8080", "http://127.1.2.3:8081", "http://[::1]:8080", "http://0.0.0.0:8080", "http://[::]:8081",
		"http://localhost:8080", "http://LOCALHOST.:8081", "http://app.localhost:8080",
		"http://" + host + ":8080", // its hostname: what Docker's DNS answers with its address
		"http://172.18.0.2:8081",   // its interface address
		"http://[::ffff:172.18.0.2]:8080",
		"http://lb:8080", "http://lb:8081", // its service name
		"http://sneaky:8080", // a name with one loopback address among others
	} {
		w := admin(lb, http.MethodPost, "/register", fmt.Sprintf(`{"url":%q}`, u))
		assert.Equal(t, http.StatusForbidden, w.Code, u)
		e := decodeJSON[errorBody](t, w)
		assert.Equal(t, http.StatusForbidden, e.Status, u)
		assert.Contains(t, e.Error, "one of the balancer's own listeners", u)
	}
	assert.Empty(t, lb.Stats().Backends)

	// Other ports of the same host are other processes (the tests' backends are on
	// 127.0.0.1), and other hosts on the balancer's port are the usual servers.
	for _, u := range []string{"http://127.0.0.1:9000", "http://lb:9090", "http://server:8080", "http://172.18.0.3:8081"} {
		w := admin(lb, http.MethodPost, "/register", fmt.Sprintf(`{"url":%q}`, u))
		assert.Equal(t, http.StatusCreated, w.Code, u)
	}
}

func TestRegisterAnswers503WhenTheNameDoesNotResolve(t *testing.T) {
	t.Parallel()
	lb := selfLB(t, "172.18.0.2")
	w := admin(lb, http.MethodPost, "/register", `{"url":"http://nowhere:8080"}`)
	assert.Equal(t, http.StatusServiceUnavailable, w.Code, "worth retrying: the registrar backs off on a 5xx")
	assert.Contains(t, decodeJSON[errorBody](t, w).Error, "cannot resolve backend host nowhere")
	assert.Empty(t, lb.Stats().Backends)

	lb.self.addrs = func() ([]net.Addr, error) { return nil, errors.New("no interfaces") }
	w = admin(lb, http.MethodPost, "/register", `{"url":"http://server:8080"}`)
	assert.Equal(t, http.StatusInternalServerError, w.Code, "a balancer that cannot tell refuses")
	assert.Empty(t, lb.Stats().Backends)
}

func TestRegisterRefusesBadURLs(t *testing.T) {
	t.Parallel()
	lb := newLB(t, testConfig())
	for _, u := range []string{
		"https://backend:8443", "http://backend", "http://backend:", "http://backend:0", "http://backend:65536",
		"http://backend:http", "http://:8080", "http://user:pw@backend:8080", "http://backend:8080/?a=1",
		"http://backend:8080/#top", "unix:///run/x.sock",
	} {
		w := admin(lb, http.MethodPost, "/register", fmt.Sprintf(`{"url":%q}`, u))
		assert.Equal(t, http.StatusBadRequest, w.Code, u)
		assert.Contains(t, decodeJSON[errorBody](t, w).Error, "backend url must look like http://host:port", u)
	}
	assert.Empty(t, lb.Stats().Backends)
	w := admin(lb, http.MethodPost, "/register", `{"url":"http://backend:65535"}`)
	assert.Equal(t, http.StatusCreated, w.Code)
}

func TestRegisterStopsAtMaxBackends(t *testing.T) {
	t.Parallel()
	lb := newLB(t, testConfig("http://static:8080"))
	for i := 1; i < MaxBackends; i++ {
		w := admin(lb, http.MethodPost, "/register", fmt.Sprintf(`{"url":"http://10.0.0.%d:8080"}`, i))
		require.Equal(t, http.StatusCreated, w.Code, i)
	}
	w := admin(lb, http.MethodPost, "/register", `{"url":"http://10.0.1.1:8080"}`)
	assert.Equal(t, http.StatusConflict, w.Code)
	assert.Contains(t, decodeJSON[errorBody](t, w).Error, fmt.Sprintf("at most %d backends", MaxBackends))
	assert.Len(t, lb.Stats().Backends, MaxBackends, "static backends count too")

	w = admin(lb, http.MethodPost, "/register", `{"url":"http://10.0.0.7:8080"}`)
	assert.Equal(t, http.StatusOK, w.Code, "a known backend's heartbeat is still accepted when full")
	require.True(t, lb.Remove("http://10.0.0.7:8080"))
	w = admin(lb, http.MethodPost, "/register", `{"url":"http://10.0.1.1:8080"}`)
	assert.Equal(t, http.StatusCreated, w.Code, "room again after a deregistration")
}

func TestNewRefusesBadListenAddresses(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.AdminAddr = "8081"
	_, err := New(cfg, slog.New(slog.DiscardHandler))
	assert.ErrorContains(t, err, `listen address "8081"`)
}
