package cacheaside

import (
	"encoding/json"
	"io"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/sysdesign-course/course/shared/httpserver"
)

// Switch is a cache that can be switched on and off at run time.
type Switch interface {
	Name() string
	Enabled() bool
	SetEnabled(on bool)
}

// Name is the cache's name: its key prefix and metrics label.
func (a *Aside[V]) Name() string { return a.name }

// AdminPath is where RegisterAdmin routes the switch, on the server's admin listener
// (httpserver.Server.Admin), which no balancer forwards.
const AdminPath = "/admin/cache"

// RegisterAdmin routes GET AdminPath (each cache's state) and PUT AdminPath with
// {"enabled": true|false}, which switches every cache of this process: how the bench
// compares the same stack with and without its cache, with no rebuild or restart.
func RegisterAdmin(e *echo.Echo, caches ...Switch) {
	state := func(c echo.Context) error {
		m := map[string]bool{}
		for _, s := range caches {
			m[s.Name()] = s.Enabled()
		}
		return c.JSON(http.StatusOK, map[string]any{"caches": m})
	}
	e.GET(AdminPath, state)
	e.PUT(AdminPath, func(c echo.Context) error {
		var body struct {
			Enabled *bool `json:"enabled"`
		}
		dec := json.NewDecoder(http.MaxBytesReader(c.Response(), c.Request().Body, 1<<10))
		dec.DisallowUnknownFields()
		// The second Decode must meet the end of the body: dec.More() would accept a
		// trailing '}' or ']'.
		if err := dec.Decode(&body); err != nil || body.Enabled == nil || dec.Decode(new(json.RawMessage)) != io.EOF {
			return httpserver.BadRequest(`body must be {"enabled": true} or {"enabled": false}`)
		}
		for _, s := range caches {
			s.SetEnabled(*body.Enabled)
		}
		return state(c)
	})
}
