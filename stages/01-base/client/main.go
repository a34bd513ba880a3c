// Command client sends requests to the server on a timer and logs each outcome.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/sysdesign-course/course/shared/httpserver"
	"github.com/sysdesign-course/course/shared/pacedclient"
)

func main() {
	log := httpserver.Logger("client")
	cfg := httpserver.MustConfig[pacedclient.Config](log)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := pacedclient.Run(ctx, cfg, log); err != nil {
		log.Error("client stopped", "err", err)
		os.Exit(2)
	}
}
