package users

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/sysdesign-course/course/shared/httpserver"
)

// Bad input is refused before any query: these run with no database at all.
func TestBadInputIsRefusedBeforeTheDatabase(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s := httpserver.New(httpserver.Config{Instance: "t"}, log)
	Register(s.Echo, NewStore(nil), time.Second, log)
	for _, path := range []string{
		"/users/abc", "/users/-1", "/users/0", "/users/1.5", "/users/99999999999999999999",
		"/users/1%27%20OR%20%271%27=%271", "/users?limit=0", "/users?limit=101", "/users?limit=x",
		"/users?after=-1", "/users?after=1%20OR%201=1", "/users/1/messages?limit=1000", "/users/x/messages",
	} {
		w := httptest.NewRecorder()
		s.Echo.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		assert.Equal(t, http.StatusBadRequest, w.Code, path)
		var body httpserver.ErrorBody
		assert.NoError(t, json.Unmarshal(w.Body.Bytes(), &body), path)
		assert.NotEmpty(t, body.Error, path)
	}
}
