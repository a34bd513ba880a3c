// Package httpservertest holds what the fuzz tests of every input parser share: a course
// server and the checks its answers must pass.
package httpservertest

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sysdesign-course/course/shared/httpserver"
)

// New is a quiet course server with the routes register adds, as a stage wires them.
func New(register func(*echo.Echo)) *httpserver.Server {
	s := httpserver.New(httpserver.Config{Instance: "test"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	register(s.Echo)
	return s
}

// Get serves GET target on s and checks the answer with NoServerError.
func Get(t *testing.T, s *httpserver.Server, target string) (refused bool) {
	t.Helper()
	w := httptest.NewRecorder()
	s.Echo.ServeHTTP(w, httptest.NewRequest(http.MethodGet, target, nil))
	return NoServerError(t, w)
}

// NoServerError fails t unless w is below 500 and, if it is a 4xx, carries the JSON
// ErrorBody naming its status and what was wrong. It reports whether w was refused.
func NoServerError(t *testing.T, w *httptest.ResponseRecorder) (refused bool) {
	t.Helper()
	require.Less(t, w.Code, 500, w.Body.String())
	if w.Code < 400 {
		return false
	}
	assert.True(t, strings.HasPrefix(w.Header().Get("Content-Type"), "application/json"), w.Header().Get("Content-Type"))
	var body httpserver.ErrorBody
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &body), w.Body.String())
	assert.Equal(t, w.Code, body.Status, w.Body.String())
	assert.NotEmpty(t, body.Error, w.Body.String())
	return true
}

// BadRequest fails t unless err is a 400 for the client, as httpserver.BadRequest makes.
func BadRequest(t *testing.T, err error) {
	t.Helper()
	var he *echo.HTTPError
	require.True(t, errors.As(err, &he), "%T: %v", err, err)
	assert.Equal(t, http.StatusBadRequest, he.Code)
}
