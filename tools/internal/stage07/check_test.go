package stage07

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sysdesign-course/course/tools/internal/check"
	"github.com/sysdesign-course/course/tools/internal/check/checktest"
	"github.com/sysdesign-course/course/tools/internal/fault"
)

// flaws break the fake stage-07 stack the ways a learner's stack can be broken.
type flaws struct {
	autoAck       bool // the broker forgets a job as it hands it over: a killed worker loses it
	notIdempotent bool // a redelivered job is applied again
	noDeadline    bool // a call with no worker waits until the client gives up
	volatile      bool // the queue does not survive a broker restart
	noReconnect   bool // servers and workers stay disconnected after the broker returns
	noDeadLetter  bool // poison circles forever
	hoard         bool // one worker takes every job (a huge prefetch)
	localPrime    bool // servers compute primes: /ping waits behind them
	wrongAnswer   bool // 1 is reported prime
	badInput500   bool // an unparsable n is a 500
	brokerReady   bool // the servers stop serving users while the broker is away
	neverConnect  bool // wrong credentials: nobody ever connects to the broker
}

const (
	limit = 5                     // the fake queue's delivery limit
	cost  = 40 * time.Millisecond // one prime check on a fake worker
)

type msg struct {
	id, body   string
	deliveries int
}

type fjob struct {
	n           int64
	state       string
	prime       *bool
	reason      string
	deliveries  int
	completions int
	worker      string
	finished    *time.Time
}

type fworker struct {
	running, busy bool
	held          []msg // delivered, not yet acked
	gen           int
	cpu           time.Duration
}

// fake is stage 07's stack in memory: servers (an HTTP handler), a queue, workers
// (goroutines) and the broker's state, with Stack's controls.
type fake struct {
	f     flaws
	mu    sync.Mutex
	jobs  map[string]*fjob
	queue []msg
	w     map[string]*fworker
	up    bool
	conns map[string]*Conn
	prime int // prime checks in flight
	next  int
	start time.Time
}

