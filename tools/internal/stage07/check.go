// Package stage07 proves stage 07's concepts on a live stack: prime checks run on workers
// behind RabbitMQ, as request/reply calls with a deadline and as jobs whose state lives in
// Postgres, and nothing accepted is lost when a worker, the workers or the broker die.
package stage07

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sysdesign-course/course/tools/internal/check"
)

// Stack is what the check needs from Docker and the broker; Live is one.
type Stack interface {
	check.ReplicaLister
	check.Observer
	KillReplica(ctx context.Context, service, host string) error
	StopReplica(ctx context.Context, service, host string) error
	Stop(ctx context.Context, service string) error
	Start(ctx context.Context, service string) error
	WaitHealthy(ctx context.Context, service string) error
	// CPUTime is the CPU the service's running containers have used so far.
	CPUTime(ctx context.Context, service string) (time.Duration, error)
	// Connections reads each replica's amqp_connections_total and amqp_connected.
	Connections(ctx context.Context, service string) (map[string]Conn, error)
	// Depth is how many messages queue holds, ready and unacknowledged.
	Depth(ctx context.Context, queue string) (ready, unacked int, err error)
	// PublishRaw puts a message with id and body straight on queue, with a confirm.
	PublishRaw(ctx context.Context, queue, id string, body []byte) error
}

// Conn is one process's broker connection as its metrics show it.
type Conn struct {
	Up          bool
	Connections float64
}

// Params size the steps.
type Params struct {
	Servers, Workers, Broker string // services
	JobsQueue                string
	Deadline                 time.Duration // the servers' RPC_TIMEOUT
	HeavyN                   int64         // a prime: the worst case of the naive check, ~50 ms of CPU
	JobN                     int64         // a prime for jobs, ~100 ms of CPU
	WorkerCPUs               float64       // each worker's CPU limit
	PingP99                  time.Duration // /ping's p99 bound while the workers are saturated: well above the 20-110 ms measured with the queue on a busy 2-core machine, well below the 1.1 s with the servers computing
	Burst                    time.Duration // how long the responsive step's burst lasts
	KillJobs                 int           // jobs in flight when a worker is killed
	Finish                   time.Duration // accepted jobs must all finish within this, once the stack is whole
	Stall                    time.Duration // no job finished and the queue empty this long: the rest are lost
	ScaleJobs                int           // jobs per worker in the scaling step
	MinSpeedup               float64
	KillAfter                time.Duration // jobs run this long before a worker is killed
	Phase                    time.Duration // each phase of submissions around the broker's restart
	PoisonWait               time.Duration // a poison message must end in a failed job within this
	Connect                  time.Duration // every server and worker is connected to the broker within this
}

// Defaults are what `make stage 7 check` uses.
var Defaults = Params{Servers: "server", Workers: "worker", Broker: "rabbitmq", JobsQueue: "jobs",
	Deadline: 5 * time.Second, HeavyN: 25_000_009, JobN: 50_000_017, WorkerCPUs: 0.5,
	PingP99: 250 * time.Millisecond, Burst: 5 * time.Second, KillJobs: 24,
	Finish: 60 * time.Second, Stall: 5 * time.Second, ScaleJobs: 12, MinSpeedup: 1.8,
	KillAfter: time.Second, Phase: 2 * time.Second, PoisonWait: 30 * time.Second, Connect: 15 * time.Second}

const doc = "docs/07-mq.md"

