package stage07

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/sysdesign-course/course/tools/internal/bench"
	"github.com/sysdesign-course/course/tools/internal/check"
	"github.com/sysdesign-course/course/tools/internal/fault"
)

// Live is the Stack of a running stage-07 project: Docker for the containers, each
// process's metrics for its broker connection, RabbitMQ's Prometheus endpoint for queue
// depths, and AMQP (with the credentials the broker was started with) for raw messages.
type Live struct {
	*fault.Docker
	Broker string // the broker's service and host name
	Client *http.Client
}

// Connections reads amqp_connected and amqp_connections_total from each replica's admin
// listener.
func (l Live) Connections(ctx context.Context, service string) (map[string]Conn, error) {
	hosts, err := l.Replicas(ctx, service)
	if err != nil {
		return nil, err
	}
	out := map[string]Conn{}
	for _, h := range hosts {
		m, err := bench.Scrape(ctx, l.Client, check.AdminURL(h)+"/metrics")
		if err != nil {
			return nil, err
		}
		out[h] = Conn{Up: m["amqp_connected"] == 1, Connections: m["amqp_connections_total"]}
	}
	return out, nil
}

// Depth reads the queue's ready and unacknowledged messages from rabbitmq_prometheus.
func (l Live) Depth(ctx context.Context, queue string) (int, int, error) {
	m, err := bench.Scrape(ctx, l.Client, "http://"+l.Broker+":15692/metrics/detailed?vhost=/&family=queue_coarse_metrics")
	if err != nil {
		return 0, 0, err
	}
	q := fmt.Sprintf(`queue=%q`, queue)
	return int(bench.Sum(m, "rabbitmq_detailed_queue_messages_ready", q)), int(bench.Sum(m, "rabbitmq_detailed_queue_messages_unacked", q)), nil
}

// PublishRaw publishes body as message id on queue through the default exchange, and waits
// for the broker's confirm.
func (l Live) PublishRaw(ctx context.Context, queue, id string, body []byte) error {
	env, err := l.Env(ctx, l.Broker)
	if err != nil {
		return err
	}
	u := url.URL{Scheme: "amqp", User: url.UserPassword(env["RABBITMQ_DEFAULT_USER"], env["RABBITMQ_DEFAULT_PASS"]), Host: l.Broker + ":5672", Path: "/"}
	conn, err := amqp.DialConfig(u.String(), amqp.Config{Dial: amqp.DefaultDial(5 * time.Second), Properties: amqp.Table{"connection_name": "course check"}})
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := ch.Confirm(false); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conf, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, false, false, amqp.Publishing{
		MessageId: id, DeliveryMode: amqp.Persistent, ContentType: "application/json", Body: body})
	if err != nil {
		return err
	}
	if ok, err := conf.WaitContext(ctx); err != nil || !ok {
		return fmt.Errorf("the broker did not confirm the message (%v)", err)
	}
	return nil
}
