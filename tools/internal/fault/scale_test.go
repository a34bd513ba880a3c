package fault

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	apiVersion = "1.47" // pinned, so the client never pings to negotiate
	project    = "stage03"
	netName    = project + "_default"
)

// fakeEngine answers the Docker Engine API calls Scale makes, over an in-memory set of
// containers, and logs the calls that change something.
type fakeEngine struct {
	mu         sync.Mutex
	containers map[string]*container.InspectResponse
	nextID     int
	calls      []string
}

// add creates a container of service server with the given compose number.
func (e *fakeEngine) add(num int, running bool) string {
	e.nextID++
	id := fmt.Sprintf("%012d", e.nextID)
	e.containers[id] = &container.InspectResponse{
		ContainerJSONBase: &container.ContainerJSONBase{ID: id, State: &container.State{Running: running}, HostConfig: &container.HostConfig{}},
		Config: &container.Config{Hostname: id, Image: "server:latest", Env: []string{"A=1"}, Labels: map[string]string{
			"com.docker.compose.project": project, "com.docker.compose.service": "server", numberLabel: strconv.Itoa(num),
		}},
		NetworkSettings: &container.NetworkSettings{Networks: map[string]*network.EndpointSettings{
			netName: {Aliases: []string{fmt.Sprintf("%s-server-%d", project, num), "server", id}},
		}},
	}
	return id
}

func (e *fakeEngine) handler() http.Handler {
	mux := http.NewServeMux()
	v := "/v" + apiVersion
	mux.HandleFunc("GET "+v+"/containers/json", func(w http.ResponseWriter, r *http.Request) {
		var list []container.Summary
		for id, c := range e.containers {
			list = append(list, container.Summary{ID: id, Labels: c.Config.Labels})
		}
		writeJSON(w, http.StatusOK, list)
	})
	mux.HandleFunc("GET "+v+"/containers/{id}/json", func(w http.ResponseWriter, r *http.Request) {
		if c, ok := e.containers[r.PathValue("id")]; ok {
			writeJSON(w, http.StatusOK, c)
			return
		}
		writeJSON(w, http.StatusNotFound, map[string]string{"message": "no such container"})
	})
	mux.HandleFunc("POST "+v+"/containers/{id}/stop", func(w http.ResponseWriter, r *http.Request) {
		e.containers[r.PathValue("id")].State.Running = false
		e.calls = append(e.calls, "stop "+r.PathValue("id"))
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("DELETE "+v+"/containers/{id}", func(w http.ResponseWriter, r *http.Request) {
		delete(e.containers, r.PathValue("id"))
		e.calls = append(e.calls, "remove "+r.PathValue("id"))
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST "+v+"/containers/create", func(w http.ResponseWriter, r *http.Request) {
		var req container.CreateRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"message": err.Error()})
			return
		}
		e.nextID++
		id := fmt.Sprintf("%012d", e.nextID)
		e.containers[id] = &container.InspectResponse{
			ContainerJSONBase: &container.ContainerJSONBase{ID: id, Name: "/" + r.URL.Query().Get("name"), State: &container.State{}, HostConfig: req.HostConfig},
			Config:            req.Config,
			NetworkSettings:   &container.NetworkSettings{Networks: req.NetworkingConfig.EndpointsConfig},
		}
		e.calls = append(e.calls, "create "+r.URL.Query().Get("name"))
		writeJSON(w, http.StatusCreated, container.CreateResponse{ID: id})
	})
	mux.HandleFunc("POST "+v+"/containers/{id}/start", func(w http.ResponseWriter, r *http.Request) {
		e.containers[r.PathValue("id")].State.Running = true
		e.calls = append(e.calls, "start "+r.PathValue("id"))
		w.WriteHeader(http.StatusNoContent)
	})
	// One request at a time: Scale makes its calls one after another anyway.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		defer e.mu.Unlock()
		mux.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

type marks []string

