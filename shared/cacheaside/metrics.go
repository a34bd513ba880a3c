package cacheaside

import "github.com/prometheus/client_golang/prometheus"

// metrics are the cache_* series, labelled with the cache's name.
type metrics struct {
	requests      *prometheus.CounterVec // by result: hit, negative_hit, miss, redis_error, breaker_open, disabled, pending_delete
	loads         prometheus.Counter
	collapsed     prometheus.Counter
	fills         *prometheus.CounterVec
	invalidations *prometheus.CounterVec
	pending       prometheus.Gauge
	enabled       prometheus.Gauge
	breaker       prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, name string) (*metrics, error) {
	l := prometheus.Labels{"cache": name}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cache_requests_total", ConstLabels: l,
			Help: "Reads by how they were answered: hit, negative_hit (cached not-found), miss, or from the source because of redis_error, breaker_open, disabled or pending_delete."}, []string{"result"}),
		loads: prometheus.NewCounter(prometheus.CounterOpts{Name: "cache_loads_total", ConstLabels: l,
			Help: "Reads of the source of truth (the database) made by the cache, after collapsing."}),
		collapsed: prometheus.NewCounter(prometheus.CounterOpts{Name: "cache_collapsed_total", ConstLabels: l,
			Help: "Misses answered by another request's read of the source instead of their own."}),
		fills: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cache_fills_total", ConstLabels: l,
			Help: "Values written to Redis after a miss: stored, lease_lost (a write or a newer reader came first), no_lease or error."}, []string{"result"}),
		invalidations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cache_invalidations_total", ConstLabels: l,
			Help: "Invalidations after writes: deleted (one key) or generation (every key) at once, deferred (Redis failed), retried (a deferred one done)."}, []string{"result"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "cache_pending_deletes", ConstLabels: l,
			Help: "Invalidations waiting to be retried (deletes, or a generation bump); their keys, or all keys, are read from the source meanwhile."}),
		enabled: prometheus.NewGauge(prometheus.GaugeOpts{Name: "cache_enabled", ConstLabels: l,
			Help: "1 when reads go through the cache, 0 when it is switched off."}),
		breaker: prometheus.NewGauge(prometheus.GaugeOpts{Name: "cache_breaker_state", ConstLabels: l,
			Help: "The Redis circuit breaker: 0 closed, 1 half-open, 2 open (Redis skipped)."}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.loads, m.collapsed, m.fills, m.invalidations, m.pending, m.enabled, m.breaker} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) setEnabled(on bool) {
	if on {
		m.enabled.Set(1)
	} else {
		m.enabled.Set(0)
	}
}
