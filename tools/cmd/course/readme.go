package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sysdesign-course/course/tools/internal/check"
	"github.com/sysdesign-course/course/tools/internal/course"
)

// Each stage folder's README.md lists its check's steps between these markers. The list
// is made from the checker's own steps, so it cannot drift: `course readmes` rewrites it,
// and a test fails while a README differs from what it would write.
const (
	stepsBegin = "<!-- check steps: written by `make readmes` from the checker's own steps; do not edit -->\n"
	stepsEnd   = "<!-- end of check steps -->\n"
)

// stepsBlock is the README's list of a check's steps, markers included.
func stepsBlock(steps []check.Step) string {
	var b strings.Builder
	b.WriteString(stepsBegin)
	b.WriteString("| step | proves |\n|---|---|\n")
	for _, s := range steps {
		fmt.Fprintf(&b, "| `%s` | %s |\n", s.Name, s.Title)
	}
	b.WriteString(stepsEnd)
	return b.String()
}

// withSteps returns readme with its steps block replaced by steps'.
func withSteps(readme []byte, steps []check.Step) ([]byte, error) {
	i := bytes.Index(readme, []byte(stepsBegin))
	j := bytes.Index(readme, []byte(stepsEnd))
	if i < 0 || j < i {
		return nil, fmt.Errorf("no %q ... %q block", strings.TrimSpace(stepsBegin), strings.TrimSpace(stepsEnd))
	}
	out := append([]byte{}, readme[:i]...)
	out = append(out, stepsBlock(steps)...)
	return append(out, readme[j+len(stepsEnd):]...), nil
}

// stageReadme is the path of stage st's README.md and what it should hold.
func stageReadme(root string, st course.Stage) (path string, want []byte, err error) {
	impl, ok := stages[st.Number]
	if !ok {
		return "", nil, fmt.Errorf("stage %d has no check", st.Number)
	}
	path = filepath.Join(root, "stages", st.Slug, "README.md")
	have, err := os.ReadFile(path)
	if err != nil {
		return path, nil, err
	}
	steps, _ := impl.steps(nil) // building the steps touches no Docker
	want, err = withSteps(have, steps)
	if err != nil {
		return path, nil, fmt.Errorf("%s: %w", path, err)
	}
	return path, want, nil
}

// readmesCmd rewrites the steps block of every finished stage's README.md.
func readmesCmd() int {
	if err := writeReadmes(); err != nil {
		fmt.Fprintln(os.Stderr, "readmes:", err)
		return 1
	}
	return 0
}

func writeReadmes() error {
	root, err := course.Root()
	if err != nil {
		return err
	}
	c, err := course.Load(root)
	if err != nil {
		return err
	}
	for _, st := range c.Stages {
		if !st.Finished {
			continue
		}
		path, want, err := stageReadme(root, st)
		if err != nil {
			return err
		}
		if err := os.WriteFile(path, want, 0o644); err != nil {
			return err
		}
	}
	return nil
}
