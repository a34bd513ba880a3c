package mq

import "github.com/prometheus/client_golang/prometheus"

// Status is what the metrics read from a session.
type Status interface {
	Up() bool
	Connections() int
}

// RegisterMetrics exports amqp_connected (1 while connected) and amqp_connections (how
// many times the process has connected: more than 1 means it reconnected).
func RegisterMetrics(reg prometheus.Registerer, s Status) error {
	up := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "amqp_connected", Help: "1 while the connection to the broker is up."}, func() float64 {
		if s.Up() {
			return 1
		}
		return 0
	})
	conns := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "amqp_connections_total", Help: "Connections established to the broker since start."}, func() float64 {
		return float64(s.Connections())
	})
	for _, c := range []prometheus.Collector{up, conns} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
