// Command nethttp is the bench's baseline: the same /ping answered by the standard library
// alone, so `make stage 1 bench` can show what echo costs on top of net/http.
package main

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/sysdesign-course/course/shared/probe"
)

func main() {
	probe.IfRequested("http://127.0.0.1:8080/ping")
	instance, _ := os.Hostname()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Served-By", instance)
		_ = json.NewEncoder(w).Encode(map[string]string{"message": "pong", "instance": instance})
	})
	srv := &http.Server{Addr: ":8080", Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 60 * time.Second}
	slog.Info("listening", "addr", srv.Addr)
	if err := srv.ListenAndServe(); err != nil {
		slog.Error("server stopped", "err", err)
		os.Exit(1)
	}
}