// Steps returns stage 07's check.
func Steps(p Params, s Stack) []check.Step {
	var took time.Duration // the rpc step's measure of one HeavyN on a worker, sizing the burst
	return []check.Step{
		{
			Name: "rpc", Title: "GET /is-prime/:n answers through the workers, right for primes, composites and edge cases; bad input is a 4xx before anything is queued",
			Doc:  doc + "#rpc-over-a-queue",
			Hint: "the server publishes to rpc.is-prime with reply_to amq.rabbitmq.reply-to and a correlation id (shared/mq/publish.go); the worker answers to reply_to (stages/07-mq/worker). make stage 7 logs shows both sides.",
			Run:  func(ctx context.Context, e *check.Env) check.Verdict { return rpc(ctx, e, p, s, &took) },
		},
		{
			Name: "responsive", Title: fmt.Sprintf("while a burst of prime checks keeps every worker busy, /ping through the VIP keeps its p99 under %s", p.PingP99),
			Doc:  doc + "#rpc-over-a-queue",
			Hint: "the servers must not compute primes themselves (PRIME_MODE=queue): a CPU-bound request on a server slows everything else it serves.",
			Run:  func(ctx context.Context, e *check.Env) check.Verdict { return responsive(ctx, e, p, s, took) },
		},
		{
			Name: "worker-killed", Title: "SIGKILL of a worker with jobs in flight: every accepted job completes exactly once, every concurrent RPC answers or gets its 504",
			Doc:  doc + "#at-least-once-delivery-and-idempotency",
			Hint: "a worker must ack a job only after its result is stored (manual acks, WORKER_AUTO_ACK=false): the broker then redelivers what a dead worker held, and the store's WHERE state = 'pending' makes the second delivery a no-op.",
			Run:  func(ctx context.Context, e *check.Env) check.Verdict { return workerKilled(ctx, e, p, s) },
		},
		{
			Name: "no-workers", Title: fmt.Sprintf("with every worker stopped, GET /is-prime is a 504 within %s, and jobs accepted meanwhile wait and complete when a worker returns", p.Deadline+time.Second),
			Doc:  doc + "#rpc-over-a-queue",
			Hint: "every call needs a deadline (RPC_TIMEOUT, a context timeout around the wait for the reply); jobs wait in the durable queue until a consumer comes.",
			Run:  func(ctx context.Context, e *check.Env) check.Verdict { return noWorkers(ctx, e, p, s) },
		},
		{
			Name: "broker-restart", Title: "RabbitMQ restarted under submissions: every job that got a 202 completes, submissions meanwhile get a fast 503 while /ping and /users answer, servers and workers reconnect by themselves",
			Doc:  doc + "#when-the-broker-goes-away",
			Hint: "a 202 only after the publisher confirm, into a durable quorum queue with persistent messages; a reconnect loop on NotifyClose (shared/mq/session.go) that declares the topology and restarts the consumers.",
			Run:  func(ctx context.Context, e *check.Env) check.Verdict { return brokerRestart(ctx, e, p, s) },
		},
		{
			Name: "poison", Title: "a message no worker can process ends failed after the queue's delivery limit, and the queue keeps flowing",
			Doc:  doc + "#poison-messages-and-dead-lettering",
			Hint: "the jobs queue needs x-delivery-limit and x-dead-letter-exchange (shared/jobs/queue.go); a worker returns what it cannot handle (nack, requeue) and the dead-letter consumer marks the job failed.",
			Run:  func(ctx context.Context, e *check.Env) check.Verdict { return poison(ctx, e, p, s) },
		},
		{
			Name: "scaling", Title: fmt.Sprintf("two workers complete at least %.1fx the jobs per second of one, within their CPU limits", p.MinSpeedup),
			Doc:  doc + "#scaling-workers",
			Hint: "prefetch 1 (WORKER_PREFETCH) lets the broker give each job to whichever worker is free; a large prefetch lets one worker hoard the queue.",
			Run:  func(ctx context.Context, e *check.Env) check.Verdict { return scaling(ctx, e, p, s) },
		},
	}
}

