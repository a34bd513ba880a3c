# shellcheck shell=bash
# Smoke test of the redis stand-in: sourced by `tools/standins/standins.sh --smoke`, which sets
# IMAGE and SMOKE_TMP and provides the helpers (smoke_run, smoke_client, wait_until, ...).

smoke_run redis "$IMAGE" redis-server --appendonly yes
wait_until 30 "redis: redis-cli PING inside the container" smoke_exec redis redis-cli ping

cli() { smoke_client "$IMAGE" redis-cli -h redis "$@"; }
expect_eq "PING from another container (protected mode off, as in the official image)" PONG "$(cli PING)"
expect_eq "SET from another container" OK "$(cli SET course:smoke hello)"
expect_eq "GET from another container" hello "$(cli GET course:smoke)"
expect_eq "redis-server arguments pass through (--appendonly yes)" $'appendonly\nyes' "$(cli CONFIG GET appendonly)"
expect_eq "data directory is /data" $'dir\n/data' "$(cli CONFIG GET dir)"
expect_eq "redis-server is PID 1 and runs as the redis user" "redis redis-server" "$(pid1 redis)"
stop_within redis 10
