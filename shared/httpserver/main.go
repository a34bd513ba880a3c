package httpserver

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/caarlos0/env/v11"
)

// Logger is the JSON logger every course binary writes to stdout, tagged with its
// component, at the level LOG_LEVEL names (debug, info, warn, error; default info).
func Logger(component string) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(os.Getenv("LOG_LEVEL"))); err != nil {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{Level: level})).With("component", component)
}

// LoadConfig fills a struct tagged for caarlos0/env from the environment.
func LoadConfig[T any]() (T, error) {
	cfg, err := env.ParseAs[T]()
	if err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	return cfg, nil
}

// MustConfig is LoadConfig for a main: a bad configuration is logged and the process
// exits with status 2, before it serves anything.
func MustConfig[T any](log *slog.Logger) T {
	cfg, err := LoadConfig[T]()
	if err != nil {
		log.Error("bad configuration", "err", err)
		os.Exit(2)
	}
	return cfg
}
