package report

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Report is what report.json holds; docs/reading-results.md explains every field.
type Report struct {
	Stage     string          `json:"stage"`
	Kind      string          `json:"kind"` // "check" or "bench"
	Target    string          `json:"target"`
	StartedAt time.Time       `json:"started_at"`
	Elapsed   float64         `json:"elapsed_s"`
	Outcome   string          `json:"outcome"`
	Steps     any             `json:"steps,omitempty"`
	Results   any             `json:"results,omitempty"`
	Series    []SeriesSummary `json:"series"`
	Events    []Event         `json:"events"`
}

// Dir makes a fresh folder for one run: ROOT/STAGE/KIND-YYYYMMDD-HHMMSS.
func Dir(root, stage, kind string, at time.Time) (string, error) {
	dir := filepath.Join(root, stage, kind+"-"+at.Format("20060102-150405"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("report folder: %w", err)
	}
	return dir, nil
}

// Write saves report.json into dir, and chart.png when the timeline recorded anything.
func Write(dir string, r Report, tl *Timeline) error {
	r.Series, r.Events = tl.Snapshot()
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	if len(r.Series) == 0 {
		return nil
	}
	title := fmt.Sprintf("stage %s %s: %s", r.Stage, r.Kind, r.Outcome)
	return WriteChart(filepath.Join(dir, "chart.png"), title, r.Series, r.Events)
}
