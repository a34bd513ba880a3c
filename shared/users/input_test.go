package users

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sysdesign-course/course/shared/httpserver"
)

func TestValidate(t *testing.T) {
	long := func(n int) string { return strings.Repeat("a", n) }
	email := func(n int) string { return long(n-len("@example.com")) + "@example.com" }
	for _, tc := range []struct {
		in   Input
		want string // substring of the error; "" means valid
	}{
		{Input{"ada", "ada@example.com"}, ""},
		{Input{"Ada.Lovelace_1815-x", "ada+tag@sub.example.co.uk"}, ""},
		{Input{long(MaxUsername), email(MaxEmail)}, ""},
		{Input{"", "ada@example.com"}, "username is required"},
		{Input{"ada", ""}, "email is required"},
		{Input{"", ""}, "username is required; email is required"},
		{Input{long(MaxUsername + 1), "ada@example.com"}, "username must be at most 64"},
		{Input{"ada", email(MaxEmail + 1)}, "email must be at most 254"},
		{Input{"ada lovelace", "ada@example.com"}, "username may hold only"},
		{Input{"ada/../x", "ada@example.com"}, "username may hold only"},
		{Input{"ада", "ada@example.com"}, "username may hold only"},
		{Input{"ada\n", "ada@example.com"}, "username may hold only"},
		{Input{"ada", "Ada <ada@example.com>"}, "plain address"},
		{Input{"ada", "<ada@example.com>"}, "plain address"},
		{Input{"ada", "no-at"}, "plain address"},
		{Input{"ada", "ada@"}, "plain address"},
		{Input{"ada", "@example.com"}, "plain address"},
		{Input{"ada", "a b@example.com"}, "plain address"},
		{Input{"ada", "a@example.com, b@example.com"}, "plain address"},
		{Input{"ada", " ada@example.com"}, "plain address"},
		{Input{"ada", "ada@example.com (Ada)"}, "plain address"},
	} {
		err := tc.in.Validate()
		if tc.want == "" {
			assert.NoError(t, err, "%+v", tc.in)
			continue
		}
		if assert.Error(t, err, "%+v", tc.in) {
			assert.Contains(t, err.Error(), tc.want, "%+v", tc.in)
		}
	}
}

// fakeWriter records what reaches it and answers with err when set.
type fakeWriter struct {
	mu    sync.Mutex
	calls []string
	err   error
}

func (w *fakeWriter) record(call string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls = append(w.calls, call)
	return w.err
}

func (w *fakeWriter) Create(_ context.Context, in Input) (User, error) {
	if err := w.record(fmt.Sprintf("create %s %s", in.Username, in.Email)); err != nil {
		return User{}, err
	}
	return User{ID: 7, Username: in.Username, Email: in.Email, CreatedAt: time.Unix(0, 0).UTC()}, nil
}

func (w *fakeWriter) Update(_ context.Context, id int64, in Input) (User, error) {
	if err := w.record(fmt.Sprintf("update %d %s %s", id, in.Username, in.Email)); err != nil {
		return User{}, err
	}
	return User{ID: id, Username: in.Username, Email: in.Email, CreatedAt: time.Unix(0, 0).UTC()}, nil
}

func (w *fakeWriter) Delete(_ context.Context, id int64) error {
	return w.record(fmt.Sprintf("delete %d", id))
}

func (w *fakeWriter) Calls() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.calls...)
}

func newWriteServer(w Writer) *httpserver.Server {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s := httpserver.New(httpserver.Config{Instance: "t"}, log)
	RegisterWrites(s.Echo, w, time.Second, log)
	return s
}

func serve(s *httpserver.Server, method, path, contentType, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	w := httptest.NewRecorder()
	s.Echo.ServeHTTP(w, req)
	return w
}

// errorBody checks that a refusal is the standard JSON error and returns its message.
func errorBody(t *testing.T, w *httptest.ResponseRecorder, msgAndArgs ...any) string {
	t.Helper()
	assert.Contains(t, w.Header().Get("Content-Type"), "application/json", msgAndArgs...)
	var eb httpserver.ErrorBody
	if !assert.NoError(t, json.Unmarshal(w.Body.Bytes(), &eb), msgAndArgs...) {
		return ""
	}
	assert.NotEmpty(t, eb.Error, msgAndArgs...)
	assert.Equal(t, w.Code, eb.Status, msgAndArgs...)
	return eb.Error
}

const jsonCT = "application/json"

