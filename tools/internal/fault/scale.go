package fault

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/pkg/stdcopy"
)

const numberLabel = "com.docker.compose.container-number"

// Replicas returns the running containers of a service by the name each reports in
// X-Served-By (its hostname: the first 12 characters of its id), in container-number order.
func (d *Docker) Replicas(ctx context.Context, service string) ([]string, error) {
	ids, err := d.Containers(ctx, service)
	if err != nil {
		return nil, err
	}
	type replica struct {
		host string
		n    int
	}
	var rs []replica
	for _, id := range ids {
		c, err := d.api.ContainerInspect(ctx, id)
		if err != nil {
			return nil, err
		}
		if c.State != nil && c.State.Running {
			n, _ := strconv.Atoi(c.Config.Labels[numberLabel])
			rs = append(rs, replica{c.Config.Hostname, n})
		}
	}
	slices.SortFunc(rs, func(a, b replica) int { return a.n - b.n })
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.host
	}
	return out, nil
}

// KillReplica sends SIGKILL to one running container of the service, chosen by its
// hostname, as `docker kill` would.
func (d *Docker) KillReplica(ctx context.Context, service, host string) error {
	return d.replica(ctx, "kill", service, host, func(id string) error { return d.api.ContainerKill(ctx, id, "KILL") })
}

// StopReplica stops one container of the service gracefully, as `docker stop` would.
func (d *Docker) StopReplica(ctx context.Context, service, host string) error {
	return d.replica(ctx, "stop", service, host, func(id string) error { return d.api.ContainerStop(ctx, id, container.StopOptions{}) })
}

func (d *Docker) replica(ctx context.Context, verb, service, host string, op func(id string) error) error {
	ids, err := d.Containers(ctx, service)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if strings.HasPrefix(id, host) {
			d.marker.Mark(verb + " " + service + " " + host)
			return op(id)
		}
	}
	return fmt.Errorf("no %s container %s", service, host)
}

// Scale makes the service run n containers, as `docker compose up --scale SERVICE=n`
// would: new ones are clones of an existing replica (same image, environment, labels and
// network aliases, so Docker's DNS answers the service name with them too); surplus ones,
// the highest-numbered first, are stopped and removed (all of them for n = 0).
func (d *Docker) Scale(ctx context.Context, service string, n int) error {
	if n < 0 {
		return fmt.Errorf("cannot scale %s to %d containers", service, n)
	}
	ids, err := d.Containers(ctx, service)
	if err != nil {
		return err
	}
	d.marker.Mark(fmt.Sprintf("scale %s to %d", service, n))
	type box struct {
		id  string
		num int
	}
	var have []box
	var template container.InspectResponse
	for _, id := range ids {
		c, err := d.api.ContainerInspect(ctx, id)
		if err != nil {
			return err
		}
		num, _ := strconv.Atoi(c.Config.Labels[numberLabel])
		have = append(have, box{id, num})
		if c.State != nil && c.State.Running {
			template = c
		}
	}
	slices.SortFunc(have, func(a, b box) int { return a.num - b.num })
	for len(have) > n {
		last := have[len(have)-1]
		timeout := 10
		if err := d.api.ContainerStop(ctx, last.id, container.StopOptions{Timeout: &timeout}); err != nil {
			return err
		}
		if err := d.api.ContainerRemove(ctx, last.id, container.RemoveOptions{}); err != nil {
			return err
		}
		have = have[:len(have)-1]
	}
	if len(have) == n {
		return nil
	}
	// Growing: nothing was removed, and Containers never lists none, so have is not empty.
	if template.Config == nil {
		return fmt.Errorf("no running %s container to clone", service)
	}
	for num := have[len(have)-1].num + 1; len(have) < n; num++ {
		id, err := d.clone(ctx, template, service, num)
		if err != nil {
			return err
		}
		have = append(have, box{id, num})
	}
	return nil
}

