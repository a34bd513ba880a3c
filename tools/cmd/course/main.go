// Command course is the course's own tool. Learners reach it through make:
//
//	course check N   prove stage N's concept on its running stack (exit 0 pass, 1 fail, 2 inconclusive)
//	course bench N   measure stage N's numbers side by side
//	course dns NAME  what Docker's embedded DNS answers for a service name
//	course cache on|off  switch the stage-05 servers' cache at run time, on every replica
//	course e2e       for every finished stage: up, check, negative control, down (make test)
//	course readmes   rewrite the check-steps list in each stage folder's README.md
//	course curl N PATH  GET PATH from stage N's target (its virtual IP from stage 06 on)
//
// check and bench run in a container on the stage's network (see the Makefile), so they
// reach services by name and work the same on Docker Desktop, where container addresses
// are not reachable from the host. e2e runs on the host and drives make.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
)

const usage = `usage: course check N | bench N | dns NAME | cache on|off | e2e | readmes
  check N   prove stage N's concept on its running stack
  bench N   measure stage N's numbers
  dns NAME  show what Docker's embedded DNS answers for a service name
  cache on|off  switch the servers' cache on every replica (stage 05 on)
  e2e       run every finished stage end to end (up, check, negative control, down)
  readmes   rewrite the check-steps list in each stage folder's README.md
  curl N PATH  GET PATH from stage N's target, from inside its network
environment: COURSE_ROOT (repository), COURSE_PROJECT (Compose project under test),
COURSE_REPORT (report folder, relative to the repository)`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:]))
}

func run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, usage)
		return 2
	}
	stageArg := func() (int, bool) {
		if len(args) != 2 {
			return 0, false
		}
		n, err := strconv.Atoi(args[1])
		return n, err == nil
	}
	switch args[0] {
	case "check", "bench":
		n, ok := stageArg()
		if !ok {
			fmt.Fprintln(os.Stderr, usage)
			return 2
		}
		if args[0] == "check" {
			return checkCmd(ctx, n)
		}
		return benchCmd(ctx, n)
	case "dns":
		if len(args) != 2 {
			fmt.Fprintln(os.Stderr, usage)
			return 2
		}
		return dnsCmd(ctx, args[1])
	case "cache":
		if len(args) != 2 {
			fmt.Fprintln(os.Stderr, usage)
			return 2
		}
		return cacheCmd(ctx, os.Getenv("COURSE_PROJECT"), args[1])
	case "e2e":
		return e2eCmd(ctx)
	case "readmes":
		return readmesCmd()
	case "curl":
		n, err := strconv.Atoi(args[min(1, len(args)-1)])
		if len(args) != 3 || err != nil {
			fmt.Fprintln(os.Stderr, usage)
			return 2
		}
		return curlCmd(ctx, n, args[2])
	default:
		fmt.Fprintln(os.Stderr, usage)
		return 2
	}
}