// Every refusal is a 4xx JSON error that says why, and none reaches the store.
func TestBadBodiesAreRefusedBeforeTheWriter(t *testing.T) {
	const ok = `{"username":"ada","email":"ada@example.com"}`
	for _, tc := range []struct {
		name, ct, body string
		status         int
		want           string // substring of the error message
	}{
		{"empty body", jsonCT, ``, 400, "body is empty"},
		{"whitespace only", jsonCT, "  \n", 400, "body is empty"},
		{"not JSON", jsonCT, `username=ada`, 400, "not valid JSON"},
		{"truncated", jsonCT, `{"username":"ada"`, 400, "not valid JSON"},
		{"array", jsonCT, `[` + ok + `]`, 400, "JSON object"},
		{"string", jsonCT, `"ada"`, 400, "JSON object"},
		{"number", jsonCT, `42`, 400, "JSON object"},
		{"username a number", jsonCT, `{"username":5,"email":"ada@example.com"}`, 400, "username must be a string"},
		{"email a bool", jsonCT, `{"username":"ada","email":true}`, 400, "email must be a string"},
		{"username an array", jsonCT, `{"username":["ada"],"email":"ada@example.com"}`, 400, "username must be a string"},
		{"username an object", jsonCT, `{"username":{"n":"ada"},"email":"ada@example.com"}`, 400, "username must be a string"},
		{"unknown field", jsonCT, `{"username":"ada","email":"ada@example.com","admin":true}`, 400, `unknown field "admin"`},
		{"id in body", jsonCT, `{"id":1,"username":"ada","email":"ada@example.com"}`, 400, "unknown field"},
		{"name in another case", jsonCT, `{"Username":"ada","email":"ada@example.com"}`, 400, `unknown field "Username"`},
		{"two objects", jsonCT, ok + ok, 400, "exactly one JSON object"},
		{"trailing garbage", jsonCT, ok + ` x`, 400, "exactly one JSON object"},
		{"trailing brace", jsonCT, ok + `}`, 400, "exactly one JSON object"},
		{"trailing bracket", jsonCT, ok + "\n]", 400, "exactly one JSON object"},
		{"trailing NUL", jsonCT, ok + "\x00", 400, "exactly one JSON object"},
		{"null", jsonCT, `null`, 422, "username is required"},
		{"empty object", jsonCT, `{}`, 422, "username is required; email is required"},
		{"missing email", jsonCT, `{"username":"ada"}`, 422, "email is required"},
		{"null username", jsonCT, `{"username":null,"email":"ada@example.com"}`, 422, "username is required"},
		{"username too long", jsonCT, `{"username":"` + strings.Repeat("a", 65) + `","email":"ada@example.com"}`, 422, "at most 64"},
		{"email too long", jsonCT, `{"username":"ada","email":"` + strings.Repeat("a", 243) + `@example.com"}`, 422, "at most 254"},
		{"email with a name", jsonCT, `{"username":"ada","email":"Ada <ada@example.com>"}`, 422, "plain address"},
		{"email without @", jsonCT, `{"username":"ada","email":"no-at"}`, 422, "plain address"},
		{"username with space", jsonCT, `{"username":"ada l","email":"ada@example.com"}`, 422, "username may hold only"},
		{"body over 4 KiB", jsonCT, `{"username":"ada","email":"ada@example.com"}` + strings.Repeat(" ", 4<<10), 413, "at most 4096 bytes"},
		{"huge field", jsonCT, `{"username":"` + strings.Repeat("a", 5000) + `","email":"ada@example.com"}`, 413, "at most 4096 bytes"},
		{"text/plain", "text/plain", ok, 415, "Content-Type: application/json"},
		{"form", "application/x-www-form-urlencoded", "username=ada&email=ada%40example.com", 415, "application/json"},
	} {
		for _, target := range []struct{ method, path string }{{http.MethodPost, "/users"}, {http.MethodPut, "/users/3"}} {
			label := target.method + " " + tc.name
			fw := &fakeWriter{}
			w := serve(newWriteServer(fw), target.method, target.path, tc.ct, tc.body)
			assert.Equal(t, tc.status, w.Code, "%s: %s", label, w.Body.String())
			msg := errorBody(t, w, label)
			assert.Contains(t, msg, tc.want, label)
			assert.NotContains(t, msg, "json:", "%s: Go's internals leaked", label)
			assert.Empty(t, fw.Calls(), "%s reached the writer", label)
		}
	}
}

func TestBodyLimitIsInclusive(t *testing.T) {
	body := `{"username":"ada","email":"ada@example.com"}`
	body += strings.Repeat(" ", httpserver.MaxJSONBody-len(body))
	require.Len(t, body, httpserver.MaxJSONBody)
	fw := &fakeWriter{}
	w := serve(newWriteServer(fw), http.MethodPost, "/users", jsonCT, body)
	assert.Equal(t, http.StatusCreated, w.Code, w.Body.String())
}