// IsPrime is a fast reference check (the workers' is naive on purpose).
func IsPrime(n int64) bool {
	if n < 2 {
		return false
	}
	for d := int64(2); d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

// reply is /is-prime's answer.
type reply struct {
	N      int64  `json:"n"`
	Prime  bool   `json:"prime"`
	TookMS int64  `json:"took_ms"`
	Worker string `json:"worker"`
}

func isPrime(ctx context.Context, e *check.Env, series string, n int64) (reply, *check.Response, error) {
	var r reply
	resp, err := e.Get(ctx, series, fmt.Sprintf("/is-prime/%d", n))
	if err != nil {
		return r, nil, err
	}
	if resp.Status == http.StatusOK {
		if err := json.Unmarshal(resp.Body, &r); err != nil {
			return r, resp, fmt.Errorf("200 with a body that is not a reply: %s", check.Short(resp.Body))
		}
	}
	return r, resp, nil
}

// awaitConnected waits until every server and worker is connected to the broker: right
// after the broker (re)starts they reconnect within their backoff (at most 2 s).
func awaitConnected(ctx context.Context, p Params, s Stack, within time.Duration) (time.Duration, []string) {
	start := time.Now()
	for {
		var missing []string
		for _, svc := range []string{p.Servers, p.Workers} {
			conns, err := s.Connections(ctx, svc)
			if err != nil {
				missing = append(missing, svc+": "+err.Error())
			}
			for host, c := range conns {
				if !c.Up {
					missing = append(missing, svc+" "+host)
				}
			}
		}
		slices.Sort(missing)
		if len(missing) == 0 || time.Since(start) > within || ctx.Err() != nil {
			return time.Since(start), missing
		}
		check.Pause(ctx, 200*time.Millisecond)
	}
}

func rpc(ctx context.Context, e *check.Env, p Params, s Stack, took *time.Duration) check.Verdict {
	if waited, missing := awaitConnected(ctx, p, s, p.Connect); len(missing) > 0 {
		return check.Failed("every server and worker connected to the broker", fmt.Sprintf("not connected after %s: %s", waited.Round(time.Second), strings.Join(missing, ", "))).
			WithHint("each process dials AMQP_ADDR with the credentials of mq.env.example (or your mq.env) and retries every 2 s at most: make stage 7 logs shows why it cannot.")
	}
	var wrong []string
	var workers []string
	for _, n := range []int64{0, 1, 2, 3, 4, 97, 7919, 7917, p.HeavyN, p.HeavyN + 2, 99_999_989, 100_000_000} {
		r, resp, err := isPrime(ctx, e, "rpc", n)
		switch {
		case err != nil:
			wrong = append(wrong, fmt.Sprintf("%d: %v", n, err))
		case resp.Status != http.StatusOK:
			wrong = append(wrong, fmt.Sprintf("%d: %d %s", n, resp.Status, check.Short(resp.Body)))
		case r.N != n || r.Prime != IsPrime(n):
			wrong = append(wrong, fmt.Sprintf("%d: answered n=%d prime=%v, want prime=%v", n, r.N, r.Prime, IsPrime(n)))
		default:
			if !slices.Contains(workers, r.Worker) && r.Worker != "" {
				workers = append(workers, r.Worker)
			}
			if n == p.HeavyN {
				*took = time.Duration(r.TookMS) * time.Millisecond
			}
		}
	}
	if len(wrong) > 0 {
		return check.Failed("200 with the right answer for each n", strings.Join(wrong, "; "))
	}
	bad := check.ClientErrors(ctx, e, []check.Request{
		check.Get("/is-prime/-1").Wants(400), check.Get("/is-prime/abc").Wants(400), check.Get("/is-prime/100000001").Wants(400),
		check.Get("/is-prime/1.5").Wants(400), check.Get("/is-prime/99999999999999999999").Wants(400),
		check.PostJSON("/jobs", `{"n": -1}`).Wants(422), check.PostJSON("/jobs", `{"n": "7"}`).Wants(400),
		check.PostJSON("/jobs", `{"n": 1.5}`).Wants(400), check.PostJSON("/jobs", `{}`).Wants(422),
		check.PostJSON("/jobs", `{"n": 7, "x": 1}`).Wants(400), check.PostJSON("/jobs", `not json`).Wants(400),
		check.PostJSON("/jobs", `{"n": 100000001}`).Wants(422), check.PostJSON("/jobs", `[7]`).Wants(400),
		check.Get("/jobs/not-a-uuid").Wants(400), check.Get("/jobs/00000000-0000-4000-8000-000000000000").Wants(404),
	})
	if len(bad) > 0 {
		return check.Failed("a 4xx with a JSON error for each bad request", strings.Join(bad, "; ")).
			WithHint("n is parsed and bounded before anything is published (shared/prime/rpc.go); POST /jobs decodes its body strictly (httpserver.DecodeJSON).")
	}
	return check.Passed("12 answers right (workers %s; %d took %dms of worker time), 15 bad requests refused with a 4xx", strings.Join(workers, ", "), p.HeavyN, took.Milliseconds())
}

// job is GET /jobs/:id's answer.
type job struct {
	ID          string     `json:"id"`
	State       string     `json:"state"`
	Prime       *bool      `json:"prime"`
	Reason      string     `json:"reason"`
	Deliveries  int        `json:"deliveries"`
	Completions int        `json:"completions"`
	Worker      string     `json:"worker"`
	N           *int64     `json:"n"`
	FinishedAt  *time.Time `json:"finished_at"`
}

// submit posts a job; id is set on a 202.
func submit(ctx context.Context, e *check.Env, series string, n int64) (id string, status int, latency time.Duration, err error) {
	resp, err := e.Send(ctx, series, http.MethodPost, "/jobs", fmt.Sprintf(`{"n": %d}`, n))
	if err != nil {
		return "", 0, 0, err
	}
	if resp.Status == http.StatusAccepted {
		var j job
		if err := json.Unmarshal(resp.Body, &j); err != nil || j.ID == "" || resp.Header.Get("Location") != "/jobs/"+j.ID {
			return "", resp.Status, resp.Latency, fmt.Errorf("202 without a job id and its Location: %s", check.Short(resp.Body))
		}
		return j.ID, resp.Status, resp.Latency, nil
	}
	return "", resp.Status, resp.Latency, nil
}

// submitAll posts count jobs of n and returns the accepted ids; anything but a 202 is an error.
func submitAll(ctx context.Context, e *check.Env, count int, n int64) ([]string, error) {
	ids := make([]string, 0, count)
	for range count {
		id, status, _, err := submit(ctx, e, "submit", n)
		if err != nil {
			return ids, err
		}
		if status != http.StatusAccepted {
			return ids, fmt.Errorf("POST /jobs answered %d", status)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

func getJob(ctx context.Context, e *check.Env, id string) (job, error) {
	var j job
	resp, err := e.Get(ctx, "jobs", "/jobs/"+id)
	if err != nil {
		return j, err
	}
	if resp.Status != http.StatusOK {
		return j, fmt.Errorf("GET /jobs/%s: %d %s", id, resp.Status, check.Short(resp.Body))
	}
	return j, json.Unmarshal(resp.Body, &j)
}

// outcome is where a set of jobs stands.
type outcome struct {
	jobs    map[string]job
	pending []string
	stalled string // why the wait stopped early: the queue is empty and nothing moves
}

// awaitJobs polls ids until none is pending, within passes, or nothing has finished for
// p.Stall while the jobs queue holds no message: the rest can never finish.
func awaitJobs(ctx context.Context, e *check.Env, p Params, s Stack, ids []string, within time.Duration) outcome {
	o := outcome{jobs: map[string]job{}}
	deadline := time.Now().Add(within)
	progress := time.Now()
	todo := slices.Clone(ids)
	for {
		var still []string
		for _, id := range todo {
			j, err := getJob(ctx, e, id)
			if err != nil || j.State == "pending" {
				still = append(still, id)
				if err == nil {
					o.jobs[id] = j
				}
				continue
			}
			o.jobs[id] = j
		}
		if len(still) < len(todo) {
			progress = time.Now()
		}
		todo, o.pending = still, still
		if len(todo) == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			return o
		}
		if time.Since(progress) > p.Stall {
			if ready, unacked, err := s.Depth(ctx, p.JobsQueue); err == nil && ready+unacked == 0 {
				o.stalled = fmt.Sprintf("the %s queue is empty and no job finished for %s: their messages are gone", p.JobsQueue, p.Stall)
				return o
			}
		}
		check.Pause(ctx, 250*time.Millisecond)
	}
}

// verify checks finished jobs: done once with the right answer. It returns the problems
// and how many jobs were delivered more than once.
func verify(o outcome, n int64) (problems []string, redelivered int) {
	want := IsPrime(n)
	for id, j := range o.jobs {
		if slices.Contains(o.pending, id) {
			continue
		}
		switch {
		case j.State != "done":
			problems = append(problems, fmt.Sprintf("%s ended %s (%s)", short(id), j.State, j.Reason))
		case j.Prime == nil || *j.Prime != want:
			problems = append(problems, fmt.Sprintf("%s has the wrong result", short(id)))
		case j.Completions != 1:
			problems = append(problems, fmt.Sprintf("%s was completed %d times", short(id), j.Completions))
		}
		if j.Deliveries > 1 {
			redelivered++
		}
	}
	slices.Sort(problems)
	return problems, redelivered
}

func short(id string) string { return id[:min(8, len(id))] }

// lost describes jobs still pending.
func lost(o outcome, total int, within time.Duration) string {
	why := o.stalled
	if why == "" {
		why = fmt.Sprintf("still pending after %s", within)
	}
	ids := make([]string, 0, 3)
	for _, id := range o.pending[:min(3, len(o.pending))] {
		ids = append(ids, short(id))
	}
	return fmt.Sprintf("%d of %d accepted jobs never completed (%s…): %s", len(o.pending), total, strings.Join(ids, ", "), why)
}

func responsive(ctx context.Context, e *check.Env, p Params, s Stack, took time.Duration) check.Verdict {
	workers, err := s.Replicas(ctx, p.Workers)
	if err != nil || len(workers) == 0 {
		return check.NotProven("no %s replica is running: %v", p.Workers, err)
	}
	if took <= 0 {
		took = 100 * time.Millisecond
	}
	// Half as much again as the workers can do at their CPU limits, so every one stays
	// busy and the backlog stays well inside the deadline and the queue's length.
	capacity := float64(len(workers)) * p.WorkerCPUs * float64(time.Second) / float64(took)
	rate := math.Min(1.5*capacity, 60)
	cpu0, _ := s.CPUTime(ctx, p.Workers)
	began := time.Now()
	res, err := burst(ctx, e, p, rate, p.Burst)
	if err != nil {
		return check.NotProven("the burst could not run: %v", err)
	}
	cpu1, _ := s.CPUTime(ctx, p.Workers)
	// The workers' share of their limits while the burst and its backlog ran.
	busy := float64(cpu1-cpu0) / (float64(time.Since(began)) * p.WorkerCPUs * float64(len(workers)))
	if busy < 0.6 {
		return check.NotProven("%.0f prime checks/s kept the %d workers only %.0f%% busy: the burst did not saturate them (is the machine starved?)", rate, len(workers), 100*busy)
	}
	if res.pingErrors > 0 || res.ping99 > p.PingP99 {
		return check.Failed(fmt.Sprintf("every /ping answered, p99 under %s", p.PingP99),
			fmt.Sprintf("p99 %s, %d of %d failed, while %.0f prime checks/s ran", check.MS(res.ping99), res.pingErrors, res.pings, rate))
	}
	if res.other > 0 {
		return check.Failed("each prime check answered right, or got its 504 (deadline) or 503 (queue full)",
			fmt.Sprintf("%d of %d got something else: %s", res.other, res.calls, res.kinds))
	}
	return check.Passed("%.0f prime checks/s for %s kept %d workers %.0f%% busy (%d answered, %d 504, %d 503); /ping p99 %s over %d requests",
		rate, p.Burst, len(workers), 100*busy, res.answered, res.timedOut, res.refused, check.MS(res.ping99), res.pings)
}

// burstResult is what a burst of prime checks beside a stream of pings saw.
type burstResult struct {
	calls, answered, timedOut, refused, other int
	kinds                                     string
	pings, pingErrors                         int
	ping99                                    time.Duration
}

// burst sends prime checks at rate and /ping at 50/s for d, concurrently; latencies count
// from each request's intended send time.
func burst(ctx context.Context, e *check.Env, p Params, rate float64, d time.Duration) (burstResult, error) {
	var r burstResult
	var mu sync.Mutex
	kinds := map[string]int{}
	var pingLat []time.Duration
	var wg sync.WaitGroup
	e = e.Unpooled()
	// pace starts do every `every` for d, each on its own goroutine.
	pace := func(every time.Duration, do func(due time.Time)) {
		start := time.Now()
		for i := 0; ; i++ {
			due := start.Add(time.Duration(i) * every)
			if due.Sub(start) >= d || ctx.Err() != nil {
				return
			}
			time.Sleep(time.Until(due))
			wg.Go(func() { do(due) })
		}
	}
	checkPrime := func(time.Time) {
		cctx, cancel := context.WithTimeout(ctx, p.Deadline+3*time.Second)
		defer cancel()
		_, resp, err := isPrime(cctx, e, "is-prime", p.HeavyN)
		mu.Lock()
		defer mu.Unlock()
		r.calls++
		switch {
		case err == nil && resp.Status == http.StatusOK:
			r.answered++
		case err == nil && resp.Status == http.StatusGatewayTimeout:
			r.timedOut++
		case err == nil && resp.Status == http.StatusServiceUnavailable && check.HasError(resp.Body):
			r.refused++ // the request queue is full: backpressure, not a failure
		case err != nil:
			r.other++
			kinds[err.Error()]++
		default:
			r.other++
			kinds[fmt.Sprint(resp.Status)]++
		}
	}
	ping := func(due time.Time) {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		resp, err := e.Get(cctx, "ping", "/ping")
		lat := time.Since(due)
		mu.Lock()
		defer mu.Unlock()
		r.pings++
		pingLat = append(pingLat, lat)
		if err != nil || resp.Status != http.StatusOK {
			r.pingErrors++
		}
	}
	paced := make(chan struct{})
	go func() {
		defer close(paced)
		pace(time.Duration(float64(time.Second)/rate), checkPrime)
	}()
	pace(20*time.Millisecond, ping)
	<-paced // every request has started: now wait for them to end
	wg.Wait()
	r.kinds = check.Counts(kinds)
	slices.Sort(pingLat)
	if len(pingLat) > 0 {
		r.ping99 = pingLat[int(math.Ceil(0.99*float64(len(pingLat))))-1]
	}
	return r, ctx.Err()
}

// restore brings the service's stopped or killed containers back, for the steps after.
func restore(ctx context.Context, s Stack, service string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 60*time.Second)
	defer cancel()
	_ = s.Start(ctx, service)
	_ = s.WaitHealthy(ctx, service)
}

func workerKilled(ctx context.Context, e *check.Env, p Params, s Stack) check.Verdict {
	workers, err := s.Replicas(ctx, p.Workers)
	if err != nil || len(workers) < 2 {
		return check.NotProven("this step needs two running %s replicas, found %v (%v)", p.Workers, workers, err)
	}
	defer restore(ctx, s, p.Workers)
	ids, err := submitAll(ctx, e, p.KillJobs, p.JobN)
	if err != nil {
		return check.Failed(fmt.Sprintf("%d jobs accepted (202)", p.KillJobs), err.Error())
	}
	// Prime checks in flight across the kill: each must answer or time out, never hang.
	var wg sync.WaitGroup
	var mu sync.Mutex
	calls := map[string]int{}
	for range 6 {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, p.Deadline+2*time.Second)
			defer cancel()
			r, resp, err := isPrime(cctx, e.Unpooled(), "is-prime", p.HeavyN)
			kind := ""
			switch {
			case err != nil && cctx.Err() != nil:
				kind = "hung"
			case err != nil:
				kind = "error: " + err.Error()
			case resp.Status == http.StatusOK && r.Prime == IsPrime(p.HeavyN):
				kind = "answered"
			case resp.Status == http.StatusGatewayTimeout:
				kind = "504"
			default:
				kind = fmt.Sprintf("%d %s", resp.Status, check.Short(resp.Body))
			}
			mu.Lock()
			calls[kind]++
			mu.Unlock()
		})
	}
	check.Pause(ctx, p.KillAfter)
	victim := workers[0]
	before := awaitJobs(ctx, e, p, s, ids, 0)
	if len(before.pending) == 0 {
		return check.NotProven("the %d jobs finished before the kill: nothing was in flight", len(ids))
	}
	if err := s.KillReplica(ctx, p.Workers, victim); err != nil {
		return check.NotProven("could not kill %s: %v", victim, err)
	}
	check.Pause(ctx, 2*time.Second)
	restore(ctx, s, p.Workers)
	o := awaitJobs(ctx, e, p, s, ids, p.Finish)
	wg.Wait()
	if len(o.pending) > 0 {
		return check.Failed("every accepted job completes", lost(o, len(ids), p.Finish))
	}
	if problems, _ := verify(o, p.JobN); len(problems) > 0 {
		return check.Failed("each job done exactly once, with the right result", strings.Join(problems, "; "))
	}
	_, redelivered := verify(o, p.JobN)
	for kind := range calls {
		if kind != "answered" && kind != "504" {
			return check.Failed("each prime check across the kill answers or gets its 504", check.Counts(calls))
		}
	}
	return check.Passed("killed %s with %d of %d jobs unfinished: all %d done exactly once (%d delivered twice); prime checks across the kill: %s",
		victim, len(before.pending), len(ids), len(ids), redelivered, check.Counts(calls))
}

