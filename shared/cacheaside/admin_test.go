package cacheaside

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sysdesign-course/course/shared/httpserver"
)

type adminState struct {
	Caches map[string]bool `json:"caches"`
}

func TestAdminSwitchesEveryCache(t *testing.T) {
	e := newEnv(t, nil)
	// A second cache on the same registry and Redis, as users.Cached has.
	other, err := New[item]("others", e.rdb, errNotFound, testConfig(), e.reg, quietLog())
	require.NoError(t, err)
	t.Cleanup(other.Close)

	s := httpserver.New(httpserver.Config{Instance: "t"}, quietLog())
	RegisterAdmin(s.Echo, e.a, other)
	do := func(method, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, AdminPath, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		s.Echo.ServeHTTP(w, req)
		return w
	}
	state := func(w *httptest.ResponseRecorder) map[string]bool {
		t.Helper()
		require.Equal(t, http.StatusOK, w.Code, w.Body.String())
		var st adminState
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &st))
		return st.Caches
	}

	assert.Equal(t, map[string]bool{"things": true, "others": true}, state(do(http.MethodGet, "")))

	assert.Equal(t, map[string]bool{"things": false, "others": false}, state(do(http.MethodPut, `{"enabled": false}`)))
	assert.False(t, e.a.Enabled())
	assert.False(t, other.Enabled())
	assert.Equal(t, map[string]bool{"things": false, "others": false}, state(do(http.MethodGet, "")))

	for _, body := range []string{
		``,
		`{}`,
		`null`,
		`{"enabled": null}`,
		`{"enabled": "yes"}`,
		`{"enabled": 1}`,
		`not json`,
		`{"enabled": true`,
		`{"enabled": true, "force": true}`,
		`{"Enabled": true, "enabled": true, "x": 1}`,
		`[{"enabled": true}]`,
		`true`,
		`{"enabled": true} {"enabled": false}`,
		`{"enabled": true} x`,
		`{"enabled": true}}`,
		`{"enabled": true}]`,
		strings.Repeat(" ", 2<<10) + `{"enabled": true}`,
	} {
		w := do(http.MethodPut, body)
		name := body
		if len(name) > 40 {
			name = name[:20] + "…(long)"
		}
		assert.Equal(t, http.StatusBadRequest, w.Code, "body %q", name)
		assert.Contains(t, w.Header().Get("Content-Type"), "application/json", "body %q", name)
		var eb httpserver.ErrorBody
		if assert.NoError(t, json.Unmarshal(w.Body.Bytes(), &eb), "body %q", name) {
			assert.Contains(t, eb.Error, `{"enabled": true}`, "body %q", name)
			assert.Equal(t, http.StatusBadRequest, eb.Status)
		}
		assert.False(t, e.a.Enabled(), "a refused body %q must not switch the cache", name)
	}

	assert.Equal(t, map[string]bool{"things": true, "others": true}, state(do(http.MethodPut, "{\"enabled\":true}\n")))
	assert.True(t, e.a.Enabled())
	assert.True(t, other.Enabled())
	assert.Equal(t, 1.0, metric(t, e.reg, "cache_enabled", "cache", "others"))
}
