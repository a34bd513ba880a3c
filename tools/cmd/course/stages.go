package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/sysdesign-course/course/tools/internal/check"
	"github.com/sysdesign-course/course/tools/internal/course"
	"github.com/sysdesign-course/course/tools/internal/fault"
	"github.com/sysdesign-course/course/tools/internal/load"
	"github.com/sysdesign-course/course/tools/internal/report"
	"github.com/sysdesign-course/course/tools/internal/stage01"
	"github.com/sysdesign-course/course/tools/internal/stage02"
	"github.com/sysdesign-course/course/tools/internal/stage03"
	"github.com/sysdesign-course/course/tools/internal/stage04"
	"github.com/sysdesign-course/course/tools/internal/stage05"
	"github.com/sysdesign-course/course/tools/internal/stage06"
	"github.com/sysdesign-course/course/tools/internal/stage07"
)

// benchFunc measures a stage; it may use the Docker API (for limits or faults).
type benchFunc func(ctx context.Context, st course.Stage, d *fault.Docker) (report.Table, []report.Bars, error)

// stage is what the tool knows how to run for one stage; course.toml says the rest.
type stage struct {
	steps func(d *fault.Docker) ([]check.Step, tabulate)
	bench benchFunc
}

// tabulate summarises a check's measurements once its steps ran (nil: nothing to add).
type tabulate func() report.Table

func fixed(steps []check.Step) func(*fault.Docker) ([]check.Step, tabulate) {
	return func(*fault.Docker) ([]check.Step, tabulate) { return steps, nil }
}

var stages = map[int]stage{
	1: {
		steps: fixed(stage01.Steps(stage01.Defaults)),
		bench: func(ctx context.Context, st course.Stage, d *fault.Docker) (report.Table, []report.Bars, error) {
			cpus, err := d.CPULimit(ctx, "server")
			if err != nil {
				return report.Table{}, nil, err
			}
			return stage01.Bench(ctx, stage01.BenchDefaults, st.Target, "http://nethttp:8080", cpus)
		},
	},
	2: {
		steps: fixed(stage02.Steps(stage02.Defaults)),
		bench: func(ctx context.Context, st course.Stage, _ *fault.Docker) (report.Table, []report.Bars, error) {
			return stage02.Bench(ctx, stage02.BenchDefaults, st.Target, stage02.Defaults.Metrics)
		},
	},
	3: {
		steps: func(d *fault.Docker) ([]check.Step, tabulate) { return stage03.Steps(stage03.Defaults, d), nil },
		bench: func(ctx context.Context, st course.Stage, d *fault.Docker) (report.Table, []report.Bars, error) {
			return stage03.Bench(ctx, stage03.BenchDefaults, d, st.Target)
		},
	},
	4: {
		steps: func(d *fault.Docker) ([]check.Step, tabulate) {
			steps, table := stage04.Steps(stage04.Defaults, d)
			return steps, table
		},
		bench: func(ctx context.Context, st course.Stage, d *fault.Docker) (report.Table, []report.Bars, error) {
			return stage04.Bench(ctx, stage04.BenchDefaults, stage04.Defaults, d, st.Target, "http://nginx:8080")
		},
	},
	5: {
		steps: func(d *fault.Docker) ([]check.Step, tabulate) { return stage05.Steps(stage05.Defaults, d), nil },
		bench: func(ctx context.Context, st course.Stage, d *fault.Docker) (report.Table, []report.Bars, error) {
			return stage05.Bench(ctx, stage05.BenchDefaults, d, stage05.Defaults, st.Target)
		},
	},
	6: {
		steps: func(d *fault.Docker) ([]check.Step, tabulate) { return stage06.Steps(stage06.Defaults, d), nil },
		bench: func(ctx context.Context, st course.Stage, d *fault.Docker) (report.Table, []report.Bars, error) {
			return stage06.Bench(ctx, stage06.BenchDefaults, stage06.Defaults, d, st.Target, "http://nginx:8080")
		},
	},
	7: {
		steps: func(d *fault.Docker) ([]check.Step, tabulate) {
			return stage07.Steps(stage07.Defaults, live07(d)), nil
		},
		bench: func(ctx context.Context, st course.Stage, d *fault.Docker) (report.Table, []report.Bars, error) {
			return stage07.Bench(ctx, stage07.BenchDefaults, stage07.Defaults, live07(d), st.Target, "http://server-local:8080")
		},
	},
}

// session is what check and bench share: the stage, its project, the run's timeline and
// report folder.
type session struct {
	root      string
	stage     course.Stage
	impl      stage
	project   string
	timeline  *report.Timeline
	faults    *fault.Docker
	reportDir string
}

// stageOf finds the repository and stage n in its course.toml.
func stageOf(n int) (root string, st course.Stage, err error) {
	if root, err = course.Root(); err != nil {
		return "", st, err
	}
	c, err := course.Load(root)
	if err != nil {
		return "", st, err
	}
	st, err = c.Stage(n)
	return root, st, err
}

