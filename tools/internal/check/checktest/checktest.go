// Package checktest holds what the stage checks' own tests share: asserting that a
// known-broken server fails exactly the step that proves what it breaks.
package checktest

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/sysdesign-course/course/tools/internal/check"
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
