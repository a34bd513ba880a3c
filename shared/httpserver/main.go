package httpserver

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/caarlos0/env/v11"
)

// Logger is the JSON logger every course binary writes to stdout, tagged with its component.
func Logger(component string) *slog.Logger {
	return slog.New(slog.NewJSONHandler(os.Stdout, nil)).With("component", component)
}

// LoadConfig fills a struct tagged for caarlos0/env from the environment.
func LoadConfig[T any]() (T, error) {
	cfg, err := env.ParseAs[T]()
	if err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	return cfg, nil
}
