#!/usr/bin/env bash
# Entrypoint of the offline redis stand-in (see tools/standins/README.md).
#
# Mirrors the official redis image's entrypoint:
#   - `docker run IMAGE --appendonly yes` or `docker run IMAGE /path/redis.conf` means
#     `redis-server ...`; any other command (redis-cli, redis-sentinel, bash) runs as given.
#   - redis-server started as root: /data is handed to the redis user and the server runs
#     as redis (setpriv from util-linux; Debian has no gosu). It replaces this script (exec),
#     so it is PID 1 and gets SIGTERM from `docker stop`.
#   - The official image is compiled with protected mode off, so other containers may
#     connect without a password. Debian's binary defaults to on, so we pass
#     `--protected-mode no` unless the arguments or the given config file set it.
#   - umask 0077 (data files private), as in the official image.
set -eo pipefail

if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
	set -- redis-server "$@"
fi

# True when the arguments, or the config file given as first argument, set protected-mode.
sets_protected_mode() {
	local arg
	for arg in "${@:2}"; do
		[ "$arg" = --protected-mode ] && return 0
	done
	if [ -n "${2:-}" ] && [ "${2#-}" = "$2" ] && [ -r "$2" ]; then
		grep -Eqi '^[[:space:]]*protected-mode[[:space:]]' "$2" && return 0
	fi
	return 1
}

if [ "$1" = redis-server ]; then
	if ! sets_protected_mode "$@"; then
		set -- "$@" --protected-mode no
	fi
	if [ "$(id -u)" = 0 ]; then
		find . \! -user redis -exec chown redis '{}' +
		exec setpriv --reuid=redis --regid=redis --init-groups "${BASH_SOURCE[0]}" "$@"
	fi
fi

if [ "$(umask)" = 0022 ]; then
	umask 0077
fi

exec "$@"