func noWorkers(ctx context.Context, e *check.Env, p Params, s Stack) check.Verdict {
	defer restore(ctx, s, p.Workers)
	if err := s.Stop(ctx, p.Workers); err != nil {
		return check.NotProven("could not stop the workers: %v", err)
	}
	cctx, cancel := context.WithTimeout(ctx, p.Deadline+5*time.Second)
	start := time.Now()
	_, resp, err := isPrime(cctx, e, "is-prime", 97)
	elapsed := time.Since(start)
	cancel()
	switch {
	case err != nil:
		return check.Failed(fmt.Sprintf("a 504 within %s", p.Deadline+time.Second), fmt.Sprintf("no answer after %s: %v", check.MS(elapsed), err))
	case resp.Status == http.StatusOK:
		return check.NotProven("a prime check was answered with every worker stopped: is another consumer on rpc.is-prime?")
	case resp.Status != http.StatusGatewayTimeout || !check.HasError(resp.Body):
		return check.Failed("a 504 with a JSON error", fmt.Sprintf("%d %s after %s", resp.Status, check.Short(resp.Body), check.MS(elapsed)))
	case elapsed > p.Deadline+time.Second:
		return check.Failed(fmt.Sprintf("the 504 within %s", p.Deadline+time.Second), fmt.Sprintf("after %s", check.MS(elapsed)))
	}
	ids, err := submitAll(ctx, e, 5, 97)
	if err != nil {
		return check.Failed("jobs accepted (202) with no worker running: the queue holds them", err.Error()).
			WithHint("POST /jobs needs the broker, not the workers: it answers once the broker confirms the message.")
	}
	check.Pause(ctx, 2*time.Second)
	waiting := awaitJobs(ctx, e, p, s, ids, 0)
	if len(waiting.pending) != len(ids) {
		return check.NotProven("%d of %d jobs finished with every worker stopped: is another consumer on %s?", len(ids)-len(waiting.pending), len(ids), p.JobsQueue)
	}
	restore(ctx, s, p.Workers)
	o := awaitJobs(ctx, e, p, s, ids, p.Finish)
	if len(o.pending) > 0 {
		return check.Failed("the waiting jobs complete when the workers return", lost(o, len(ids), p.Finish))
	}
	if problems, _ := verify(o, 97); len(problems) > 0 {
		return check.Failed("each job done exactly once, with the right result", strings.Join(problems, "; "))
	}
	return check.Passed("GET /is-prime/97 got its 504 after %s; 5 jobs waited pending for 2s and completed once the workers returned", check.MS(elapsed))
}

