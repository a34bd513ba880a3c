package report

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWriteSavesJSONAndChart(t *testing.T) {
	tl := NewTimeline(100 * time.Millisecond)
	now := time.Now()
	tl.Record("ping", now, 2*time.Millisecond, false)
	tl.Record("ping", now.Add(150*time.Millisecond), 40*time.Millisecond, true)
	tl.Mark("stop server")
	dir := t.TempDir()
	require.NoError(t, Write(dir, Report{Stage: "01-base", Kind: "check", Outcome: "pass"}, tl))

	var r Report
	b, err := os.ReadFile(filepath.Join(dir, "report.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &r))
	require.Len(t, r.Series, 1)
	assert.EqualValues(t, 1, r.Series[0].OK)
	assert.EqualValues(t, 1, r.Series[0].Failed)
	require.Len(t, r.Series[0].Points, 2)
	assert.EqualValues(t, 100, r.Series[0].Points[1].AtMS)
	assert.Equal(t, "stop server", r.Events[0].Label)

	png, err := os.ReadFile(filepath.Join(dir, "chart.png"))
	require.NoError(t, err)
	assert.Equal(t, []byte("\x89PNG"), png[:4])
}

func TestWriteBars(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bench.png")
	require.NoError(t, WriteBars(path, Bars{Title: "t", Unit: "req/s", Labels: []string{"a", "b"},
		Groups: []BarGroup{{Name: "x", Values: []float64{1, 2}}, {Name: "y", Values: []float64{3, 4}}}}))
	info, err := os.Stat(path)
	require.NoError(t, err)
	assert.Positive(t, info.Size())
}
