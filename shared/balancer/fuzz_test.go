package balancer

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sysdesign-course/course/shared/httpserver/httpservertest"
)

// FuzzRegister: any POST /register body is a JSON 4xx that registers nothing, or exactly
// one JSON object naming an http(s)://host:port backend with a weight from 1 to 100,
// which is then registered.
func FuzzRegister(f *testing.F) {
	for _, seed := range []string{
		`{"url":"http://backend:8080","weight":2}`, `{"url":"http://backend:8080/"}`, `{"url":"https://10.0.0.1:443","weight":100}`,
		`{"url":"backend:8080"}`, `{"url":"ftp://backend:8080"}`, `{"url":"http://backend:8080/api"}`, `{"url":""}`, `{}`, `null`, ``,
		`{"url":"http://backend:8080","weight":101}`, `{"url":"http://backend:8080","weight":-1}`, `{"url":"http://backend:8080","wieght":2}`,
		`{"url":"http://backend:8080","weight":1.5}`, `{"url":"http://u:p@backend:8080"}`, `{"url":"http://backend:8080?x=1"}`,
		`{"url":"http://backend:8080#top"}`, `{"url":"http://:8080"}`, `{"url":"http://backend:8080"} x`, `[{"url":"http://backend:8080"}]`,
	} {
		f.Add(seed)
	}
	lb := newLB(f, testConfig())
	f.Fuzz(func(t *testing.T, body string) {
		w := admin(lb, http.MethodPost, "/register", body)
		if httpservertest.NoServerError(t, w) {
			assert.Empty(t, lb.Stats().Backends, "a refused body registered a backend")
			return
		}
		require.Equal(t, http.StatusCreated, w.Code, w.Body.String())
		assert.True(t, json.Valid([]byte(body)), "accepted a body that is not one JSON value: %q", body)
		backends := lb.Stats().Backends
		require.Len(t, backends, 1)
		u, err := url.Parse(backends[0].URL)
		require.NoError(t, err)
		assert.Equal(t, u.Scheme+"://"+u.Host, backends[0].URL, "only scheme, host and port")
		assert.Contains(t, []string{"http", "https"}, u.Scheme)
		assert.NotEmpty(t, u.Hostname())
		assert.True(t, backends[0].Weight >= 1 && backends[0].Weight <= 100, "weight %d", backends[0].Weight)
		var reg Registration
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &reg))
		assert.Equal(t, backends[0].URL, strings.TrimSuffix(reg.URL, "/"))
		require.True(t, lb.Remove(backends[0].URL))
	})
}