func newFake(f flaws) *fake {
	k := &fake{f: f, jobs: map[string]*fjob{}, w: map[string]*fworker{}, up: true, conns: map[string]*Conn{}, start: time.Now()}
	for _, h := range []string{"s1", "s2", "s3", "w1", "w2"} {
		k.conns[h] = &Conn{Up: !f.neverConnect, Connections: 1}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.w["w1"], k.w["w2"] = &fworker{}, &fworker{}
	k.startWorker("w1")
	k.startWorker("w2")
	return k
}

func (k *fake) startWorker(h string) {
	w := k.w[h]
	if w.running {
		return
	}
	w.running, w.busy, w.held = true, false, nil
	w.gen++
	go k.work(h, w.gen)
}

// take hands the worker its next message, held until acked. With auto-ack the broker has
// already pushed messages to the consumers as they came (publish), ignoring prefetch: the
// worker works through what it holds.
func (k *fake) take(h string) (msg, bool) {
	w := k.w[h]
	if k.f.autoAck {
		if k.up && len(k.queue) > 0 { // queued while no worker ran
			w.held = append(w.held, k.queue...)
			k.queue = nil
		}
		if len(w.held) == 0 {
			return msg{}, false
		}
		w.held[0].deliveries++
		return w.held[0], true
	}
	if !k.up || len(k.queue) == 0 {
		return msg{}, false
	}
	if k.f.hoard { // the first running worker holds everything
		var running []string
		for name, x := range k.w {
			if x.running {
				running = append(running, name)
			}
		}
		slices.Sort(running)
		if running[0] != h {
			return msg{}, false
		}
	}
	m := k.queue[0]
	k.queue = k.queue[1:]
	m.deliveries++
	w.held = append(w.held, m)
	return m, true
}

func (k *fake) work(h string, gen int) {
	for {
		k.mu.Lock()
		w := k.w[h]
		if !w.running || w.gen != gen {
			k.mu.Unlock()
			return
		}
		m, ok := k.take(h)
		if !ok {
			k.mu.Unlock()
			time.Sleep(2 * time.Millisecond)
			continue
		}
		w.busy = true
		k.mu.Unlock()
		k.handle(h, gen, m)
	}
}

// handle computes, stores, then acks: a kill before the ack redelivers the job (a broken,
// non-idempotent worker stores first, so a kill always redelivers a stored job).
func (k *fake) handle(h string, gen int, m msg) {
	var job struct {
		ID string `json:"id"`
		N  int64  `json:"n"`
	}
	poison := json.Unmarshal([]byte(m.body), &job) != nil
	store := func() {
		k.mu.Lock()
		defer k.mu.Unlock()
		w := k.w[h]
		if poison || !w.running || w.gen != gen {
			return
		}
		if j := k.jobs[m.id]; j != nil {
			j.deliveries++
			if j.state == "pending" || k.f.notIdempotent {
				p := IsPrime(job.N)
				now := time.Now()
				j.state, j.prime, j.worker, j.finished = "done", &p, h, &now
				j.completions++
			}
		}
	}
	if k.f.notIdempotent {
		store()
	}
	time.Sleep(cost / 2)
	if !k.f.notIdempotent {
		store()
	}
	time.Sleep(cost / 2)
	k.mu.Lock()
	defer k.mu.Unlock()
	w := k.w[h]
	if !w.running || w.gen != gen {
		return // killed: what it held went back with the kill (or was lost, auto-ack)
	}
	w.cpu += cost
	w.busy = false
	w.held = slices.DeleteFunc(w.held, func(x msg) bool { return x.id == m.id })
	switch {
	case !poison || k.f.autoAck: // acked, or forgotten by the broker already
	case m.deliveries <= limit: // returned to the queue
		k.queue = append(k.queue, m)
	case k.f.noDeadLetter: // no dead-letter exchange: RabbitMQ drops it at its default limit
	default:
		k.jobs[m.id] = &fjob{state: "failed", reason: fmt.Sprintf("dead-lettered (delivery_limit): delivered %d times", m.deliveries)}
	}
}

// kill stops a worker; what it held goes back to the queue unless the broker forgot it.
func (k *fake) kill(h string) {
	w := k.w[h]
	if !w.running {
		return
	}
	w.running = false
	if !k.f.autoAck {
		k.queue = append(w.held, k.queue...)
	}
	w.held = nil
}

// rpc answers a prime check the way the workers would.
func (k *fake) rpc(ctx context.Context, n int64, deadline time.Duration) (int, string) {
	until := time.Now().Add(deadline)
	for {
		k.mu.Lock()
		if !k.up {
			k.mu.Unlock()
			return 503, `{"error":"broker down"}`
		}
		for h, w := range k.w {
			if w.running && !w.busy {
				w.busy = true
				k.mu.Unlock()
				time.Sleep(cost)
				k.mu.Lock()
				w.busy = false
				w.cpu += cost
				k.mu.Unlock()
				p := IsPrime(n) || (k.f.wrongAnswer && n == 1)
				return 200, fmt.Sprintf(`{"n":%d,"prime":%v,"took_ms":%d,"worker":%q}`, n, p, cost.Milliseconds(), h)
			}
		}
		k.mu.Unlock()
		if time.Now().After(until) && !k.f.noDeadline {
			return 504, `{"error":"no worker answered"}`
		}
		select {
		case <-ctx.Done():
			return 499, ""
		case <-time.After(2 * time.Millisecond):
		}
	}
}

var jobPath = regexp.MustCompile(`^/jobs/([0-9a-f-]{36})$`)

func (k *fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reply := func(status int, body string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}
	switch {
	case r.URL.Path == "/users/1":
		if k.f.brokerReady && !k.up {
			reply(503, `{"error":"not ready: broker unavailable"}`)
			return
		}
		reply(200, `{"id":1}`)
	case r.URL.Path == "/ping":
		k.mu.Lock()
		busy := k.prime > 0
		k.mu.Unlock()
		if k.f.localPrime && busy {
			time.Sleep(400 * time.Millisecond)
		}
		reply(200, `{"message":"pong"}`)
	case strings.HasPrefix(r.URL.Path, "/is-prime/"):
		n, err := strconv.ParseInt(strings.TrimPrefix(r.URL.Path, "/is-prime/"), 10, 64)
		if err != nil || n < 0 || n > 100_000_000 {
			if k.f.badInput500 && err != nil {
				reply(500, `{"error":"internal"}`)
				return
			}
			reply(400, `{"error":"bad n"}`)
			return
		}
		k.mu.Lock()
		k.prime++
		k.mu.Unlock()
		status, body := k.rpc(r.Context(), n, 300*time.Millisecond)
		k.mu.Lock()
		k.prime--
		k.mu.Unlock()
		reply(status, body)
	case r.URL.Path == "/jobs" && r.Method == http.MethodPost:
		var in map[string]json.RawMessage
		if json.NewDecoder(r.Body).Decode(&in) != nil {
			reply(400, `{"error":"not a JSON object"}`)
			return
		}
		for f := range in {
			if f != "n" {
				reply(400, `{"error":"unknown field"}`)
				return
			}
		}
		raw, ok := in["n"]
		if !ok {
			reply(422, `{"error":"n is required"}`)
			return
		}
		n, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil {
			reply(400, `{"error":"n must be an integer"}`)
			return
		}
		if n < 0 || n > 100_000_000 {
			reply(422, `{"error":"n out of range"}`)
			return
		}
		k.mu.Lock()
		defer k.mu.Unlock()
		if !k.up {
			reply(503, `{"error":"broker down"}`)
			return
		}
		k.next++
		id := fmt.Sprintf("00000000-0000-4000-8000-%012d", k.next)
		k.jobs[id] = &fjob{n: n, state: "pending"}
		k.publish(msg{id: id, body: fmt.Sprintf(`{"id":%q,"n":%d}`, id, n)})
		w.Header().Set("Location", "/jobs/"+id)
		reply(202, fmt.Sprintf(`{"id":%q,"state":"pending"}`, id))
	case jobPath.MatchString(r.URL.Path):
		k.mu.Lock()
		j, ok := k.jobs[jobPath.FindStringSubmatch(r.URL.Path)[1]]
		var body []byte
		if ok {
			body, _ = json.Marshal(map[string]any{"state": j.state, "prime": j.prime, "reason": j.reason, "deliveries": j.deliveries,
				"completions": j.completions, "worker": j.worker, "finished_at": j.finished})
		}
		k.mu.Unlock()
		if !ok {
			reply(404, `{"error":"no such job"}`)
			return
		}
		reply(200, string(body))
	case strings.HasPrefix(r.URL.Path, "/jobs/"):
		reply(400, `{"error":"bad id"}`)
	default:
		reply(404, `{"error":"not found"}`)
	}
}

// Stack's controls.

func (k *fake) Replicas(_ context.Context, service string) ([]string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if service == "server" {
		return []string{"s1", "s2", "s3"}, nil
	}
	var out []string
	for h, w := range k.w {
		if w.running {
			out = append(out, h)
		}
	}
	slices.Sort(out)
	return out, nil
}

func (k *fake) Stack(context.Context) ([]fault.Container, error) {
	var out []fault.Container
	for _, h := range []string{"s1", "s2", "s3", "w1", "w2"} {
		svc := map[byte]string{'s': "server", 'w': "worker"}[h[0]]
		out = append(out, fault.Container{Service: svc, Name: h, Host: h, State: "running", StartedAt: k.start})
	}
	return out, nil
}

func (k *fake) KillReplica(_ context.Context, _, host string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.kill(host)
	return nil
}

func (k *fake) StopReplica(ctx context.Context, service, host string) error {
	return k.KillReplica(ctx, service, host)
}

func (k *fake) Stop(_ context.Context, service string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	switch service {
	case "worker":
		for h := range k.w {
			k.kill(h)
		}
	case "rabbitmq":
		k.up = false
		for _, w := range k.w { // connections close: unacked messages go back
			if !k.f.autoAck {
				k.queue = append(k.queue, w.held...)
			}
			w.held = nil
		}
		if k.f.volatile {
			k.queue = nil
		}
		for _, c := range k.conns {
			c.Up = false
		}
	}
	return nil
}

func (k *fake) Start(_ context.Context, service string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	switch service {
	case "worker":
		for h := range k.w {
			k.startWorker(h)
		}
	case "rabbitmq":
		if !k.up {
			k.up = true
			for _, c := range k.conns {
				if !k.f.noReconnect {
					c.Up, c.Connections = true, c.Connections+1
				}
			}
		}
	}
	return nil
}

func (k *fake) WaitHealthy(context.Context, string) error { return nil }

func (k *fake) CPUTime(context.Context, string) (time.Duration, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var t time.Duration
	for _, w := range k.w {
		t += w.cpu
	}
	return t, nil
}

func (k *fake) Connections(_ context.Context, service string) (map[string]Conn, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := map[string]Conn{}
	for h, c := range k.conns {
		if (service == "server") == (h[0] == 's') {
			out[h] = *c
		}
	}
	return out, nil
}

func (k *fake) Depth(context.Context, string) (int, int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	unacked := 0
	for _, w := range k.w {
		if !k.f.autoAck {
			unacked += len(w.held)
		}
	}
	return len(k.queue), unacked, nil
}

func (k *fake) PublishRaw(_ context.Context, _, id string, body []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.publish(msg{id: id, body: string(body)})
	return nil
}

// publish queues m; with auto-ack the broker pushes it at once to a consumer, in turn.
func (k *fake) publish(m msg) {
	var running []string
	for h, w := range k.w {
		if w.running {
			running = append(running, h)
		}
	}
	if !k.f.autoAck || len(running) == 0 {
		k.queue = append(k.queue, m)
		return
	}
	slices.Sort(running)
	k.next++
	w := k.w[running[k.next%len(running)]]
	w.held = append(w.held, m)
}

// testParams shrink every wait: the fake's prime check costs 40 ms and its deadline is 300 ms.
var testParams = Params{Servers: "server", Workers: "worker", Broker: "rabbitmq", JobsQueue: "jobs",
	Deadline: 300 * time.Millisecond, HeavyN: 25_000_009, JobN: 50_000_017, WorkerCPUs: 1,
	PingP99: 250 * time.Millisecond, Burst: time.Second, KillJobs: 12, Finish: 5 * time.Second, Stall: 500 * time.Millisecond,
	ScaleJobs: 6, MinSpeedup: 1.8, KillAfter: 60 * time.Millisecond, Phase: 300 * time.Millisecond,
	PoisonWait: 3 * time.Second, Connect: time.Second}

func run(t *testing.T, f flaws) (map[string]check.Result, check.Outcome, string) {
	t.Helper()
	k := newFake(f)
	srv := httptest.NewServer(k)
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		k.mu.Lock()
		for h := range k.w {
			k.kill(h)
		}
		k.mu.Unlock()
	})
	return checktest.Run("stage-7", Steps(testParams, k), checktest.Env(srv.URL, 128))
}

