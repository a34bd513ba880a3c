# shellcheck shell=bash
# Smoke test of the rabbitmq stand-in: sourced by `tools/standins/standins.sh --smoke`, which
# sets IMAGE and SMOKE_TMP and provides the helpers (smoke_run, smoke_client, wait_until, ...).

# As stage 07 runs it: a fixed hostname, the image's own user, credentials from the environment.
smoke_run rabbitmq --hostname rabbitmq --user rabbitmq -e RABBITMQ_DEFAULT_USER=smoke -e RABBITMQ_DEFAULT_PASS=smoke-pass "$IMAGE"
wait_until 60 "rabbitmq: the AMQP port accepts connections" smoke_exec rabbitmq bash -c 'exec 3<>/dev/tcp/127.0.0.1/5672'

expect_eq "the node is named after the fixed hostname" "rabbit@rabbitmq" "$(smoke_exec rabbitmq rabbitmqctl -q eval 'node().')"
expect_eq "RABBITMQ_DEFAULT_USER is the only user (no guest)" "smoke	[administrator]" "$(smoke_exec rabbitmq rabbitmqctl -q list_users | tail -n +2)"
expect_eq "management and Prometheus plugins are enabled" "rabbitmq_management rabbitmq_prometheus" \
	"$(smoke_exec rabbitmq rabbitmq-plugins -q list -E -m | grep -E '^rabbitmq_(management|prometheus)$' | sort | paste -sd ' ')"
expect_eq "the management API answers another container with those credentials" 200 \
	"$(smoke_client "$IMAGE" curl -s -o /dev/null -w '%{http_code}' -u smoke:smoke-pass http://rabbitmq:15672/api/overview)"
expect_eq "Prometheus metrics on 15692" 200 \
	"$(smoke_client "$IMAGE" curl -s -o /dev/null -w '%{http_code}' http://rabbitmq:15692/metrics)"
expect_eq "the server runs as the rabbitmq user" rabbitmq "$(smoke_exec rabbitmq stat -c %U /proc/1)"
stop_within rabbitmq 20
