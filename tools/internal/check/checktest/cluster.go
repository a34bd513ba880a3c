package checktest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"github.com/sysdesign-course/course/shared/httpserver"
	"github.com/sysdesign-course/course/shared/probe"
	"github.com/sysdesign-course/course/tools/internal/fault"
)

// Replica is one in-process server of a Cluster. Its name is its address, which it keeps
// across a kill and a start, as a container keeps its hostname: the name is what its
// handler must put in X-Served-By.
type Replica struct {
	Name    string
	handler http.Handler
	delay   atomic.Int64 // what each request costs it with its CPU share: Cluster.Work / CPUs

	mu      sync.Mutex
	srv     *http.Server // nil while it is down
	started time.Time    // when it last started, as Docker's State.StartedAt
}

func (r *Replica) up() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.srv != nil
}

func (r *Replica) serve(ln net.Listener) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.started = time.Now()
	r.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		time.Sleep(time.Duration(r.delay.Load()))
		r.handler.ServeHTTP(w, req)
	})}
	go func() { _ = r.srv.Serve(ln) }()
}

// kill closes the listener and every connection at once, as SIGKILL would.
func (r *Replica) kill() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.srv == nil {
		return fmt.Errorf("%s is not running", r.Name)
	}
	err := r.srv.Close()
	r.srv = nil
	return err
}

// ReadReplica is a course server (the real httpserver, so X-Served-By and the JSON errors
// are the real ones) with the users read path, GET /users/:id answering {"id": ...}: the
// handler of a fake replica behind a balancer.
func ReadReplica(name string) http.Handler {
	s := httpserver.New(httpserver.Config{Instance: name}, slog.New(slog.DiscardHandler))
	s.Echo.GET("/users/:id", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"id": c.Param("id")})
	})
	return s.Echo
}

// ClusterConfig describes a fake service.
type ClusterConfig struct {
	Service  string
	Replicas int
	// Handler makes a replica's handler, given the name it must report in X-Served-By.
	Handler func(name string) http.Handler
	// Work is what a request costs a replica with a whole CPU; CPUs is each one's share
	// at first. SetCPUs changes a replica's share, so its requests take Work/CPUs.
	Work time.Duration
	CPUs float64
	// Started, if set, runs whenever a replica starts (stage 04's servers register).
	Started func(r *Replica)
	// Exec, if set, runs the commands the check sends to other services (nginx -s reload).
	Exec func(service string, cmd []string) error
}

// Cluster is a fake fault.Cluster: the replicas of one service in process. A killed
// replica's address stops answering (see Dial) until Start brings it back at the same
// address; Scale adds and removes replicas.
type Cluster struct {
	cfg ClusterConfig
	t   *testing.T

	mu       sync.Mutex
	replicas []*Replica
}

// NewCluster starts cfg.Replicas replicas; they are closed when the test ends.
func NewCluster(t *testing.T, cfg ClusterConfig) *Cluster {
	t.Helper()
	c := &Cluster{cfg: cfg, t: t}
	for range cfg.Replicas {
		c.add()
	}
	t.Cleanup(func() {
		for _, r := range c.all() {
			_ = r.kill()
		}
	})
	return c
}

func (c *Cluster) add() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(c.t, err)
	r := &Replica{Name: ln.Addr().String()}
	r.handler = c.cfg.Handler(r.Name)
	c.setCPUs(r, c.cfg.CPUs)
	r.serve(ln)
	c.mu.Lock()
	c.replicas = append(c.replicas, r)
	c.mu.Unlock()
	c.started(r)
}

func (c *Cluster) started(r *Replica) {
	if c.cfg.Started != nil {
		c.cfg.Started(r)
	}
}

func (c *Cluster) all() []*Replica {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.replicas)
}

func (c *Cluster) find(service, host string) (*Replica, error) {
	if service != c.cfg.Service {
		return nil, fmt.Errorf("no %q service", service)
	}
	for _, r := range c.all() {
		if r.Name == host {
			return r, nil
		}
	}
	return nil, fmt.Errorf("no %s replica %s", service, host)
}

