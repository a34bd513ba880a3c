package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/sysdesign-course/course/tools/internal/check"
	"github.com/sysdesign-course/course/tools/internal/fault"
	"github.com/sysdesign-course/course/tools/internal/load"
	"github.com/sysdesign-course/course/tools/internal/stage05"
)

// cacheCmd switches the servers' cache on or off at run time, on every replica of the
// project under test (COURSE_PROJECT), through each replica's own admin endpoint.
func cacheCmd(ctx context.Context, project, state string) int {
	if state != "on" && state != "off" {
		fmt.Fprintln(os.Stderr, "usage: course cache on|off")
		return 2
	}
	d, err := fault.NewDocker(project, nopMarker{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "cache:", err)
		return 1
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	replicas, err := d.Replicas(ctx, stage05.Defaults.Service)
	if err == nil {
		err = stage05.Switch(ctx, load.NewClient(1, 5*time.Second), stage05.Defaults.Admin, replicas, state == "on")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "cache:", err)
		return 1
	}
	fmt.Printf("cache %s on %d replicas (%v); watch cache_requests_total and db_queries_total in each replica's /metrics (admin port %s)\n", state, len(replicas), replicas, check.AdminPort)
	return 0
}

type nopMarker struct{}

func (nopMarker) Mark(string) {}