func TestCheckPassesAHealthyStack(t *testing.T) {
	results, outcome, out := run(t, flaws{})
	checktest.Passes(t, 7, results, outcome, out)
}

func TestCheckFailsEachBrokenStack(t *testing.T) {
	var order []string
	for _, st := range Steps(testParams, nil) {
		order = append(order, st.Name)
	}
	checktest.FirstFailEach(t, doc, order, []checktest.Broken[flaws]{
		{Name: "never connects", Flaws: flaws{neverConnect: true}, Failing: "rpc", Hint: "AMQP_ADDR", Actual: "not connected after"},
		{Name: "wrong answer", Flaws: flaws{wrongAnswer: true}, Failing: "rpc", Hint: "reply_to", Actual: "1: answered"},
		{Name: "bad input is a 500", Flaws: flaws{badInput500: true}, Failing: "rpc", Hint: "before anything is published", Actual: "/is-prime/abc"},
		{Name: "servers compute primes", Flaws: flaws{localPrime: true}, Failing: "responsive", Hint: "PRIME_MODE", Actual: "p99"},
		{Name: "auto-ack workers", Flaws: flaws{autoAck: true}, Failing: "worker-killed", Hint: "manual acks", Actual: "never completed"},
		{Name: "not idempotent", Flaws: flaws{notIdempotent: true}, Failing: "worker-killed", Hint: "WHERE state = 'pending'", Actual: "completed 2 times"},
		{Name: "no deadline", Flaws: flaws{noDeadline: true}, Failing: "no-workers", Hint: "deadline", Actual: "no answer"},
		{Name: "queue lost in a restart", Flaws: flaws{volatile: true}, Failing: "broker-restart", Hint: "durable quorum queue", Actual: "never completed"},
		{Name: "no reconnect", Flaws: flaws{noReconnect: true}, Failing: "broker-restart", Hint: "reconnect loop", Actual: "not reconnected"},
		{Name: "broker is a readiness dependency", Flaws: flaws{brokerReady: true}, Failing: "broker-restart", Hint: "readiness dependency", Actual: "GET /users/1"},
		{Name: "no dead-lettering", Flaws: flaws{noDeadLetter: true}, Failing: "poison", Hint: "x-delivery-limit", Actual: "after 3s"},
		{Name: "one worker hoards", Flaws: flaws{hoard: true}, Failing: "scaling", Hint: "prefetch", Actual: "jobs by worker"},
	}, run)
}
