// Command server is stage 07's server: stage 05's users service, plus the prime checks
// moved off the server onto workers over RabbitMQ. GET /is-prime/:n is a request/reply
// call with a deadline; POST /jobs queues a job whose state lives in Postgres. While the
// broker is down both answer 503 at once, and everything else keeps working: the broker
// is not a readiness dependency, and the connection comes back by itself.
package main

import (
	"context"
	"fmt"
	"os"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/sysdesign-course/course/shared/httpserver"
	"github.com/sysdesign-course/course/shared/jobs"
	"github.com/sysdesign-course/course/shared/mq"
	"github.com/sysdesign-course/course/shared/prime"
	"github.com/sysdesign-course/course/shared/probe"
	"github.com/sysdesign-course/course/shared/users"
)

type config struct {
	HTTP  httpserver.Config
	Users users.ServiceConfig
	MQ    mq.Config
	Jobs  jobs.QueueConfig
	RPC   prime.RPCConfig
	// PrimeMode: queue sends prime checks to the workers; local computes them in the
	// server, as stage 04 did (the bench's comparison).
	PrimeMode string `env:"PRIME_MODE" envDefault:"queue"`
}

// link is what one broker connection gives the handlers: a confirm-mode channel for jobs
// and one for request/reply calls.
type link struct {
	jobs *mq.Publisher
	rpc  *mq.RPC
}

func main() {
	probe.IfRequested("http://127.0.0.1:8080/healthz")
	log := httpserver.Logger("server")
	cfg := httpserver.MustConfig[config](log)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := httpserver.New(cfg.HTTP, log)
	svc, err := users.Mount(ctx, cfg.Users, srv, log)
	if err != nil {
		log.Error("starting", "err", err)
		os.Exit(1)
	}
	if err := jobs.Migrate(ctx, svc.Pool, cfg.Users.MigrateWait, log); err != nil {
		log.Error("jobs schema", "err", err)
		os.Exit(1)
	}

	broker := mq.Start(ctx, cfg.MQ, "server "+srv.Instance(), log, func(ctx context.Context, conn *amqp.Connection) (link, error) {
		return connect(conn, cfg)
	})
	switch cfg.PrimeMode {
	case "queue":
		prime.RegisterRPC(srv.Echo, func() (prime.Caller, error) {
			l, err := broker.Link()
			return l.rpc, err
		}, cfg.RPC)
	case "local":
		log.Warn("PRIME_MODE=local: this server computes prime checks itself, as in stage 04")
		prime.Register(srv.Echo)
	default:
		log.Error("bad configuration", "err", "PRIME_MODE must be queue or local, got "+cfg.PrimeMode)
		os.Exit(2)
	}
	jobs.Register(srv.Echo, jobs.NewStore(svc.Pool), func() (jobs.Publisher, error) {
		l, err := broker.Link()
		return l.jobs, err
	}, cfg.Users.DB.QueryTimeout+cfg.MQ.ConfirmTimeout, log)
	if err := mq.RegisterMetrics(srv.Registry, broker); err != nil {
		log.Error("metrics", "err", err)
		os.Exit(2)
	}

	err = srv.Run(ctx)
	cancel()
	broker.Close()
	svc.Close()
	if err != nil {
		log.Error("server stopped", "err", err)
		os.Exit(1)
	}
}

// connect declares the queues and opens the two channels on a new connection.
func connect(conn *amqp.Connection, cfg config) (link, error) {
	ch, err := conn.Channel()
	if err != nil {
		return link{}, err
	}
	if err := jobs.Declare(ch, cfg.Jobs); err != nil {
		return link{}, err
	}
	if err := prime.Declare(ch, cfg.RPC); err != nil {
		return link{}, fmt.Errorf("declare %s: %w", prime.Queue, err)
	}
	pub, err := mq.NewPublisher(ch, cfg.MQ.ConfirmTimeout)
	if err != nil {
		return link{}, err
	}
	rch, err := conn.Channel()
	if err != nil {
		return link{}, err
	}
	rpc, err := mq.NewRPC(rch, cfg.MQ.ConfirmTimeout)
	if err != nil {
		return link{}, err
	}
	return link{jobs: pub, rpc: rpc}, nil
}
