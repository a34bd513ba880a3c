package pgdb

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// queries counts every statement this process sends to Postgres: the figure a cache is
// meant to bring down.
var queries = prometheus.NewCounter(prometheus.CounterOpts{
	Name: "db_queries_total", Help: "Statements sent to Postgres by this process."})

// queryCounter is the pool's pgx tracer: it counts queries as they start.
type queryCounter struct{}

func (queryCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	queries.Inc()
	return ctx
}

func (queryCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// poolCollector exports pgxpool.Stat at every scrape, so /metrics shows how busy the pool
// is and how often a request had to wait for a connection.
type poolCollector struct {
	pool                                              *pgxpool.Pool
	acquired, idle, total, max                        *prometheus.Desc
	acquires, emptyAcquires, acquireSeconds, newConns *prometheus.Desc
}

// RegisterMetrics adds db_queries_total and the pool's statistics (db_pool_*) to reg.
func RegisterMetrics(reg prometheus.Registerer, pool *pgxpool.Pool) error {
	if err := reg.Register(queries); err != nil {
		return err
	}
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc("db_pool_"+name, help, nil, nil) }
	return reg.Register(&poolCollector{
		pool:           pool,
		acquired:       d("acquired_conns", "Connections in use by a request now."),
		idle:           d("idle_conns", "Open connections waiting for a request."),
		total:          d("total_conns", "Open connections, in use or idle."),
		max:            d("max_conns", "The pool's size limit."),
		acquires:       d("acquires_total", "Connections handed to requests."),
		emptyAcquires:  d("empty_acquires_total", "Acquires that had to wait or dial because no idle connection was ready."),
		acquireSeconds: d("acquire_seconds_total", "Time requests spent waiting for a connection."),
		newConns:       d("new_conns_total", "Connections dialled."),
	})
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.acquired, c.idle, c.total, c.max, c.acquires, c.emptyAcquires, c.acquireSeconds, c.newConns} {
		ch <- d
	}
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.pool.Stat()
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	gauge(c.acquired, float64(s.AcquiredConns()))
	gauge(c.idle, float64(s.IdleConns()))
	gauge(c.total, float64(s.TotalConns()))
	gauge(c.max, float64(s.MaxConns()))
	counter(c.acquires, float64(s.AcquireCount()))
	counter(c.emptyAcquires, float64(s.EmptyAcquireCount()))
	counter(c.acquireSeconds, s.AcquireDuration().Seconds())
	counter(c.newConns, float64(s.NewConnsCount()))
}
