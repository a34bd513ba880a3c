package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sysdesign-course/course/tools/internal/check"
	"github.com/sysdesign-course/course/tools/internal/course"
)

// The metadata test: course.toml, the tool's stage table, the chapters and the README
// must agree, or a learner meets a broken link, a negative control that proves nothing,
// or a stage the tool cannot run.

const root = "../../.."

func courseFile(t *testing.T) *course.Course {
	t.Helper()
	c, err := course.Load(root)
	require.NoError(t, err)
	return c
}

func TestEveryFinishedStageHasACheckAndARealNegativeControl(t *testing.T) {
	for _, st := range courseFile(t).Stages {
		impl, ok := stages[st.Number]
		if !st.Finished {
			continue
		}
		require.True(t, ok, "stage %d is finished in course.toml but the tool has no check for it", st.Number)
		steps, _ := impl.steps(nil) // building the steps touches no Docker
		names := map[string]bool{}
		for _, s := range steps {
			assert.False(t, names[s.Name], "stage %d has two steps named %s", st.Number, s.Name)
			assert.NotEqual(t, check.PreflightStep, s.Name, "stage %d: %s is the preflight's name", st.Number, s.Name)
			names[s.Name] = true
		}
		assert.True(t, names[st.Negative.Fails], "stage %d: the negative control must fail at %q, which is not a step (%v)", st.Number, st.Negative.Fails, names)
		assert.NotZero(t, st.Negative.Stack, "stage %d's negative control names no stack", st.Number)
		_, err := os.Stat(filepath.Join(root, "stages", st.Slug, "compose.yaml"))
		assert.NoError(t, err, "stage %d's folder", st.Number)
	}
}

func TestEveryStepLinksToASectionOfItsChapter(t *testing.T) {
	for _, st := range courseFile(t).Stages {
		impl, ok := stages[st.Number]
		if !ok {
			continue
		}
		steps, _ := impl.steps(nil)
		for _, s := range steps {
			file, anchor, found := strings.Cut(s.Doc, "#")
			require.True(t, found, "stage %d step %s: doc %q has no #section", st.Number, s.Name, s.Doc)
			assert.Equal(t, st.Chapter, file, "stage %d step %s links to another chapter", st.Number, s.Name)
			md, err := os.ReadFile(filepath.Join(root, file))
			require.NoError(t, err)
			assert.Contains(t, anchors(string(md)), anchor, "stage %d step %s: %s has no section #%s", st.Number, s.Name, file, anchor)
		}
	}
}

func TestTheReadmeStageTableMatchesCourseToml(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	require.NoError(t, err)
	rows := map[string]string{} // slug -> status cell
	row := regexp.MustCompile("(?m)^\\| (\\d\\d) \\| `([^`]+)` \\|.*\\| ([^|]+) \\|$")
	for _, m := range row.FindAllStringSubmatch(string(readme), -1) {
		assert.True(t, strings.HasPrefix(m[2], m[1]+"-"), "README row %s names folder %s", m[1], m[2])
		rows[m[2]] = strings.TrimSpace(m[3])
	}
	for _, st := range courseFile(t).Stages {
		status, ok := rows[st.Slug]
		if !assert.True(t, ok, "README's stage table has no row for %s", st.Slug) {
			continue
		}
		if st.Finished {
			assert.Equal(t, "available: ["+st.Chapter+"]("+st.Chapter+")", status, "README row %s", st.Slug)
		} else {
			assert.Equal(t, "coming", status, "README row %s: course.toml says it is not finished", st.Slug)
		}
		delete(rows, st.Slug)
	}
	for slug, status := range rows {
		assert.Equal(t, "coming", status, "README lists %s as available, but course.toml does not have it", slug)
	}
}

// anchors are the section ids GitHub gives a Markdown file's headings: lower case, spaces
// to hyphens, punctuation other than hyphens and underscores dropped, repeats numbered.
func anchors(md string) map[string]bool {
	out := map[string]bool{}
	seen := map[string]int{}
	inCode := false
	for line := range strings.Lines(md) {
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
		}
		if inCode || !strings.HasPrefix(line, "#") {
			continue
		}
		text := strings.ToLower(strings.TrimSpace(strings.TrimLeft(line, "#")))
		var b strings.Builder
		for _, r := range text {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-', r == '_', unicode.IsLetter(r), unicode.IsDigit(r):
				b.WriteRune(r)
			}
		}
		id := b.String()
		if n := seen[id]; n > 0 {
			out[id+"-"+strconv.Itoa(n)] = true
		} else {
			out[id] = true
		}
		seen[id]++
	}
	return out
}

func TestAnchors(t *testing.T) {
	a := anchors("# 03 · nginx\n## What the check proves\n```\n# not a heading\n```\n## Run it\n## Run it\n## Health: \"DB down\" vs down\n")
	assert.Equal(t, map[string]bool{"03--nginx": true, "what-the-check-proves": true, "run-it": true, "run-it-1": true, "health-db-down-vs-down": true}, a)
}

// Every stage folder is in course.toml, and every finished one has a README.md whose title
// is course.toml's and whose check steps are the checker's own (make readmes writes them).
func TestStageFoldersAgreeWithCourseToml(t *testing.T) {
	c := courseFile(t)
	slugs := map[string]course.Stage{}
	for _, st := range c.Stages {
		slugs[st.Slug] = st
	}
	dirs, err := filepath.Glob(filepath.Join(root, "stages", "[0-9][0-9]-*"))
	require.NoError(t, err)
	require.NotEmpty(t, dirs)
	for _, d := range dirs {
		_, ok := slugs[filepath.Base(d)]
		assert.True(t, ok, "stages/%s is not in course.toml", filepath.Base(d))
	}
	for _, st := range c.Stages {
		if !st.Finished {
			continue
		}
		path, want, err := stageReadme(root, st)
		if !assert.NoError(t, err) {
			continue
		}
		have, err := os.ReadFile(path)
		require.NoError(t, err)
		assert.Equal(t, string(want), string(have), "%s: its check steps differ from the checker's: run make readmes", path)
		title := fmt.Sprintf("# Stage %02d · %s\n", st.Number, st.Title)
		assert.True(t, strings.HasPrefix(string(have), title), "%s must start with %q", path, title)
	}
}

func TestWithStepsReplacesOnlyTheBlock(t *testing.T) {
	steps := []check.Step{{Name: "a", Title: "proves a"}, {Name: "b", Title: "proves b"}}
	in := "# T\n\nbefore\n" + stepsBegin + "| old |\n" + stepsEnd + "after\n"
	out, err := withSteps([]byte(in), steps)
	require.NoError(t, err)
	assert.Equal(t, "# T\n\nbefore\n"+stepsBegin+"| step | proves |\n|---|---|\n| `a` | proves a |\n| `b` | proves b |\n"+stepsEnd+"after\n", string(out))
	_, err = withSteps([]byte("# no block\n"), steps)
	assert.Error(t, err)
}

// The top level is the course as designed: tooling lives under tools/, what the stages
// build and pin under stages/. reports/ is the (ignored) output of checks and benches.
func TestTheTopLevelIsTheCourse(t *testing.T) {
	entries, err := os.ReadDir(root)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		if n := e.Name(); !strings.HasPrefix(n, ".") && n != "go.work.sum" && n != "reports" {
			names = append(names, n)
		}
	}
	assert.ElementsMatch(t, []string{"stages", "shared", "tools", "docs", "go.work", "Makefile", "README.md"}, names)
}