func TestValidWritesReachTheWriter(t *testing.T) {
	const body = `{"username":"ada","email":"ada@example.com"}`
	for _, ct := range []string{jsonCT, "application/json; charset=utf-8", ""} {
		fw := &fakeWriter{}
		s := newWriteServer(fw)

		w := serve(s, http.MethodPost, "/users", ct, body)
		require.Equal(t, http.StatusCreated, w.Code, "%q: %s", ct, w.Body.String())
		assert.Equal(t, "/users/7", w.Header().Get("Location"))
		var u User
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &u))
		assert.Equal(t, User{ID: 7, Username: "ada", Email: "ada@example.com", CreatedAt: time.Unix(0, 0).UTC()}, u)

		w = serve(s, http.MethodPut, "/users/5", ct, "\n"+body+"\n")
		require.Equal(t, http.StatusOK, w.Code, "%q: %s", ct, w.Body.String())
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &u))
		assert.EqualValues(t, 5, u.ID)
		assert.Empty(t, w.Header().Get("Location"))

		w = serve(s, http.MethodDelete, "/users/5", "", "")
		assert.Equal(t, http.StatusNoContent, w.Code)
		assert.Empty(t, w.Body.String())

		assert.Equal(t, []string{"create ada ada@example.com", "update 5 ada ada@example.com", "delete 5"}, fw.Calls())
	}
}

func TestBadIDsAreRefusedBeforeTheWriter(t *testing.T) {
	const body = `{"username":"ada","email":"ada@example.com"}`
	for _, id := range []string{"abc", "0", "-1", "1.5", "99999999999999999999"} {
		for _, method := range []string{http.MethodPut, http.MethodDelete} {
			fw := &fakeWriter{}
			w := serve(newWriteServer(fw), method, "/users/"+id, jsonCT, body)
			assert.Equal(t, http.StatusBadRequest, w.Code, method+" "+id)
			assert.Contains(t, errorBody(t, w, method+" "+id), "id must be a positive integer")
			assert.Empty(t, fw.Calls())
		}
	}
}

func TestWriterErrorsMapToStatuses(t *testing.T) {
	const body = `{"username":"ada","email":"ada@example.com"}`
	for _, tc := range []struct {
		name   string
		err    error
		method string
		path   string
		status int
		want   string
	}{
		{"taken on create", ErrTaken{Field: "email"}, http.MethodPost, "/users", 409, "email is already taken"},
		{"taken on update", ErrTaken{Field: "username"}, http.MethodPut, "/users/5", 409, "username is already taken"},
		{"no row on update", pgx.ErrNoRows, http.MethodPut, "/users/5", 404, "user not found"},
		{"no row on delete", pgx.ErrNoRows, http.MethodDelete, "/users/5", 404, "user not found"},
		{"wrapped no row", fmt.Errorf("update: %w", pgx.ErrNoRows), http.MethodPut, "/users/5", 404, "user not found"},
		{"database down", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, http.MethodPost, "/users", 503, "retry later"},
		{"broken query", &pgconn.PgError{Code: "42601", Message: "syntax error at or near SELEC"}, http.MethodPost, "/users", 500, "Internal Server Error"},
		{"scan bug", errors.New("can't scan into dest[0]: SELEC"), http.MethodPost, "/users", 500, "Internal Server Error"},
	} {
		fw := &fakeWriter{err: tc.err}
		w := serve(newWriteServer(fw), tc.method, tc.path, jsonCT, body)
		assert.Equal(t, tc.status, w.Code, tc.name)
		msg := errorBody(t, w, tc.name)
		assert.Contains(t, msg, tc.want, tc.name)
		assert.NotContains(t, msg, "SELEC", "%s: a query error must not reach the client", tc.name)
		assert.Len(t, fw.Calls(), 1, tc.name)
		if tc.status == 503 {
			assert.Equal(t, "1", w.Header().Get("Retry-After"))
		}
		assert.Empty(t, w.Header().Get("Location"), tc.name)
	}
}

// fakeProfiler answers id 1 and nothing else.
type fakeProfiler struct{}

func (fakeProfiler) Profile(_ context.Context, id int64) (Profile, error) {
	if id != 1 {
		return Profile{}, pgx.ErrNoRows
	}
	return Profile{User: User{ID: 1, Username: "ada"}, Messages: 3, Rank: 2}, nil
}

func TestProfileHandler(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s := httpserver.New(httpserver.Config{Instance: "t"}, log)
	RegisterProfile(s.Echo, fakeProfiler{}, time.Second, log)

	w := serve(s, http.MethodGet, "/users/1/profile", "", "")
	require.Equal(t, http.StatusOK, w.Code)
	var p Profile
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &p))
	assert.Equal(t, Profile{User: User{ID: 1, Username: "ada"}, Messages: 3, Rank: 2}, p)

	w = serve(s, http.MethodGet, "/users/2/profile", "", "")
	assert.Equal(t, http.StatusNotFound, w.Code)
	assert.Contains(t, errorBody(t, w), "not found")

	w = serve(s, http.MethodGet, "/users/x/profile", "", "")
	assert.Equal(t, http.StatusBadRequest, w.Code)
	errorBody(t, w)
}

// A client that hung up gets no answer (499 in the access log), whatever the store said.
func TestClientGoneIsNotAnError(t *testing.T) {
	fw := &fakeWriter{err: context.Canceled}
	s := newWriteServer(fw)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequestWithContext(ctx, http.MethodDelete, "/users/5", nil)
	w := httptest.NewRecorder()
	s.Echo.ServeHTTP(w, req)
	assert.Equal(t, 499, w.Code)
	assert.Empty(t, w.Body.String())
}