func brokerRestart(ctx context.Context, e *check.Env, p Params, s Stack) check.Verdict {
	before := map[string]map[string]Conn{}
	for _, svc := range []string{p.Servers, p.Workers} {
		c, err := s.Connections(ctx, svc)
		if err != nil || len(c) == 0 {
			return check.NotProven("reading the %s replicas' broker connections: %v", svc, err)
		}
		before[svc] = c
	}
	started, err := startTimes(ctx, s)
	if err != nil {
		return check.NotProven("listing the containers: %v", err)
	}
	defer restore(ctx, s, p.Broker)

	var ids []string
	statuses := map[string]int{}
	var slowest503 time.Duration
	submitFor := func(d time.Duration) {
		end := time.Now().Add(d)
		for time.Now().Before(end) && ctx.Err() == nil {
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			id, status, lat, err := submit(sctx, e, "submit", p.JobN)
			cancel()
			switch {
			case err != nil:
				statuses["error: "+err.Error()]++
			case status == http.StatusAccepted:
				ids = append(ids, id)
				statuses["202"]++
			default:
				statuses[fmt.Sprint(status)]++
				if status == http.StatusServiceUnavailable {
					slowest503 = max(slowest503, lat)
				}
			}
			check.Pause(ctx, 100*time.Millisecond)
		}
	}
	submitFor(p.Phase)
	// A backlog, so that the restart finds jobs waiting in the queue, not only in flight.
	backlog, err := submitAll(ctx, e, p.KillJobs, p.JobN)
	ids = append(ids, backlog...)
	if err != nil {
		return check.Failed("jobs accepted (202) before the restart", err.Error())
	}
	down := time.Now()
	stopped := make(chan error, 1)
	go func() { stopped <- s.Stop(ctx, p.Broker) }()
	submitFor(p.Phase) // while it shuts down
	if err := <-stopped; err != nil {
		return check.NotProven("could not stop %s: %v", p.Broker, err)
	}
	submitFor(p.Phase) // while it is down
	// Everything that does not need the broker keeps working meanwhile.
	var unaffected []string
	for _, path := range []string{"/ping", "/users/1"} {
		if resp, err := e.Get(ctx, "ping", path); err != nil || resp.Status != http.StatusOK {
			unaffected = append(unaffected, fmt.Sprintf("GET %s: %v %v", path, err, statusOf(resp)))
		}
	}
	if err := s.Start(ctx, p.Broker); err != nil {
		return check.NotProven("could not start %s: %v", p.Broker, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	err = s.WaitHealthy(wctx, p.Broker)
	cancel()
	if err != nil {
		return check.NotProven("%s did not come back healthy: %v", p.Broker, err)
	}
	outage := time.Since(down)
	// Everyone reconnects by themselves, within a few seconds.
	var missing []string
	for end := time.Now().Add(20 * time.Second); ; {
		missing = notReconnected(ctx, s, p, before)
		if len(missing) == 0 || time.Now().After(end) || ctx.Err() != nil {
			break
		}
		check.Pause(ctx, 250*time.Millisecond)
	}
	submitFor(p.Phase) // after it is back
	if len(missing) > 0 {
		return check.Failed("every server and worker reconnects to the broker by itself",
			"not reconnected 20s after the broker was healthy: "+strings.Join(missing, ", "))
	}
	if len(unaffected) > 0 {
		return check.Failed("/ping and the users endpoints answer while the broker is away", strings.Join(unaffected, "; ")).
			WithHint("the broker must not be a readiness dependency of the servers: only /is-prime and POST /jobs need it.")
	}
	if restarted := restartedSince(ctx, s, started, p.Servers, p.Workers); len(restarted) > 0 {
		return check.Failed("servers and workers reconnect without a restart", "restarted: "+strings.Join(restarted, ", "))
	}
	for k := range statuses {
		if k != "202" && k != "503" {
			return check.Failed("each submission gets a 202 or, while the broker is away, a 503", check.Counts(statuses))
		}
	}
	if slowest503 > 2*time.Second {
		return check.Failed("a fast 503 while the broker is away", "the slowest 503 took "+check.MS(slowest503))
	}
	o := awaitJobs(ctx, e, p, s, ids, p.Finish)
	if len(o.pending) > 0 {
		return check.Failed("every job that got a 202 completes", lost(o, len(ids), p.Finish))
	}
	if problems, _ := verify(o, p.JobN); len(problems) > 0 {
		return check.Failed("each job done exactly once, with the right result", strings.Join(problems, "; "))
	}
	_, redelivered := verify(o, p.JobN)
	return check.Passed("broker away for %s with a backlog of %d jobs: submissions %s (slowest 503 %s); all %d accepted jobs done once (%d redelivered); %d servers and %d workers reconnected",
		outage.Round(100*time.Millisecond), len(backlog), check.Counts(statuses), check.MS(slowest503), len(ids), redelivered, len(before[p.Servers]), len(before[p.Workers]))
}

// statusOf is a response's status for a message, or nothing.
func statusOf(r *check.Response) string {
	if r == nil {
		return ""
	}
	return fmt.Sprintf("%d %s", r.Status, check.Short(r.Body))
}

// notReconnected names the processes whose connection count has not grown, or that are
// not connected now.
func notReconnected(ctx context.Context, s Stack, p Params, before map[string]map[string]Conn) []string {
	var out []string
	for svc, was := range before {
		now, err := s.Connections(ctx, svc)
		if err != nil {
			return []string{svc + ": " + err.Error()}
		}
		for host, c := range was {
			if n, ok := now[host]; !ok || !n.Up || n.Connections <= c.Connections {
				out = append(out, svc+" "+host)
			}
		}
	}
	slices.Sort(out)
	return out
}

func startTimes(ctx context.Context, s Stack) (map[string]time.Time, error) {
	cs, err := s.Stack(ctx)
	out := map[string]time.Time{}
	for _, c := range cs {
		out[c.Name] = c.StartedAt
	}
	return out, err
}

func restartedSince(ctx context.Context, s Stack, before map[string]time.Time, services ...string) []string {
	cs, _ := s.Stack(ctx)
	var out []string
	for _, c := range cs {
		if slices.Contains(services, c.Service) && !c.StartedAt.Equal(before[c.Name]) {
			out = append(out, c.Name)
		}
	}
	return out
}

func poison(ctx context.Context, e *check.Env, p Params, s Stack) check.Verdict {
	id, err := newID()
	if err != nil {
		return check.NotProven("%v", err)
	}
	if err := s.PublishRaw(ctx, p.JobsQueue, id, []byte("this is not a job")); err != nil {
		return check.NotProven("could not publish the poison message: %v", err)
	}
	var j job
	deadline := time.Now().Add(p.PoisonWait)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		j, err = getJob(ctx, e, id)
		if err == nil && j.State != "pending" {
			break
		}
		check.Pause(ctx, 250*time.Millisecond)
	}
	switch {
	case j.State == "":
		ready, unacked, derr := s.Depth(ctx, p.JobsQueue)
		return check.Failed(fmt.Sprintf("the poison message ends in a failed job within %s", p.PoisonWait),
			fmt.Sprintf("no job %s after %s (the %s queue holds %d ready, %d unacked; %v)", short(id), p.PoisonWait, p.JobsQueue, ready, unacked, derr))
	case j.State != "failed":
		return check.Failed("the poison message ends in a failed job", fmt.Sprintf("job %s is %s", short(id), j.State))
	case !strings.Contains(j.Reason, "delivery_limit"):
		return check.Failed("failed by the queue's delivery limit", fmt.Sprintf("reason %q", j.Reason))
	}
	ids, err := submitAll(ctx, e, 1, 97)
	if err != nil {
		return check.Failed("a job after the poison is accepted", err.Error())
	}
	o := awaitJobs(ctx, e, p, s, ids, 20*time.Second)
	if len(o.pending) > 0 {
		return check.Failed("a job after the poison completes", lost(o, 1, 20*time.Second))
	}
	return check.Passed("poison message %s: %s; a job submitted after it completed", short(id), j.Reason)
}

// newID is a random UUID (version 4), as the servers' job ids are.
func newID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}

