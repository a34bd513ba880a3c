package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sysdesign-course/course/tools/internal/check"
	"github.com/sysdesign-course/course/tools/internal/course"
)

// e2eCmd runs every finished stage the way a learner would, through make: up, check (must
// pass), down; then the negative control: the stack course.toml names, the same check (must
// fail, at the step course.toml names), down. A control on the stage's own stack (with
// other env) reuses it rather than starting it afresh. It ends with the plain "N passed, N failed" line.
func e2eCmd(ctx context.Context) int {
	root, err := course.Root()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 2
	}
	c, err := course.Load(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 2
	}
	passed, failed := 0, 0
	record := func(name string, err error) {
		if err != nil {
			failed++
			fmt.Printf("e2e: FAIL %s: %v\n", name, err)
			return
		}
		passed++
		fmt.Printf("e2e: ok   %s\n", name)
	}
	for _, st := range c.Stages {
		if !st.Finished {
			continue
		}
		n := strconv.Itoa(st.Number)
		neg := strconv.Itoa(st.Negative.Stack)
		record("stage "+n+" check passes on its own stack", e2eCheck(ctx, root, st, n, nil, "", check.Pass))
		// A control on the stage's own stack reuses it: `up` with the control's env
		// recreates only the services that env changes.
		if neg != n {
			if err := mk(ctx, root, nil, "stage", n, "down"); err != nil {
				record("stage "+n+" down", err)
			}
		}
		name := fmt.Sprintf("stage %s check fails on %s", n, st.Negative.What)
		record(name, e2eCheck(ctx, root, st, neg, st.Negative.Env, st.Negative.Fails, check.Fail))
		if err := mk(ctx, root, nil, "stage", neg, "down"); err != nil {
			record("stage "+neg+" down", err)
		}
	}
	fmt.Printf("e2e: %d passed, %d failed\n", passed, failed)
	if failed > 0 {
		return 1
	}
	return 0
}

// e2eCheck brings up stage `stack` with env, runs stage st's check against it and compares
// the outcome (and, for a failure, which step failed) with what is expected.
func e2eCheck(ctx context.Context, root string, st course.Stage, stack string, env map[string]string, mustFail string, want check.Outcome) error {
	extra := []string{}
	for k, v := range env {
		extra = append(extra, k+"="+v)
	}
	if err := mk(ctx, root, extra, "stage", stack, "up"); err != nil {
		return fmt.Errorf("make stage %s up: %w", stack, err)
	}
	reportDir := filepath.Join("reports", "e2e", fmt.Sprintf("%s-on-stage-%s-%d", st.Slug, stack, time.Now().Unix()))
	against := []string{"COURSE_REPORT=" + reportDir}
	if stack != strconv.Itoa(st.Number) {
		against = append(against, "AGAINST="+stack)
	}
	// make turns any failing recipe into its own exit status 2, so the check's outcome
	// (pass, fail, inconclusive) is read from the report it wrote.
	err := mk(ctx, root, against, "stage", strconv.Itoa(st.Number), "check")
	if _, isExit := err.(*exec.ExitError); err != nil && !isExit {
		return err
	}
	var rep struct {
		Outcome check.Outcome
		Steps   []check.Result
	}
	b, rerr := os.ReadFile(filepath.Join(root, reportDir, "report.json"))
	if rerr != nil {
		return fmt.Errorf("the check wrote no report (%v); make said: %v", rerr, err)
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		return err
	}
	if rep.Outcome != want || (want == check.Pass) != (err == nil) {
		return fmt.Errorf("the check's outcome is %s (make: %v), want %s; report in %s", rep.Outcome, err, want, reportDir)
	}
	if mustFail == "" {
		return nil
	}
	for _, r := range rep.Steps {
		if r.Step == mustFail && r.Outcome == check.Fail {
			return nil
		}
	}
	return fmt.Errorf("the check failed, but not at step %q as course.toml says it must; see %s", mustFail, reportDir)
}

func mk(ctx context.Context, root string, env []string, args ...string) error {
	fmt.Printf("e2e: $ %smake %s\n", envString(env), strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, "make", append([]string{"--no-print-directory"}, args...)...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = root, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), env...)
	return cmd.Run()
}

func envString(env []string) string {
	s := ""
	for _, e := range env {
		s += e + " "
	}
	return s
}