func (d *Docker) clone(ctx context.Context, t container.InspectResponse, service string, num int) (string, error) {
	cfg := *t.Config
	cfg.Hostname = "" // Docker names the clone after its own id, as X-Served-By shows
	cfg.Labels = map[string]string{}
	for k, v := range t.Config.Labels {
		cfg.Labels[k] = v
	}
	cfg.Labels[numberLabel] = strconv.Itoa(num)
	nets := &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{}}
	for name, ep := range t.NetworkSettings.Networks {
		var aliases []string
		for _, a := range ep.Aliases {
			if a == service { // keep the service name; drop the template's own names
				aliases = append(aliases, a)
			}
		}
		nets.EndpointsConfig[name] = &network.EndpointSettings{Aliases: aliases}
	}
	name := fmt.Sprintf("%s-%s-%d", d.project, service, num)
	created, err := d.api.ContainerCreate(ctx, &cfg, t.HostConfig, nets, nil, name)
	if err != nil {
		return "", fmt.Errorf("creating %s: %w", name, err)
	}
	if err := d.api.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		return "", fmt.Errorf("starting %s: %w", name, err)
	}
	return created.ID, nil
}

// Exec runs a command in the service's first container, for example `nginx -s reload`
// after a scale, as `docker compose exec` would; a non-zero exit is an error. It is marked
// on the timeline: it changes the stack.
func (d *Docker) Exec(ctx context.Context, service string, cmd ...string) error {
	d.marker.Mark(service + ": " + strings.Join(cmd, " "))
	_, err := d.Output(ctx, service, cmd...)
	return err
}

// Output runs a command in the service's first container and returns its standard
// output; a non-zero exit is an error carrying its standard error. Not marked: for
// commands that only look, such as a query.
func (d *Docker) Output(ctx context.Context, service string, cmd ...string) (string, error) {
	ids, err := d.Containers(ctx, service)
	if err != nil {
		return "", err
	}
	ex, err := d.api.ContainerExecCreate(ctx, ids[0], container.ExecOptions{Cmd: cmd, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return "", err
	}
	att, err := d.api.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
	if err != nil {
		return "", err
	}
	defer att.Close()
	var stdout, stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(&stdout, &stderr, att.Reader); err != nil {
		return "", err
	}
	st, err := d.api.ContainerExecInspect(ctx, ex.ID)
	if err != nil {
		return "", err
	}
	if st.ExitCode != 0 {
		return "", fmt.Errorf("%s in %s exited %d: %s", strings.Join(cmd, " "), service, st.ExitCode, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// CPUTime is the CPU time the service's running containers have used so far, summed:
// the difference of two readings is what they used in between.
func (d *Docker) CPUTime(ctx context.Context, service string) (time.Duration, error) {
	var total time.Duration
	err := d.stats(ctx, service, func(st container.StatsResponse) {
		total += time.Duration(st.CPUStats.CPUUsage.TotalUsage)
	})
	return total, err
}

// stats reads one sample of each of the service's containers' statistics.
func (d *Docker) stats(ctx context.Context, service string, each func(container.StatsResponse)) error {
	ids, err := d.Containers(ctx, service)
	if err != nil {
		return err
	}
	for _, id := range ids {
		r, err := d.api.ContainerStatsOneShot(ctx, id)
		if err != nil {
			return err
		}
		var st container.StatsResponse
		err = json.NewDecoder(r.Body).Decode(&st)
		r.Body.Close()
		if err != nil {
			return err
		}
		each(st)
	}
	return nil
}

// SetCPUs changes one replica's CPU limit at run time, as `docker update --cpus`.
func (d *Docker) SetCPUs(ctx context.Context, service, host string, cpus float64) error {
	return d.replica(ctx, fmt.Sprintf("limit to %.2f CPU:", cpus), service, host, func(id string) error {
		_, err := d.api.ContainerUpdate(ctx, id, container.UpdateConfig{Resources: container.Resources{NanoCPUs: int64(cpus * 1e9)}})
		return err
	})
}

// Memory is the memory the service's running containers use now, summed, without the page
// cache the kernel can drop (what `docker stats` shows).
func (d *Docker) Memory(ctx context.Context, service string) (uint64, error) {
	var total uint64
	err := d.stats(ctx, service, func(st container.StatsResponse) {
		total += st.MemoryStats.Usage - min(st.MemoryStats.Usage, st.MemoryStats.Stats["inactive_file"])
	})
	return total, err
}
