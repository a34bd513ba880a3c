package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sysdesign-course/course/shared/httpserver"
	"github.com/sysdesign-course/course/shared/mq"
)

// fakeRecords is the jobs table in memory.
type fakeRecords struct {
	mu      sync.Mutex
	jobs    map[string]Job
	next    int
	down    bool // every call fails as if Postgres were unreachable
	deleted []string
}

func newRecords() *fakeRecords { return &fakeRecords{jobs: map[string]Job{}} }

var errDown = &net.OpError{Op: "dial", Err: errors.New("connection refused")}

func (f *fakeRecords) Create(_ context.Context, n int64) (Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return Job{}, errDown
	}
	f.next++
	j := Job{ID: "00000000-0000-4000-8000-" + strings.Repeat("0", 11) + string(rune('0'+f.next)), N: &n, State: Pending}
	f.jobs[j.ID] = j
	return j, nil
}

func (f *fakeRecords) Delete(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.jobs, id)
	f.deleted = append(f.deleted, id)
	return nil
}

func (f *fakeRecords) Get(_ context.Context, id string) (Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return Job{}, errDown
	}
	j, ok := f.jobs[id]
	if !ok {
		return j, ErrNotFound
	}
	return j, nil
}

// fakePublisher records what it was given and answers with err.
type fakePublisher struct {
	err  error
	sent []amqp.Publishing
}

func (p *fakePublisher) Publish(_ context.Context, queue string, msg amqp.Publishing) error {
	if queue != Queue {
		return errors.New("wrong queue " + queue)
	}
	p.sent = append(p.sent, msg)
	return p.err
}

func serve(t *testing.T, rec Records, pub *fakePublisher, brokerErr error) *httpserver.Server {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s := httpserver.New(httpserver.Config{Instance: "t"}, log)
	Register(s.Echo, rec, func() (Publisher, error) {
		if brokerErr != nil {
			return nil, brokerErr
		}
		return pub, nil
	}, time.Second, log)
	return s
}

func post(s *httpserver.Server, body string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, "/jobs", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	s.Echo.ServeHTTP(w, r)
	return w
}

func errorOf(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	var b httpserver.ErrorBody
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &b), w.Body.String())
	return b.Error
}

// A 202 comes only after the publisher's confirm, with the job's Location and a persistent
// message that carries the job id as its message id.
func TestSubmitAnswers202OnceTheBrokerConfirms(t *testing.T) {
	rec, pub := newRecords(), &fakePublisher{}
	w := post(serve(t, rec, pub, nil), `{"n": 97}`)
	require.Equal(t, http.StatusAccepted, w.Code, w.Body.String())
	var j Job
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &j))
	assert.Equal(t, "/jobs/"+j.ID, w.Header().Get("Location"))
	assert.Equal(t, Pending, j.State)
	require.Len(t, pub.sent, 1)
	assert.Equal(t, j.ID, pub.sent[0].MessageId)
	assert.Equal(t, amqp.Persistent, pub.sent[0].DeliveryMode)
	assert.JSONEq(t, `{"id":"`+j.ID+`","n":97}`, string(pub.sent[0].Body))
}

// Without the broker's confirm there is no job: a 503 with Retry-After, and the row goes.
func TestSubmitWithoutAConfirmIs503AndLeavesNoJob(t *testing.T) {
	for name, c := range map[string]struct {
		pubErr, brokerErr error
		says              string
	}{
		"broker down":     {brokerErr: mq.ErrUnavailable, says: "cannot be accepted now"},
		"queue full":      {pubErr: mq.ErrRefused, says: "queue is full"},
		"no confirm":      {pubErr: mq.ErrUnavailable, says: "did not confirm"},
		"channel closing": {pubErr: amqp.ErrClosed, says: "did not confirm"},
	} {
		t.Run(name, func(t *testing.T) {
			rec, pub := newRecords(), &fakePublisher{err: c.pubErr}
			w := post(serve(t, rec, pub, c.brokerErr), `{"n": 97}`)
			assert.Equal(t, http.StatusServiceUnavailable, w.Code)
			assert.Equal(t, "5", w.Header().Get("Retry-After"))
			assert.Contains(t, errorOf(t, w), c.says)
			assert.Empty(t, rec.jobs, "no job is left behind")
		})
	}
}

func TestSubmitRefusesBadBodiesBeforeAnything(t *testing.T) {
	rec, pub := newRecords(), &fakePublisher{}
	s := serve(t, rec, pub, nil)
	for body, status := range map[string]int{
		`{"n": -1}`: 422, `{"n": 100000001}`: 422, `{}`: 422, `{"n": null}`: 422,
		`{"n": "7"}`: 400, `{"n": 1.5}`: 400, `{"n": 1e3}`: 400, `{"n": 99999999999999999999}`: 400,
		`{"n": 7, "x": 1}`: 400, `{"N": 7}`: 400, `[7]`: 400, `7`: 400, `not json`: 400, ``: 400,
		`{"n": 7}{"n": 8}`: 400, `{"n": 7}]`: 400, `{"n": 7` + strings.Repeat(" ", 5000) + `}`: 413,
	} {
		w := post(s, body)
		assert.Equal(t, status, w.Code, "%.40q: %s", body, w.Body.String())
		assert.NotEmpty(t, errorOf(t, w))
	}
	assert.Empty(t, pub.sent)
	assert.Empty(t, rec.jobs)
}

func TestGetJob(t *testing.T) {
	rec := newRecords()
	s := serve(t, rec, &fakePublisher{}, nil)
	var j Job
	require.NoError(t, json.Unmarshal(post(s, `{"n": 4}`).Body.Bytes(), &j))
	get := func(id string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		s.Echo.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/jobs/"+id, nil))
		return w
	}
	assert.Equal(t, http.StatusOK, get(j.ID).Code)
	assert.Equal(t, http.StatusOK, get(strings.ToUpper(j.ID)).Code, "UUIDs are case-insensitive")
	assert.Equal(t, http.StatusNotFound, get("00000000-0000-4000-8000-999999999999").Code)
	for _, bad := range []string{"x", "1", "00000000-0000-4000-8000-00000000000", "00000000-0000-4000-8000-0000000000000", "%27%20OR%201=1"} {
		assert.Equal(t, http.StatusBadRequest, get(bad).Code, bad)
	}
	rec.down = true
	w := get(j.ID)
	assert.Equal(t, http.StatusServiceUnavailable, w.Code)
	assert.NotEmpty(t, w.Header().Get("Retry-After"))
}
