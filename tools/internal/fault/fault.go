// Package fault stops, kills, pauses and starts the containers of a Compose service through
// the Docker Engine API, the way `docker compose stop|kill|pause|start SERVICE` would, and
// marks each fault on the run's timeline so the chart shows when it happened.
package fault

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
)

// Injector is what checks use to break a stack on purpose. Checks' own tests substitute a
// fake that stops in-process servers.
type Injector interface {
	Stop(ctx context.Context, service string) error
	Start(ctx context.Context, service string) error
	Kill(ctx context.Context, service string) error
	Pause(ctx context.Context, service string) error
	Unpause(ctx context.Context, service string) error
	// WaitHealthy returns once every container of the service reports healthy.
	WaitHealthy(ctx context.Context, service string) error
}

// Cluster is an Injector that also acts on single replicas and on a service's scale, for
// stages with several copies of a service. Docker implements it.
type Cluster interface {
	Injector
	// Replicas names the running containers by hostname (what X-Served-By shows).
	Replicas(ctx context.Context, service string) ([]string, error)
	KillReplica(ctx context.Context, service, host string) error
	StopReplica(ctx context.Context, service, host string) error
	SetCPUs(ctx context.Context, service, host string, cpus float64) error
	Scale(ctx context.Context, service string, n int) error
	Exec(ctx context.Context, service string, cmd ...string) error
}

var _ Cluster = (*Docker)(nil)

// Marker receives a label for every fault as it starts and ends.
type Marker interface{ Mark(label string) }

// Docker injects faults into one Compose project through the engine's API.
type Docker struct {
	api     *client.Client
	project string
	marker  Marker
}

// NewDocker connects with the usual DOCKER_HOST environment (default: the local socket).
func NewDocker(project string, marker Marker) (*Docker, error) {
	api, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	return &Docker{api: api, project: project, marker: marker}, nil
}

// Close releases the API connection.
func (d *Docker) Close() error { return d.api.Close() }

// Containers returns the ids of a service's containers, running or not.
func (d *Docker) Containers(ctx context.Context, service string) ([]string, error) {
	list, err := d.api.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", "com.docker.compose.project="+d.project),
		filters.Arg("label", "com.docker.compose.service="+service),
	)})
	if err != nil {
		return nil, fmt.Errorf("listing %s containers: %w", service, err)
	}
	if len(list) == 0 {
		return nil, fmt.Errorf("project %s has no %q service: is the stage up? (make stage N up)", d.project, service)
	}
	ids := make([]string, len(list))
	for i, c := range list {
		ids[i] = c.ID
	}
	return ids, nil
}

func (d *Docker) each(ctx context.Context, verb, service string, op func(ctx context.Context, id string) error) error {
	ids, err := d.Containers(ctx, service)
	if err != nil {
		return err
	}
	start := time.Now()
	d.marker.Mark(verb + " " + service)
	for _, id := range ids {
		if err := op(ctx, id); err != nil {
			return fmt.Errorf("%s %s (%.12s): %w", verb, service, id, err)
		}
	}
	d.marker.Mark(fmt.Sprintf("%s done (%.1fs)", verb, time.Since(start).Seconds()))
	return nil
}

// Stop sends SIGTERM and waits for the service's stop_grace_period, then SIGKILL: a
// graceful stop, as `docker compose stop`.
func (d *Docker) Stop(ctx context.Context, service string) error {
	return d.each(ctx, "stop", service, func(ctx context.Context, id string) error {
		return d.api.ContainerStop(ctx, id, container.StopOptions{})
	})
}

// Start starts stopped containers again.
func (d *Docker) Start(ctx context.Context, service string) error {
	return d.each(ctx, "start", service, func(ctx context.Context, id string) error {
		return d.api.ContainerStart(ctx, id, container.StartOptions{})
	})
}

