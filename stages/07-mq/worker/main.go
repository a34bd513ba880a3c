// Command worker is stage 07's worker: it takes prime checks off RabbitMQ, the request/reply
// ones (GET /is-prime) and the jobs (POST /jobs), and marks dead-lettered jobs failed. It
// acks a job only once its result is in Postgres, and takes one job at a time (prefetch 1):
// the work is CPU-bound, so holding more would only keep it from an idle worker.
package main

import (
	"context"
	"os"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/sysdesign-course/course/shared/httpserver"
	"github.com/sysdesign-course/course/shared/jobs"
	"github.com/sysdesign-course/course/shared/mq"
	"github.com/sysdesign-course/course/shared/pgdb"
	"github.com/sysdesign-course/course/shared/prime"
	"github.com/sysdesign-course/course/shared/probe"
)

type config struct {
	HTTP        httpserver.Config
	DB          pgdb.Config
	MQ          mq.Config
	Jobs        jobs.QueueConfig
	RPC         prime.RPCConfig
	MigrateWait time.Duration `env:"MIGRATE_WAIT" envDefault:"60s"`
	// Prefetch is how many unacked jobs the broker sends one worker at a time.
	Prefetch int `env:"WORKER_PREFETCH" envDefault:"1"`
	// AutoAck=true is the negative control's broken worker (see jobs.Worker.AutoAck).
	AutoAck    bool          `env:"WORKER_AUTO_ACK" envDefault:"false"`
	StoreRetry time.Duration `env:"WORKER_STORE_RETRY" envDefault:"30s"`
}

// The worker's HTTP side serves only its probes and metrics: /readyz (broker and database)
// for the healthcheck, /metrics and pprof on the admin listener.
func main() {
	probe.IfRequested("http://127.0.0.1:8080/readyz")
	log := httpserver.Logger("worker")
	cfg := httpserver.MustConfig[config](log)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := httpserver.New(cfg.HTTP, log)
	pool, err := pgdb.Open(ctx, cfg.DB)
	if err != nil {
		log.Error("database", "err", err)
		os.Exit(1)
	}
	defer pool.Close()
	if err := jobs.Migrate(ctx, pool, cfg.MigrateWait, log); err != nil {
		log.Error("jobs schema", "err", err)
		os.Exit(1)
	}
	w := &jobs.Worker{Ledger: jobs.NewStore(pool), Compute: prime.IsPrime, Name: srv.Instance(),
		AutoAck: cfg.AutoAck, DeliveryLimit: cfg.Jobs.DeliveryLimit, StoreRetry: cfg.StoreRetry, Log: log}
	if cfg.AutoAck {
		log.Warn("WORKER_AUTO_ACK=true: the broker forgets each job as it sends it; a worker that dies loses them")
	}
	var inflight sync.WaitGroup
	broker := mq.Start(ctx, cfg.MQ, "worker "+srv.Instance(), log, func(sctx context.Context, conn *amqp.Connection) (*consumers, error) {
		return consume(ctx, conn, cfg, w, &inflight)
	})
	srv.Ready("broker", broker.Check)
	srv.Ready("postgres", pool.Ping)
	for _, err := range []error{w.Register(srv.Registry), mq.RegisterMetrics(srv.Registry, broker), pgdb.RegisterMetrics(srv.Registry, pool)} {
		if err != nil {
			log.Error("metrics", "err", err)
			os.Exit(2)
		}
	}
	// On SIGTERM: take no new messages, let the ones being handled finish and be acked,
	// then close. A SIGKILL skips this; the broker then redelivers what was unacked.
	srv.OnShutdown(func(context.Context) {
		if c, err := broker.Link(); err == nil {
			c.cancel()
		}
		done := make(chan struct{})
		go func() { inflight.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(cfg.HTTP.ShutdownTimeout):
			log.Warn("shutting down with a job still running: the broker will redeliver it")
		}
	})
	err = srv.Run(ctx)
	cancel()
	broker.Close()
	if err != nil {
		log.Error("worker stopped", "err", err)
		os.Exit(1)
	}
}

// consumers are one connection's three consumers.
type consumers struct {
	channels []*amqp.Channel
}

// cancel stops every consumer: the broker sends nothing more, and requeues nothing yet.
func (c *consumers) cancel() {
	for _, ch := range c.channels {
		_ = ch.Cancel("", false)
	}
}

// consume declares the queues and starts the three consumers on a new connection.
func consume(ctx context.Context, conn *amqp.Connection, cfg config, w *jobs.Worker, inflight *sync.WaitGroup) (*consumers, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, err
	}
	if err := jobs.Declare(ch, cfg.Jobs); err != nil {
		return nil, err
	}
	if err := prime.Declare(ch, cfg.RPC); err != nil {
		return nil, err
	}
	_ = ch.Close()

	c := &consumers{}
	start := func(queue string, prefetch int, autoAck bool, handle func(amqp.Delivery, *amqp.Channel)) error {
		ch, err := conn.Channel()
		if err != nil {
			return err
		}
		if err := ch.Qos(prefetch, 0, false); err != nil {
			return err
		}
		deliveries, err := ch.Consume(queue, "", autoAck, false, false, false, nil)
		if err != nil {
			return err
		}
		c.channels = append(c.channels, ch)
		go func() {
			for d := range deliveries { // ends when the channel or connection closes
				inflight.Add(1)
				handle(d, ch)
				inflight.Done()
			}
		}()
		return nil
	}
	err = start(jobs.Queue, cfg.Prefetch, cfg.AutoAck, func(d amqp.Delivery, _ *amqp.Channel) { w.Handle(ctx, d) })
	if err == nil {
		err = start(prime.Queue, 1, false, func(d amqp.Delivery, ch *amqp.Channel) {
			reply, ok := prime.Answer(d, w.Timed, w.Name, time.Now())
			if ok {
				// No confirm: a lost reply costs its caller a 504, not a wrong answer.
				if err := ch.PublishWithContext(ctx, "", d.ReplyTo, false, false, reply); err != nil {
					w.Log.Warn("sending a reply", "err", err)
				}
			}
			_ = d.Ack(false)
		})
	}
	if err == nil {
		err = start(jobs.DeadQueue, 10, false, func(d amqp.Delivery, _ *amqp.Channel) { w.HandleDead(ctx, d) })
	}
	return c, err
}
