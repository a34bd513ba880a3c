package course

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTheCourseFileLoads(t *testing.T) {
	c, err := Load("../../..")
	require.NoError(t, err)
	s, err := c.Stage(1)
	require.NoError(t, err)
	assert.Equal(t, "course-01-base", s.Project())
	_, err = c.Stage(len(c.Stages) + 1)
	assert.Error(t, err)
}

// loadToml loads a course.toml made of body.
func loadToml(t *testing.T, body string) error {
	t.Helper()
	root := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, "stages"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "stages", "course.toml"), []byte(body), 0o644))
	_, err := Load(root)
	return err
}

func TestFinishedStageNeedsANegativeControl(t *testing.T) {
	err := loadToml(t, `
[[stage]]
number = 1
slug = "01-x"
target = "http://x"
finished = true
`)
	assert.ErrorContains(t, err, "no negative control")
}

// A misspelt key would otherwise be ignored: a stage silently not finished, say.
func TestUnknownKeysAreErrors(t *testing.T) {
	err := loadToml(t, `
[[stage]]
number = 1
slug = "01-x"
target = "http://x"
finshed = true
`)
	assert.ErrorContains(t, err, "unknown keys [stage.finshed]")
}

func TestAStageBuildsOnAnEarlierOne(t *testing.T) {
	err := loadToml(t, `
[[stage]]
number = 1
slug = "01-x"
target = "http://x"
builds_on = 1
`)
	assert.ErrorContains(t, err, "builds on stage 1, which does not come before it")
}
