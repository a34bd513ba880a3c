#!/usr/bin/env bash
# Entrypoint of the offline postgres stand-in (see tools/standins/README.md).
#
# It honours the part of the official postgres image's entrypoint contract that the course's
# compose files rely on, so the same compose file works with either image:
#   - `docker run IMAGE -c k=v` means `postgres -c k=v`; any other command runs as given.
#   - POSTGRES_PASSWORD (required unless POSTGRES_HOST_AUTH_METHOD=trust), POSTGRES_USER
#     (default postgres), POSTGRES_DB (default = user), POSTGRES_INITDB_ARGS; each also as
#     <NAME>_FILE (a file holding the value, for Docker secrets).
#   - When $PGDATA holds no cluster: initdb, `host all all all scram-sha-256` in pg_hba.conf,
#     create POSTGRES_DB, then run /docker-entrypoint-initdb.d/* in name order (*.sql and
#     *.sql.gz through psql as POSTGRES_USER against POSTGRES_DB, *.sh executed if executable
#     else sourced) on a server that listens on no TCP address. Never again afterwards.
#   - Started as root, it fixes ownership of $PGDATA and re-runs itself as the postgres user;
#     postgres then replaces this script (exec), so it is PID 1 and gets the stop signal.
#
# Not copied from the official image (it is our own, smaller script): no nss_wrapper for
# arbitrary --user ids, no POSTGRES_INITDB_WALDIR, no *.sql.xz/*.sql.zst init files.

# No `set -u`: *.sh init scripts are sourced into this shell, as in the official image.
set -Eeo pipefail

# file_env NAME [DEFAULT]: export NAME from $NAME, or from the file named by $NAME_FILE.
file_env() {
	local name=$1 file_name="${1}_FILE" default=${2:-}
	if [ -n "${!name:-}" ] && [ -n "${!file_name:-}" ]; then
		echo >&2 "error: both $name and $file_name are set (but are exclusive)"
		exit 1
	fi
	local value=$default
	if [ -n "${!name:-}" ]; then
		value=${!name}
	elif [ -n "${!file_name:-}" ]; then
		value=$(<"${!file_name}")
	fi
	export "$name=$value"
	unset "$file_name"
}

# True when the arguments only ask postgres for help/version/a config value: no init then.
wants_help() {
	local arg
	for arg; do
		case $arg in
			'-?' | --help | --describe-config | -V | --version | -C) return 0 ;;
		esac
	done
	return 1
}

# psql as the superuser over the Unix socket (trust), stopping at the first error.
init_psql() {
	PGHOST='' PGHOSTADDR='' psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc "$@"
}

require_password() {
	if [ -z "$POSTGRES_PASSWORD" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
		cat >&2 <<-'EOM'
			Error: Database is uninitialized and superuser password is not specified.
			       You must specify POSTGRES_PASSWORD to a non-empty value for the
			       superuser. For example, "-e POSTGRES_PASSWORD=password" on "docker run".

			       You may also use "POSTGRES_HOST_AUTH_METHOD=trust" to allow all
			       connections without a password. This is *not* recommended.
		EOM
		exit 1
	fi
}

init_cluster() {
	# "$@" are postgres's arguments (without the word postgres), e.g. -c wal_level=logical.
	require_password
	echo "stand-in: initialising a new cluster in $PGDATA"
	# POSTGRES_INITDB_ARGS is a shell-quoted string, as in the official image: eval splits it.
	# The password reaches initdb through a pipe, never a file or the command line.
	if [ -n "$POSTGRES_PASSWORD" ]; then
		eval 'initdb --username="$POSTGRES_USER" --pwfile=<(printf "%s\n" "$POSTGRES_PASSWORD") '"$POSTGRES_INITDB_ARGS"
	else
		eval 'initdb --username="$POSTGRES_USER" '"$POSTGRES_INITDB_ARGS"
	fi

	# Remote hosts authenticate like the official image: with the method password_encryption
	# names (scram-sha-256 on PostgreSQL 14+), unless POSTGRES_HOST_AUTH_METHOD says otherwise.
	if [ -z "$POSTGRES_HOST_AUTH_METHOD" ]; then
		POSTGRES_HOST_AUTH_METHOD=$(postgres -C password_encryption "$@")
	fi
	printf '\nhost all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >>"$PGDATA/pg_hba.conf"

	# A temporary server on the Unix socket only: nothing outside sees a half-initialised
	# database. It gets the same -c arguments as the real server.
	PGUSER=$POSTGRES_USER pg_ctl -D "$PGDATA" -w -t 60 \
		-o "$(printf '%q ' "$@" -c listen_addresses= -p "${PGPORT:-5432}")" start

	if [ "$POSTGRES_DB" != postgres ]; then
		local exists
		exists=$(init_psql --dbname postgres --set db="$POSTGRES_DB" --tuples-only --no-align <<-'EOSQL'
			SELECT 1 FROM pg_database WHERE datname = :'db';
		EOSQL
		)
		if [ -z "$exists" ]; then
			init_psql --dbname postgres --set db="$POSTGRES_DB" <<-'EOSQL'
				CREATE DATABASE :"db";
			EOSQL
		fi
	fi

	# Init scripts see the same variables as in the official image.
	export PGPASSWORD="${PGPASSWORD:-$POSTGRES_PASSWORD}"
	local f
	for f in /docker-entrypoint-initdb.d/*; do
		[ -e "$f" ] || continue
		case $f in
			*.sh)
				if [ -x "$f" ]; then
					echo "stand-in: running $f"
					"$f"
				else
					echo "stand-in: sourcing $f"
					# shellcheck disable=SC1090
					. "$f"
				fi
				;;
			*.sql)
				echo "stand-in: running $f"
				init_psql --dbname "$POSTGRES_DB" -f "$f"
				;;
			*.sql.gz)
				echo "stand-in: running $f"
				gunzip -c "$f" | init_psql --dbname "$POSTGRES_DB"
				;;
			*) echo "stand-in: ignoring $f (only *.sh, *.sql, *.sql.gz run)" ;;
		esac
	done
	unset PGPASSWORD

	pg_ctl -D "$PGDATA" -m fast -w -t 60 stop
	echo "stand-in: PostgreSQL init process complete; ready for start up."
}

main() {
	if [ "${1:0:1}" = '-' ]; then
		set -- postgres "$@"
	fi
	if [ "$1" != postgres ] || wants_help "$@"; then
		exec "$@"
	fi

	file_env POSTGRES_PASSWORD
	file_env POSTGRES_USER postgres
	file_env POSTGRES_DB "$POSTGRES_USER"
	file_env POSTGRES_INITDB_ARGS
	: "${POSTGRES_HOST_AUTH_METHOD:=}"

	if [ "$(id -u)" = 0 ]; then
		# A freshly mounted volume or host folder belongs to root: hand it to postgres, then
		# run this script again as postgres (setpriv is in util-linux; Debian has no gosu).
		mkdir -p "$PGDATA" /var/run/postgresql
		chmod 00700 "$PGDATA" || :
		chmod 03775 /var/run/postgresql || :
		find "$PGDATA" /var/run/postgresql \! -user postgres -exec chown postgres:postgres '{}' +
		HOME=/var/lib/postgresql exec setpriv --reuid=postgres --regid=postgres --init-groups \
			"${BASH_SOURCE[0]}" "$@"
	fi

	if [ -s "$PGDATA/PG_VERSION" ]; then
		echo "stand-in: PostgreSQL Database directory appears to contain a database; Skipping initialization"
	else
		init_cluster "${@:2}"
	fi
	exec "$@"
}

main "$@"