// throughput is what a run of jobs measured.
type throughput struct {
	perSec   float64
	cpu      time.Duration  // the workers' CPU time meanwhile
	busy     time.Duration  // how long they worked: from the first job finished to the last
	byWorker map[string]int // jobs done by each worker
	hostIdle float64        // the machine's idle share meanwhile (-1: unknown)
}

// cpuShare is the share of their CPU limits the workers used while they worked.
func (t throughput) cpuShare(p Params, workers int) float64 {
	return t.cpu.Seconds() / (t.busy.Seconds() * float64(workers) * p.WorkerCPUs)
}

// rate measures jobs per second with the running workers: count jobs submitted at once.
// Each worker's own rate (its jobs after its first, over the time from its first finish to
// its last) is summed: how the workers' finishes interleave does not bias it.
func rate(ctx context.Context, e *check.Env, p Params, s Stack, count int) (throughput, error) {
	cpu0, _ := s.CPUTime(ctx, p.Workers)
	idle0, total0, hostErr := hostCPU()
	ids, err := submitAll(ctx, e, count, p.JobN)
	if err != nil {
		return throughput{}, err
	}
	o := awaitJobs(ctx, e, p, s, ids, p.Finish)
	cpu1, _ := s.CPUTime(ctx, p.Workers)
	idle1, total1, _ := hostCPU()
	if len(o.pending) > 0 {
		return throughput{}, errors.New(lost(o, len(ids), p.Finish))
	}
	t := throughput{cpu: cpu1 - cpu0, byWorker: map[string]int{}, hostIdle: -1}
	if hostErr == nil && total1 > total0 {
		t.hostIdle = float64(idle1-idle0) / float64(total1-total0)
	}
	first, last := map[string]time.Time{}, map[string]time.Time{}
	var all0, all1 time.Time
	for _, j := range o.jobs {
		if j.FinishedAt == nil {
			continue
		}
		w, at := j.Worker, *j.FinishedAt
		t.byWorker[w]++
		if f, ok := first[w]; !ok || at.Before(f) {
			first[w] = at
		}
		if at.After(last[w]) {
			last[w] = at
		}
		if all0.IsZero() || at.Before(all0) {
			all0 = at
		}
		if at.After(all1) {
			all1 = at
		}
	}
	for w, n := range t.byWorker {
		if span := last[w].Sub(first[w]); n > 1 && span > 0 {
			t.perSec += float64(n-1) / span.Seconds()
		}
	}
	t.busy = all1.Sub(all0)
	if t.perSec == 0 || t.busy <= 0 {
		return t, fmt.Errorf("%d jobs finished all at once", count)
	}
	return t, nil
}

