#!/bin/sh
# Entrypoint of the offline haproxy stand-in (see tools/standins/README.md), as the
# official image's: options alone run haproxy with them, and haproxy runs in master-worker
# mode in the foreground (-W -db), logging to stdout.
set -e
if [ "${1#-}" != "$1" ]; then
	set -- haproxy "$@"
fi
if [ "$1" = haproxy ]; then
	shift
	set -- haproxy -W -db "$@"
fi
exec "$@"
