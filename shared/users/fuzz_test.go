package users

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sysdesign-course/course/shared/httpserver/httpservertest"
)

// reset forgets the calls of earlier fuzz inputs.
func (w *fakeWriter) reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls = nil
}

// FuzzDecodeInput: any body under any Content-Type is a JSON 4xx that never reaches the
// writer, or a 201 for an input that passes Validate.
func FuzzDecodeInput(f *testing.F) {
	const ok = `{"username":"ada","email":"ada@example.com"}`
	for _, seed := range []struct{ ct, body string }{
		{jsonCT, ok}, {"", ok}, {"application/json; charset=utf-8", ok}, {"text/plain", ok}, {"application/json; x", ok},
		{jsonCT, ``}, {jsonCT, `null`}, {jsonCT, `{}`}, {jsonCT, `[` + ok + `]`}, {jsonCT, ok + ok}, {jsonCT, ok + `}`},
		{jsonCT, `{"username":5,"email":"ada@example.com"}`}, {jsonCT, `{"Username":"ada","email":"ada@example.com"}`},
		{jsonCT, `{"username":"ada","email":"Ada <ada@example.com>"}`}, {jsonCT, `{"username":"ada","email":"\"a b\"@example.com"}`},
		{jsonCT, `{"username":"ada","username":"bob","email":"ada@example.com"}`}, {jsonCT, `{"username":"\u0430da","email":"ada@example.com"}`},
	} {
		f.Add(seed.ct, []byte(seed.body))
	}
	fw := &fakeWriter{}
	s := newWriteServer(fw)
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		fw.reset()
		w := serve(s, http.MethodPost, "/users", contentType, string(body))
		if httpservertest.NoServerError(t, w) {
			assert.Empty(t, fw.Calls(), "a refused body reached the writer")
			return
		}
		require.Equal(t, http.StatusCreated, w.Code, w.Body.String())
		require.Len(t, fw.Calls(), 1)
		var u User
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &u))
		assert.NoError(t, Input{Username: u.Username, Email: u.Email}.Validate(), "accepted %q", body)
	})
}

// FuzzPathID: any :id is a 400 or a positive int64 equal to what the path says, and the
// route agrees: a JSON 4xx, or the writer deletes exactly that id.
func FuzzPathID(f *testing.F) {
	for _, seed := range []string{"1", "42", "9223372036854775807", "9223372036854775808", "0", "-1", "+5", "007", "1.5", "1e3", "abc", " 1", "1%20", "1/2", "0x1f", "١٢"} {
		f.Add(seed)
	}
	fw := &fakeWriter{}
	s := newWriteServer(fw)
	f.Fuzz(func(t *testing.T, raw string) {
		c := echo.New().NewContext(httptest.NewRequest(http.MethodGet, "/", nil), httptest.NewRecorder())
		c.SetParamNames("id")
		c.SetParamValues(raw)
		id, err := PathID(c)
		if err != nil {
			httpservertest.BadRequest(t, err)
		} else {
			want, perr := strconv.ParseInt(raw, 10, 64)
			require.NoError(t, perr)
			assert.Equal(t, want, id)
			assert.Positive(t, id)
		}
		fw.reset()
		w := serve(s, http.MethodDelete, "/users/"+url.PathEscape(raw), "", "")
		if httpservertest.NoServerError(t, w) {
			assert.Error(t, err, "the route refused %q, PathID did not", raw)
			assert.Empty(t, fw.Calls())
			return
		}
		require.NoError(t, err, "the route accepted %q, PathID did not", raw)
		assert.Equal(t, []string{"delete " + strconv.FormatInt(id, 10)}, fw.Calls())
	})
}
