// Package checktest holds what the stage checks' own tests share: running the steps,
// asserting that a known-broken server fails exactly the step that proves what it breaks,
// and a fake cluster of in-process replicas.
package checktest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/sysdesign-course/course/tools/internal/check"
	"github.com/sysdesign-course/course/tools/internal/load"
	"github.com/sysdesign-course/course/tools/internal/report"
)

// OnlyFails asserts that results (by step name) fail at step failing, with a hint holding
// hint, an actual holding actual (if given), an expected line and a doc link under
// docPrefix, and that every other step passes. out is the check's printed output.
func OnlyFails(t *testing.T, results map[string]check.Result, out, failing, hint, actual, docPrefix string) {
	t.Helper()
	assert.Contains(t, results, failing, "no step named %s", failing)
	for name, r := range results {
		if name != failing {
			assert.Equal(t, check.Pass, r.Outcome, "%s should pass:\n%s", name, out)
			continue
		}
		assert.Equal(t, check.Fail, r.Outcome, "%s should fail:\n%s", name, out)
		assert.Contains(t, r.Hint, hint)
		assert.Contains(t, r.Actual, actual)
		assert.NotEmpty(t, r.Expected)
		assert.NotEmpty(t, r.Actual)
		assert.True(t, strings.HasPrefix(r.Doc, docPrefix), r.Doc)
	}
}

// Env is the environment a check's test runs steps in: target, a timeline and a load
// client for workers.
func Env(target string, workers int) *check.Env {
	return &check.Env{Target: target, Timeline: report.NewTimeline(100 * time.Millisecond), Client: load.NewClient(workers, 10*time.Second)}
}

// Run runs steps against env and returns their results by step name, the overall
// outcome and what the check printed.
func Run(prefix string, steps []check.Step, env *check.Env) (map[string]check.Result, check.Outcome, string) {
	var out strings.Builder
	results, outcome := check.Run(context.Background(), prefix, steps, env, &out)
	byName := map[string]check.Result{}
	for _, r := range results {
		byName[r.Step] = r
	}
	return byName, outcome, out.String()
}

// Passes asserts that the check ran its steps steps and passed them all.
func Passes(t *testing.T, steps int, results map[string]check.Result, outcome check.Outcome, out string) {
	t.Helper()
	assert.Equal(t, check.Pass, outcome, out)
	assert.Len(t, results, steps)
	t.Log("\n" + out)
}

// Broken is a known-broken variant of a stage's fake stack, F being what breaks it: its
// check must fail exactly the step Failing, with a hint holding Hint and an actual holding
// Actual.
type Broken[F any] struct {
	Name                  string
	Flaws                 F
	Failing, Hint, Actual string
}

// FailEach runs the check on every variant in parallel, through run, and asserts that each
// fails only its step (see OnlyFails), with its doc link under docPrefix.
func FailEach[F any](t *testing.T, docPrefix string, cases []Broken[F], run func(*testing.T, F) (map[string]check.Result, check.Outcome, string)) {
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			results, outcome, out := run(t, c.Flaws)
			assert.Equal(t, check.Fail, outcome, out)
			OnlyFails(t, results, out, c.Failing, c.Hint, c.Actual, docPrefix)
			t.Log("\n" + out)
		})
	}
}

// FirstFailEach is FailEach for flaws that break more than one promise (a worker in
// auto-ack mode loses jobs when killed and cannot return poison): each variant's first
// failing step, in order, must be its Failing step (see OnlyFails for what it must
// hold), and every step before it must pass. Later steps may fail too.
func FirstFailEach[F any](t *testing.T, docPrefix string, order []string, cases []Broken[F], run func(*testing.T, F) (map[string]check.Result, check.Outcome, string)) {
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			results, outcome, out := run(t, c.Flaws)
			assert.Equal(t, check.Fail, outcome, out)
			before := map[string]check.Result{}
			for _, name := range order {
				if name == c.Failing {
					before[name] = results[name]
					break
				}
				before[name] = results[name]
			}
			OnlyFails(t, before, out, c.Failing, c.Hint, c.Actual, docPrefix)
			t.Log("\n" + out)
		})
	}
}
