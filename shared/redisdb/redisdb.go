// Package redisdb opens the course's Redis client with its timeouts set on purpose: Redis
// is a cache here, so a slow or dead Redis must cost a request a few milliseconds at most,
// after which the caller falls back to the database.
package redisdb

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Config is read from the environment by the stage's main.
type Config struct {
	Addr string `env:"REDIS_ADDR" envDefault:"redis:6379"`
	// A GET answers in well under a millisecond on one network; a Redis that takes longer
	// than these is in trouble, and reading Postgres is the faster way out.
	DialTimeout  time.Duration `env:"REDIS_DIAL_TIMEOUT" envDefault:"200ms"`
	ReadTimeout  time.Duration `env:"REDIS_READ_TIMEOUT" envDefault:"100ms"`
	WriteTimeout time.Duration `env:"REDIS_WRITE_TIMEOUT" envDefault:"100ms"`
	// PoolTimeout is how long a request waits for a free connection when all are busy.
	PoolSize     int           `env:"REDIS_POOL_SIZE" envDefault:"20"`
	MinIdleConns int           `env:"REDIS_MIN_IDLE_CONNS" envDefault:"2"`
	PoolTimeout  time.Duration `env:"REDIS_POOL_TIMEOUT" envDefault:"100ms"`
}

// Open returns a client; it connects lazily, so a server starts even while Redis is down.
func Open(cfg Config) (*redis.Client, error) {
	if cfg.PoolSize < 1 || cfg.DialTimeout <= 0 || cfg.ReadTimeout <= 0 || cfg.WriteTimeout <= 0 || cfg.PoolTimeout <= 0 {
		return nil, fmt.Errorf("redis: pool size and timeouts must be positive (got %+v)", cfg)
	}
	return redis.NewClient(&redis.Options{
		Addr:        cfg.Addr,
		DialTimeout: cfg.DialTimeout,
		// One dial per attempt: go-redis otherwise redials 5 times 100 ms apart, which a
		// request would wait through while Redis is down.
		DialerRetries: 1,
		ReadTimeout:   cfg.ReadTimeout,
		WriteTimeout:  cfg.WriteTimeout,
		// A caller's deadline also bounds its command (a request never waits past its own).
		ContextTimeoutEnabled: true,
		PoolSize:              cfg.PoolSize,
		MinIdleConns:          cfg.MinIdleConns,
		PoolTimeout:           cfg.PoolTimeout,
		// No retries: go-redis retries 3 times by default, tripling the wait on a dead Redis;
		// a cache miss is cheaper than that.
		MaxRetries: -1,
	}), nil
}

// poolCollector exports the client's pool statistics at every scrape.
type poolCollector struct {
	c                                   *redis.Client
	hits, misses, timeouts, total, idle *prometheus.Desc
}

// RegisterMetrics adds the pool's statistics to reg as redis_pool_* series.
func RegisterMetrics(reg prometheus.Registerer, c *redis.Client) error {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("redis_pool_"+name, help, nil, nil)
	}
	return reg.Register(&poolCollector{
		c:        c,
		hits:     d("hits_total", "Commands that found an idle connection in the pool."),
		misses:   d("misses_total", "Commands that had to dial or wait for a connection."),
		timeouts: d("timeouts_total", "Commands that gave up waiting for a connection."),
		total:    d("total_conns", "Open connections."),
		idle:     d("idle_conns", "Idle connections."),
	})
}

func (p *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{p.hits, p.misses, p.timeouts, p.total, p.idle} {
		ch <- d
	}
}

func (p *poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := p.c.PoolStats()
	ch <- prometheus.MustNewConstMetric(p.hits, prometheus.CounterValue, float64(s.Hits))
	ch <- prometheus.MustNewConstMetric(p.misses, prometheus.CounterValue, float64(s.Misses))
	ch <- prometheus.MustNewConstMetric(p.timeouts, prometheus.CounterValue, float64(s.Timeouts))
	ch <- prometheus.MustNewConstMetric(p.total, prometheus.GaugeValue, float64(s.TotalConns))
	ch <- prometheus.MustNewConstMetric(p.idle, prometheus.GaugeValue, float64(s.IdleConns))
}