func open(kind string, n int) (*session, error) {
	root, st, err := stageOf(n)
	if err != nil {
		return nil, err
	}
	impl, ok := stages[n]
	if !ok {
		return nil, fmt.Errorf("stage %d (%s) has no check yet", n, st.Slug)
	}
	s := &session{root: root, stage: st, impl: impl, project: st.Project(), timeline: report.NewTimeline(250 * time.Millisecond)}
	if p := os.Getenv("COURSE_PROJECT"); p != "" {
		s.project = p
	}
	s.faults, err = fault.NewDocker(s.project, s.timeline)
	if err != nil {
		return nil, err
	}
	if dir := os.Getenv("COURSE_REPORT"); dir != "" {
		s.reportDir = filepath.Join(root, dir)
		err = os.MkdirAll(s.reportDir, 0o755)
	} else {
		s.reportDir, err = report.Dir(filepath.Join(root, "reports"), st.Slug, kind, time.Now().UTC())
	}
	return s, err
}

// settle is what a settled stack means for this stage (see check.Preflight).
func (s *session) settle() check.Settle {
	st := check.Settled
	st.Stage, st.Replicas, st.Rejoin = s.stage.Number, s.stage.Replicas, s.stage.Rejoin
	return st
}

func (s *session) rel(path string) string {
	if r, err := filepath.Rel(s.root, path); err == nil {
		return r
	}
	return path
}

func checkCmd(ctx context.Context, n int) int {
	s, err := open("check", n)
	if err != nil {
		fmt.Fprintln(os.Stderr, "check:", err)
		return 2
	}
	defer s.faults.Close()
	prefix := fmt.Sprintf("stage-%d", n)
	fmt.Printf("[%s] checking %s (%s) against project %s at %s\n", prefix, s.stage.Slug, s.stage.Title, s.project, s.stage.Target)

	env := &check.Env{Target: s.stage.Target, Faults: s.faults, Stack: s.faults, Timeline: s.timeline, Client: load.NewClient(16, 10*time.Second)}
	monitorCtx, stopMonitor := context.WithCancel(ctx)
	done := monitor(monitorCtx, env)
	start := time.Now()
	steps, summary := s.impl.steps(s.faults)
	results, outcome := check.RunSettled(ctx, prefix, s.faults, s.settle(), steps, env, os.Stdout)
	stopMonitor()
	<-done

	rep := report.Report{Stage: s.stage.Slug, Kind: "check", Target: s.stage.Target, StartedAt: start.UTC(),
		Elapsed: time.Since(start).Seconds(), Outcome: string(outcome), Steps: results}
	if summary != nil {
		t := summary()
		t.Print(os.Stdout)
		rep.Results = t
	}
	if err := report.Write(s.reportDir, rep, s.timeline); err != nil {
		fmt.Fprintln(os.Stderr, "writing the report:", err)
	}
	passed, failed, unsure := 0, 0, 0
	for _, r := range results {
		switch r.Outcome {
		case check.Pass:
			passed++
		case check.Fail:
			failed++
		default:
			unsure++
		}
	}
	fmt.Printf("[%s] %s: %d passed, %d failed, %d inconclusive in %.0fs; report: %s/\n",
		prefix, outcome, passed, failed, unsure, time.Since(start).Seconds(), s.rel(s.reportDir))
	return outcome.ExitCode()
}

// monitor pings the target ten times a second for the chart, so the report shows every
// fault's effect on a steady stream of ordinary requests. Its results are not asserted.
func monitor(ctx context.Context, env *check.Env) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				_, _ = env.Get(rctx, "monitor /ping", "/ping")
				cancel()
			}
		}
	}()
	return done
}

func benchCmd(ctx context.Context, n int) int {
	s, err := open("bench", n)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	defer s.faults.Close()
	if s.impl.bench == nil {
		fmt.Fprintf(os.Stderr, "stage %d has no bench\n", n)
		return 2
	}
	env := &check.Env{Target: s.stage.Target, Timeline: s.timeline, Client: load.NewClient(8, 10*time.Second)}
	prefix := fmt.Sprintf("stage-%d", n)
	if v := check.Preflight(ctx, env, s.faults, s.settle(), os.Stdout, prefix); v.Outcome != check.Pass {
		fmt.Printf("[%s] no bench: %s\n", prefix, v.Seen)
		return 2
	}
	start := time.Now()
	fmt.Printf("benchmarking %s against project %s; this takes about a minute\n", s.stage.Slug, s.project)
	table, bars, err := s.impl.bench(ctx, s.stage, s.faults)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	table.Print(os.Stdout)
	rep := report.Report{Stage: s.stage.Slug, Kind: "bench", Target: s.stage.Target, StartedAt: start.UTC(),
		Elapsed: time.Since(start).Seconds(), Outcome: "measured", Results: table}
	if err := report.Write(s.reportDir, rep, s.timeline); err != nil {
		fmt.Fprintln(os.Stderr, "writing the report:", err)
		return 1
	}
	if err := report.WriteBars(filepath.Join(s.reportDir, "bench.png"), bars...); err != nil {
		fmt.Fprintln(os.Stderr, "drawing the bench chart:", err)
		return 1
	}
	fmt.Printf("report: %s/ (report.json, bench.png)\n", s.rel(s.reportDir))
	return 0
}

func live07(d *fault.Docker) stage07.Live {
	return stage07.Live{Docker: d, Broker: stage07.Defaults.Broker, Client: load.NewClient(4, 5*time.Second)}
}
