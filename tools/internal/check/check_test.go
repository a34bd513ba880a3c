package check

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func step(name string, v Verdict) Step {
	return Step{Name: name, Title: name, Doc: "docs/x.md#" + name, Hint: "look at " + name,
		Run: func(context.Context, *Env) Verdict { return v }}
}

func TestOverallOutcome(t *testing.T) {
	pass, fail, unsure := Passed("ok"), Failed("a", "b"), NotProven("could not")
	for _, c := range []struct {
		steps []Step
		want  Outcome
		code  int
	}{
		{[]Step{step("a", pass), step("b", pass)}, Pass, 0},
		{[]Step{step("a", pass), step("b", unsure)}, Inconclusive, 2},
		{[]Step{step("a", unsure), step("b", fail), step("c", pass)}, Fail, 1},
	} {
		var out strings.Builder
		results, got := Run(context.Background(), "stage-9", c.steps, &Env{}, &out)
		assert.Equal(t, c.want, got)
		assert.Equal(t, c.code, got.ExitCode())
		assert.Len(t, results, len(c.steps), "every step runs, even after a failure")
	}
}

func TestFailurePrintsExpectedActualHintAndDoc(t *testing.T) {
	var out strings.Builder
	results, _ := Run(context.Background(), "stage-9", []Step{
		step("x", Failed("200", "503")),
		step("y", Failed("200", "404").WithHint("a better hint")),
	}, &Env{}, &out)
	s := out.String()
	for _, want := range []string{"[stage-9] ✗ x failed", "expected: 200", "actual:   503", "hint:     look at x", "read:     docs/x.md#x", "hint:     a better hint"} {
		assert.Contains(t, s, want)
	}
	assert.Equal(t, "a better hint", results[1].Hint)
}