func (m *marks) Mark(label string) { *m = append(*m, label) }

// newFakeDocker starts a fake engine with one server container per entry of running
// (numbered from 1; false: stopped), and a Docker pointed at it.
func newFakeDocker(t *testing.T, running ...bool) (*Docker, *fakeEngine, *marks) {
	t.Helper()
	e := &fakeEngine{containers: map[string]*container.InspectResponse{}}
	for i, r := range running {
		e.add(i+1, r)
	}
	srv := httptest.NewServer(e.handler())
	t.Cleanup(srv.Close)
	api, err := client.NewClientWithOpts(client.WithHost("tcp://"+strings.TrimPrefix(srv.URL, "http://")), client.WithVersion(apiVersion))
	require.NoError(t, err)
	t.Cleanup(func() { _ = api.Close() })
	m := &marks{}
	return &Docker{api: api, project: project, marker: m}, e, m
}

// numbers are the compose numbers of the engine's containers, sorted, with "+" for running.
func (e *fakeEngine) numbers() []string {
	var out []string
	for _, c := range e.containers {
		n := c.Config.Labels[numberLabel]
		if c.State.Running {
			n += "+"
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func TestScaleToZeroStopsAndRemovesEveryContainer(t *testing.T) {
	d, e, m := newFakeDocker(t, true, true, false)
	require.NoError(t, d.Scale(t.Context(), "server", 0))
	assert.Empty(t, e.containers)
	assert.Equal(t, []string{
		"stop 000000000003", "remove 000000000003", "stop 000000000002", "remove 000000000002",
		"stop 000000000001", "remove 000000000001",
	}, e.calls, "highest number first")
	assert.Equal(t, marks{"scale server to 0"}, *m)
}

func TestScaleDownKeepsTheLowestNumbers(t *testing.T) {
	d, e, _ := newFakeDocker(t, true, true, true)
	require.NoError(t, d.Scale(t.Context(), "server", 1))
	assert.Equal(t, []string{"1+"}, e.numbers())
}

func TestScaleUpClonesWithTheNextNumbersAndTheServiceAlias(t *testing.T) {
	d, e, _ := newFakeDocker(t, true)
	require.NoError(t, d.Scale(t.Context(), "server", 3))
	assert.Equal(t, []string{"1+", "2+", "3+"}, e.numbers())
	assert.Equal(t, []string{"create stage03-server-2", "start 000000000002", "create stage03-server-3", "start 000000000003"}, e.calls)
	clone := e.containers["000000000003"]
	assert.Equal(t, "/stage03-server-3", clone.Name)
	assert.Empty(t, clone.Config.Hostname, "Docker names the clone after its id")
	assert.Equal(t, "server:latest", clone.Config.Image)
	assert.Equal(t, []string{"A=1"}, clone.Config.Env)
	assert.Equal(t, "server", clone.Config.Labels["com.docker.compose.service"])
	assert.Equal(t, []string{"server"}, clone.NetworkSettings.Networks[netName].Aliases,
		"the service name only, not the template's own names")
	assert.Equal(t, "1", e.containers["000000000001"].Config.Labels[numberLabel], "the template is untouched")
}

func TestScaleToTheCurrentCountChangesNothing(t *testing.T) {
	d, e, _ := newFakeDocker(t, true, true)
	require.NoError(t, d.Scale(t.Context(), "server", 2))
	assert.Empty(t, e.calls)
}

func TestScaleUpWithoutARunningContainerIsAnError(t *testing.T) {
	d, e, _ := newFakeDocker(t, false)
	err := d.Scale(t.Context(), "server", 2)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no running server container to clone")
	assert.Empty(t, e.calls)
}

func TestScaleRejectsANegativeCount(t *testing.T) {
	d, e, m := newFakeDocker(t, true)
	assert.Error(t, d.Scale(t.Context(), "server", -1))
	assert.Empty(t, e.calls)
	assert.Empty(t, *m)
}