// Stack reports the replicas as Docker would report their containers, so that the check's
// waits for a settling stack see which replicas just started.
func (c *Cluster) Stack(context.Context) ([]fault.Container, error) {
	var out []fault.Container
	for i, r := range c.all() {
		r.mu.Lock()
		ct := fault.Container{Service: c.cfg.Service, Name: fmt.Sprintf("%s-%d", c.cfg.Service, i+1), Host: r.Name,
			State: "exited", StartedAt: r.started}
		if r.srv != nil {
			ct.State, ct.Health = "running", "healthy"
		}
		r.mu.Unlock()
		out = append(out, ct)
	}
	return out, nil
}

// Dial connects to a replica as Docker's network would: a killed replica's address
// stops answering, so the attempt hangs until timeout (or ctx) ends it.
func (c *Cluster) Dial(timeout time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if r, err := c.find(c.cfg.Service, addr); err == nil && !r.up() {
			select {
			case <-time.After(timeout):
				return nil, fmt.Errorf("dial %s: i/o timeout", addr)
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return d.DialContext(ctx, network, addr)
	}
}

// Replicas names the running replicas, oldest first.
func (c *Cluster) Replicas(_ context.Context, service string) ([]string, error) {
	if service != c.cfg.Service {
		return nil, fmt.Errorf("no %q service", service)
	}
	var names []string
	for _, r := range c.all() {
		if r.up() {
			names = append(names, r.Name)
		}
	}
	return names, nil
}

// KillReplica takes one replica down at once.
func (c *Cluster) KillReplica(_ context.Context, service, host string) error {
	r, err := c.find(service, host)
	if err != nil {
		return err
	}
	return r.kill()
}

// Start starts every replica that is down again, at its old address.
func (c *Cluster) Start(_ context.Context, service string) error {
	if service != c.cfg.Service {
		return fmt.Errorf("no %q service", service)
	}
	for _, r := range c.all() {
		if r.up() {
			continue
		}
		ln, err := net.Listen("tcp", r.Name)
		if err != nil {
			return err
		}
		r.serve(ln)
		c.started(r)
	}
	return nil
}

// WaitHealthy returns once every replica answers its own /healthz.
func (c *Cluster) WaitHealthy(ctx context.Context, service string) error {
	if service != c.cfg.Service {
		return fmt.Errorf("no %q service", service)
	}
	for _, r := range c.all() {
		for probe.Check("http://"+r.Name+"/healthz", time.Second) != nil {
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s not healthy: %w", r.Name, ctx.Err())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return nil
}

// SetCPUs changes one replica's CPU share: its requests now take Work/cpus.
func (c *Cluster) SetCPUs(_ context.Context, service, host string, cpus float64) error {
	r, err := c.find(service, host)
	if err != nil {
		return err
	}
	c.setCPUs(r, cpus)
	return nil
}

func (c *Cluster) setCPUs(r *Replica, cpus float64) {
	r.delay.Store(int64(math.Round(float64(c.cfg.Work) / cpus)))
}

// Scale adds replicas, or kills and removes the newest ones.
func (c *Cluster) Scale(_ context.Context, service string, n int) error {
	if service != c.cfg.Service {
		return fmt.Errorf("no %q service", service)
	}
	for len(c.all()) < n {
		c.add()
	}
	c.mu.Lock()
	surplus := slices.Clone(c.replicas[min(n, len(c.replicas)):])
	c.replicas = c.replicas[:min(n, len(c.replicas))]
	c.mu.Unlock()
	for _, r := range surplus {
		_ = r.kill()
	}
	return nil
}

// Exec hands the command to ClusterConfig.Exec.
func (c *Cluster) Exec(_ context.Context, service string, cmd ...string) error {
	if c.cfg.Exec == nil {
		return fmt.Errorf("no %q service", service)
	}
	return c.cfg.Exec(service, cmd)
}

var errNotUsed = errors.New("not used by the stage's check")

// Stop, Kill, Pause, Unpause and StopReplica are not used by the checks that take a cluster.
func (c *Cluster) Stop(context.Context, string) error                { return errNotUsed }
func (c *Cluster) Kill(context.Context, string) error                { return errNotUsed }
func (c *Cluster) Pause(context.Context, string) error               { return errNotUsed }
func (c *Cluster) Unpause(context.Context, string) error             { return errNotUsed }
func (c *Cluster) StopReplica(context.Context, string, string) error { return errNotUsed }
