// Package registrar lets a server announce itself to the course's load balancer when it
// is ready, retrying with backoff until the balancer accepts, and leave on shutdown.
package registrar

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Config is read from the environment. An empty BalancerURL turns registration off.
type Config struct {
	BalancerURL string `env:"LB_ADMIN_URL"` // e.g. http://lb:8081
	SelfURL     string `env:"SELF_URL"`     // how the balancer reaches this server; default http://<hostname>:8080
	Weight      int    `env:"WEIGHT" envDefault:"1"`
	// Heartbeat re-registers this often, so a balancer that restarted (and forgot
	// everyone) learns about this server again within one interval.
	Heartbeat time.Duration `env:"REGISTER_HEARTBEAT" envDefault:"5s"`
}

type registration struct {
	URL    string `json:"url"`
	Weight int    `json:"weight"`
}

// Self fills in SelfURL from the hostname, which Docker's DNS resolves to this container.
func (c *Config) Self() string {
	if c.SelfURL == "" {
		host, _ := os.Hostname()
		c.SelfURL = "http://" + host + ":8080"
	}
	return c.SelfURL
}

// Run registers this server (see Register), then re-registers every Heartbeat until ctx
// ends. It returns an error only if it gave up (the balancer refused with a 4xx): ctx
// ending while a registration was still retrying is a shutdown, and returns nil.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	if cfg.BalancerURL == "" {
		return nil
	}
	if err := Register(ctx, cfg, log); err != nil && ctx.Err() == nil {
		return err
	}
	t := time.NewTicker(cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := Register(ctx, cfg, log); err != nil && ctx.Err() == nil {
				return err
			}
		}
	}
}

// Register posts this server to the balancer until it answers 200 or 201, backing off
// exponentially (capped at 2 s) while the balancer is not up yet. It gives up when ctx ends.
func Register(ctx context.Context, cfg Config, log *slog.Logger) error {
	if cfg.BalancerURL == "" {
		return nil
	}
	body, _ := json.Marshal(registration{URL: cfg.Self(), Weight: cfg.Weight})
	op := func() (struct{}, error) {
		return struct{}{}, send(ctx, http.MethodPost, cfg.BalancerURL+"/register", body)
	}
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval = 100*time.Millisecond, 2*time.Second
	_, err := backoff.Retry(ctx, op, backoff.WithBackOff(b), backoff.WithMaxElapsedTime(0),
		backoff.WithNotify(func(err error, next time.Duration) {
			log.Warn("balancer not reachable yet, retrying", "err", err, "in", next)
		}))
	if err == nil {
		log.Debug("registered with the balancer", "balancer", cfg.BalancerURL, "self", cfg.Self(), "weight", cfg.Weight)
	}
	return err
}

// Deregister tells the balancer to stop sending requests here; one try, bounded by ctx.
func Deregister(ctx context.Context, cfg Config, log *slog.Logger) {
	if cfg.BalancerURL == "" {
		return
	}
	body, _ := json.Marshal(registration{URL: cfg.Self()})
	if err := send(ctx, http.MethodDelete, cfg.BalancerURL+"/register", body); err != nil {
		log.Warn("deregistering", "err", err)
		return
	}
	log.Info("deregistered from the balancer")
}

// client bounds each attempt: ctx may be the server's whole life (Run's heartbeats), and a
// balancer that accepts the connection but never answers must not stall registration.
// The balancer answers at once, or within its one-second name lookup (see balancer.Register).
var client = &http.Client{Timeout: 3 * time.Second}

func send(ctx context.Context, method, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return backoff.Permanent(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusCreated:
		return nil
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		return backoff.Permanent(fmt.Errorf("%s %s: HTTP %d", method, url, resp.StatusCode))
	default:
		return fmt.Errorf("%s %s: HTTP %d", method, url, resp.StatusCode)
	}
}
