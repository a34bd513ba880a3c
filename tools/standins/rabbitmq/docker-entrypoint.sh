#!/usr/bin/env bash
# Entrypoint of the offline rabbitmq stand-in (see tools/standins/README.md).
#
# Mirrors the official rabbitmq image's entrypoint: a `rabbitmq*` command started as root
# hands /var/lib/rabbitmq to the rabbitmq user and re-runs itself as rabbitmq (setpriv from
# util-linux; Debian has no gosu), then replaces itself (exec), so the server is PID 1 and
# gets SIGTERM from `docker stop`. Started with --user rabbitmq, it just runs the command.
set -euo pipefail

if [[ "$1" == rabbitmq* ]] && [ "$(id -u)" = 0 ]; then
	if [ "$1" = rabbitmq-server ]; then
		find /var/lib/rabbitmq \! -user rabbitmq -exec chown rabbitmq '{}' +
	fi
	exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups "${BASH_SOURCE[0]}" "$@"
fi

exec "$@"