// hostCPU reads the machine's idle and total CPU time (jiffies) from /proc/stat, which a
// container shares with its host.
func hostCPU() (idle, total uint64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	fields := strings.Fields(line)
	if len(fields) < 6 || fields[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	for i, f := range fields[1:] {
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return 0, 0, err
		}
		total += v
		if i == 3 || i == 4 { // idle, iowait
			idle += v
		}
	}
	return idle, total, nil
}

// scaling measures one worker against two; a shortfall the machine explains (see
// scaleOnce) is measured once more before it is called inconclusive: on a busy 2-core
// machine one measurement of a few seconds can be unlucky.
func scaling(ctx context.Context, e *check.Env, p Params, s Stack) check.Verdict {
	v, again := scaleOnce(ctx, e, p, s)
	if again {
		v, _ = scaleOnce(ctx, e, p, s)
	}
	return v
}

func scaleOnce(ctx context.Context, e *check.Env, p Params, s Stack) (v check.Verdict, again bool) {
	workers, err := s.Replicas(ctx, p.Workers)
	if err != nil || len(workers) != 2 {
		return check.NotProven("this step compares one worker with two; %d are running (%v)", len(workers), err), false
	}
	defer restore(ctx, s, p.Workers)
	if err := s.StopReplica(ctx, p.Workers, workers[1]); err != nil {
		return check.NotProven("could not stop %s: %v", workers[1], err), false
	}
	one, err := rate(ctx, e, p, s, p.ScaleJobs)
	if err != nil {
		return check.Failed("jobs complete with one worker", err.Error()), false
	}
	restore(ctx, s, p.Workers)
	two, err := rate(ctx, e, p, s, 2*p.ScaleJobs)
	if err != nil {
		return check.Failed("jobs complete with two workers", err.Error()), false
	}
	speedup := two.perSec / one.perSec
	got := fmt.Sprintf("%.1f jobs/s with one worker, %.1f with two: %.2fx (jobs by worker %s; CPU used %.0f%% of the limits, then %.0f%%)",
		one.perSec, two.perSec, speedup, check.Counts(two.byWorker), 100*one.cpuShare(p, 1), 100*two.cpuShare(p, 2))
	want := fmt.Sprintf("at least %.1fx the jobs/s of one worker", p.MinSpeedup)
	if short := check.Unfair(two.byWorker, slices.Collect(maps.Keys(two.byWorker)), 0.6); len(two.byWorker) < 2 || len(short) > 0 {
		return check.Failed(want+", each worker taking its share", got), false
	}
	if speedup >= p.MinSpeedup {
		return check.Passed("%s", got), false
	}
	// Both took their share, yet less than the speedup. Workers at their limits mean each
	// job cost more CPU with two (the cores slow each other: shared caches, SMT siblings);
	// workers under their limits on a saturated machine mean the machine was busy. Only
	// workers idling on a machine with room to spare is the stage's fault.
	switch {
	case two.cpuShare(p, 2) >= 0.8:
		return check.NotProven("%s: both workers ran at their CPU limits, so each job cost more CPU with two than with one: the machine's cores, not the queue", got), true
	case two.hostIdle >= 0 && two.hostIdle < 0.15:
		return check.NotProven("%s: the machine was %.0f%% busy, so the workers could not get their CPU", got, 100*(1-two.hostIdle)), true
	}
	return check.Failed(want, got+": the workers idled while jobs waited").
		WithHint("with jobs waiting, each worker should run at its CPU limit: look for something that serializes them (a shared lock, a prefetch of 1 with slow acks, one consumer for both)."), false
}
