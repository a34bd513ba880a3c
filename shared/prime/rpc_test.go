package prime

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sysdesign-course/course/shared/httpserver"
	"github.com/sysdesign-course/course/shared/mq"
)

// fakeCaller answers like a worker, or fails with err; it records what it was sent.
type fakeCaller struct {
	err   error
	block bool // wait for the caller's deadline, as with no worker running
	reply func(n int64) string
	calls int
}

func (f *fakeCaller) Call(ctx context.Context, queue string, msg amqp.Publishing) (amqp.Delivery, error) {
	f.calls++
	if queue != Queue {
		return amqp.Delivery{}, errors.New("wrong queue")
	}
	if _, ok := ctx.Deadline(); !ok {
		return amqp.Delivery{}, errors.New("no deadline")
	}
	if f.block {
		<-ctx.Done()
		return amqp.Delivery{}, ctx.Err()
	}
	if f.err != nil {
		return amqp.Delivery{}, f.err
	}
	var req request
	if err := json.Unmarshal(msg.Body, &req); err != nil {
		return amqp.Delivery{}, err
	}
	body := `{"n":` + jsonInt(req.N) + `,"prime":` + map[bool]string{true: "true", false: "false"}[IsPrime(req.N)] + `,"worker":"w1"}`
	if f.reply != nil {
		body = f.reply(req.N)
	}
	return amqp.Delivery{Body: []byte(body)}, nil
}

func jsonInt(n int64) string { b, _ := json.Marshal(n); return string(b) }

func rpcServer(c *fakeCaller, callerErr error) *httpserver.Server {
	s := httpserver.New(httpserver.Config{Instance: "t"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	RegisterRPC(s.Echo, func() (Caller, error) {
		if callerErr != nil {
			return nil, callerErr
		}
		return c, nil
	}, RPCConfig{Timeout: 200 * time.Millisecond})
	return s
}

func get(s *httpserver.Server, path string) (*httptest.ResponseRecorder, time.Duration) {
	w := httptest.NewRecorder()
	start := time.Now()
	s.Echo.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
	return w, time.Since(start)
}

func TestRPCPassesOnTheWorkersAnswer(t *testing.T) {
	w, _ := get(rpcServer(&fakeCaller{}, nil), "/is-prime/97")
	require.Equal(t, http.StatusOK, w.Code)
	var r Reply
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &r))
	assert.Equal(t, Reply{N: 97, Prime: true, Worker: "w1"}, r)
}

// Every way a call can go wrong is a JSON error with the right status, within the deadline.
func TestRPCFailuresAreBoundedAndExplained(t *testing.T) {
	for name, c := range map[string]struct {
		caller    *fakeCaller
		callerErr error
		status    int
	}{
		"no worker answers":    {caller: &fakeCaller{block: true}, status: http.StatusGatewayTimeout},
		"broker down":          {callerErr: mq.ErrUnavailable, status: http.StatusServiceUnavailable},
		"queue full":           {caller: &fakeCaller{err: mq.ErrRefused}, status: http.StatusServiceUnavailable},
		"connection lost":      {caller: &fakeCaller{err: mq.ErrUnavailable}, status: http.StatusServiceUnavailable},
		"worker says error":    {caller: &fakeCaller{reply: func(int64) string { return `{"error":"bad"}` }}, status: http.StatusBadGateway},
		"answer for another n": {caller: &fakeCaller{reply: func(int64) string { return `{"n":5,"prime":true}` }}, status: http.StatusBadGateway},
		"answer is not json":   {caller: &fakeCaller{reply: func(int64) string { return `garbage` }}, status: http.StatusBadGateway},
	} {
		t.Run(name, func(t *testing.T) {
			w, took := get(rpcServer(c.caller, c.callerErr), "/is-prime/97")
			assert.Equal(t, c.status, w.Code, w.Body.String())
			assert.Less(t, took, time.Second)
			var b httpserver.ErrorBody
			require.NoError(t, json.Unmarshal(w.Body.Bytes(), &b))
			assert.NotEmpty(t, b.Error)
			if c.status == http.StatusServiceUnavailable {
				assert.Equal(t, "5", w.Header().Get("Retry-After"))
			}
		})
	}
}

func TestRPCRefusesBadNBeforePublishing(t *testing.T) {
	c := &fakeCaller{}
	s := rpcServer(c, nil)
	for _, n := range []string{"-1", "abc", "100000001", "1.5", "99999999999999999999", "%20"} {
		w, _ := get(s, "/is-prime/"+n)
		assert.Equal(t, http.StatusBadRequest, w.Code, n)
	}
	assert.Zero(t, c.calls)
}

func TestAnswer(t *testing.T) {
	now := time.Now()
	req := func(body string, deadline time.Time) amqp.Delivery {
		return amqp.Delivery{ReplyTo: "amq.rabbitmq.reply-to.x", CorrelationId: "7", Body: []byte(body),
			Headers: amqp.Table{mq.DeadlineHeader: deadline.UnixMilli()}}
	}
	reply, ok := Answer(req(`{"n":97}`, now.Add(time.Second)), IsPrime, "w1", now)
	require.True(t, ok)
	assert.Equal(t, "7", reply.CorrelationId)
	assert.JSONEq(t, `{"n":97,"prime":true,"took_ms":0,"worker":"w1"}`, string(reply.Body))

	_, ok = Answer(req(`{"n":97}`, now.Add(-time.Millisecond)), func(int64) bool { panic("computed a request nobody waits for") }, "w1", now)
	assert.False(t, ok, "past its deadline, a request is skipped")

	for _, bad := range []string{`nope`, `{"n":-1}`, `{"n":100000001}`} {
		reply, ok = Answer(req(bad, now.Add(time.Second)), IsPrime, "w1", now)
		require.True(t, ok)
		assert.Contains(t, string(reply.Body), `"error"`, bad)
	}
}