// Kill sends SIGKILL: the process gets no chance to finish anything.
func (d *Docker) Kill(ctx context.Context, service string) error {
	return d.each(ctx, "kill", service, func(ctx context.Context, id string) error {
		return d.api.ContainerKill(ctx, id, "KILL")
	})
}

// Pause freezes the processes: connections stay open but nothing answers, the way a
// hung or overloaded machine looks from outside.
func (d *Docker) Pause(ctx context.Context, service string) error {
	return d.each(ctx, "pause", service, d.api.ContainerPause)
}

// Unpause thaws a paused service.
func (d *Docker) Unpause(ctx context.Context, service string) error {
	return d.each(ctx, "unpause", service, d.api.ContainerUnpause)
}

// WaitHealthy polls the containers' health status until all are healthy or ctx ends.
func (d *Docker) WaitHealthy(ctx context.Context, service string) error {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		ids, err := d.Containers(ctx, service)
		if err != nil {
			return err
		}
		healthy := 0
		for _, id := range ids {
			c, err := d.api.ContainerInspect(ctx, id)
			if err != nil {
				return err
			}
			if c.State != nil && c.State.Running && (c.State.Health == nil || c.State.Health.Status == "healthy") {
				healthy++
			}
		}
		if healthy == len(ids) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not healthy: %w", service, ctx.Err())
		case <-tick.C:
		}
	}
}

// CPULimit returns the CPU limit of the service's first container (0: unlimited).
func (d *Docker) CPULimit(ctx context.Context, service string) (float64, error) {
	ids, err := d.Containers(ctx, service)
	if err != nil {
		return 0, err
	}
	c, err := d.api.ContainerInspect(ctx, ids[0])
	if err != nil {
		return 0, err
	}
	return float64(c.HostConfig.NanoCPUs) / 1e9, nil
}

// Container is one container of the project as the engine reports it: what a check's
// preflight reads to decide whether the stack has settled.
type Container struct {
	Service   string
	Name      string    // e.g. course-03-replicas-server-2
	Host      string    // its hostname: what X-Served-By shows
	State     string    // created, running, paused, restarting, exited or dead
	Health    string    // "" (no healthcheck), starting, healthy or unhealthy
	ExitCode  int       // of the last run, when not running
	StartedAt time.Time // of the current (or last) run
	Restarts  int       // restarts by the engine's restart policy
}

// Stack lists every container of the project, running or not, with its state.
func (d *Docker) Stack(ctx context.Context) ([]Container, error) {
	list, err := d.api.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", "com.docker.compose.project="+d.project),
	)})
	if err != nil {
		return nil, fmt.Errorf("listing the containers of %s: %w", d.project, err)
	}
	out := make([]Container, 0, len(list))
	for _, c := range list {
		in, err := d.api.ContainerInspect(ctx, c.ID)
		if err != nil {
			continue // removed since the listing (a scale-in): it is no longer part of the stack
		}
		ct := Container{Service: c.Labels["com.docker.compose.service"], Name: strings.TrimPrefix(in.Name, "/"),
			Host: in.Config.Hostname, Restarts: in.RestartCount}
		if s := in.State; s != nil {
			ct.State, ct.ExitCode = string(s.Status), s.ExitCode
			ct.StartedAt, _ = time.Parse(time.RFC3339Nano, s.StartedAt)
			if s.Health != nil {
				ct.Health = string(s.Health.Status)
			}
		}
		out = append(out, ct)
	}
	return out, nil
}

// Env is the environment of the service's first container, as its process sees it: a
// check logs in to a broker with the credentials the stack was started with.
func (d *Docker) Env(ctx context.Context, service string) (map[string]string, error) {
	ids, err := d.Containers(ctx, service)
	if err != nil {
		return nil, err
	}
	in, err := d.api.ContainerInspect(ctx, ids[0])
	if err != nil {
		return nil, err
	}
	env := map[string]string{}
	for _, kv := range in.Config.Env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	return env, nil
}
