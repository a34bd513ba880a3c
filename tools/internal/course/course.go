// Package course reads stages/course.toml, the one file that says which stages exist, in
// what order, what their checks talk to, and how each check's negative control is run.
package course

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/BurntSushi/toml"
)

// Stage is one entry of course.toml.
type Stage struct {
	Number   int      `toml:"number"`
	Slug     string   `toml:"slug"`
	Title    string   `toml:"title"`
	Concept  string   `toml:"concept"`
	Chapter  string   `toml:"chapter"`
	Target   string   `toml:"target"`
	Replicas string   `toml:"replicas"`  // the service the target balances over, if any
	Rejoin   string   `toml:"rejoin"`    // how a replica gets back into the target's rotation
	BuildsOn int      `toml:"builds_on"` // the stage whose stack this one extends (0: none)
	Finished bool     `toml:"finished"`
	Negative Negative `toml:"negative"`
}

// Negative describes the stack the check must fail on.
type Negative struct {
	What  string            `toml:"what"`
	Stack int               `toml:"stack"` // which stage's stack to bring up
	Env   map[string]string `toml:"env"`   // extra environment for that stack
	Fails string            `toml:"fails"` // the step that must fail
}

// Project is the Compose project name of the stage's stack (compose.yaml's `name:`).
func (s Stage) Project() string { return "course-" + s.Slug }

// Course is the whole file.
type Course struct {
	Stages []Stage `toml:"stage"`
}

// Load reads course.toml from the repository root.
func Load(root string) (*Course, error) {
	var c Course
	path := filepath.Join(root, "stages", "course.toml")
	md, err := toml.DecodeFile(path, &c)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if extra := md.Undecoded(); len(extra) > 0 { // a misspelt key would be silently ignored
		return nil, fmt.Errorf("%s: unknown keys %v", path, extra)
	}
	for i, s := range c.Stages {
		if s.Number != i+1 || s.Slug == "" || s.Target == "" {
			return nil, fmt.Errorf("%s: stage %d (entry %d) needs number %d, a slug and a target", path, s.Number, i+1, i+1)
		}
		if s.BuildsOn < 0 || s.BuildsOn >= s.Number {
			return nil, fmt.Errorf("%s: stage %d builds on stage %d, which does not come before it", path, s.Number, s.BuildsOn)
		}
		if s.Finished && (s.Negative.Fails == "" || s.Negative.Stack == 0) {
			return nil, fmt.Errorf("%s: finished stage %d has no negative control", path, s.Number)
		}
	}
	return &c, nil
}

// Stage returns stage n.
func (c *Course) Stage(n int) (Stage, error) {
	if n < 1 || n > len(c.Stages) {
		return Stage{}, fmt.Errorf("no stage %d: the course has stages 1 to %d", n, len(c.Stages))
	}
	return c.Stages[n-1], nil
}

// Root finds the repository root: $COURSE_ROOT, or the nearest parent holding go.work.
func Root() (string, error) {
	if r := os.Getenv("COURSE_ROOT"); r != "" {
		return r, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the course repository (no go.work above here); set COURSE_ROOT")
		}
		dir = parent
	}
}
