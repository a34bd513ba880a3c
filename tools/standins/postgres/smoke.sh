# shellcheck shell=bash
# Smoke test of the postgres stand-in: sourced by `tools/standins/standins.sh --smoke`, which sets
# IMAGE and SMOKE_TMP and provides the helpers (smoke_run, smoke_client, wait_until, ...).
# It checks the official image's contract the course's compose files rely on.

cat >"$SMOKE_TMP/01-schema.sql" <<'SQL'
CREATE TABLE smoke (id int PRIMARY KEY, note text NOT NULL);
INSERT INTO smoke VALUES (1, 'from 01-schema.sql');
SQL
cat >"$SMOKE_TMP/02-more.sh" <<'SH'
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
	-c "INSERT INTO smoke VALUES (2, 'from 02-more.sh')"
SH
chmod 0644 "$SMOKE_TMP"/*

# 1. User, password, database, init scripts; a fresh (empty) volume at PGDATA.
smoke_run pg -e POSTGRES_USER=course -e POSTGRES_PASSWORD=smoke-pw -e POSTGRES_DB=shop \
	-v "$SMOKE_TMP/01-schema.sql:/docker-entrypoint-initdb.d/01-schema.sql:ro" \
	-v "$SMOKE_TMP/02-more.sh:/docker-entrypoint-initdb.d/02-more.sh:ro" "$IMAGE"
wait_until 90 "pg: pg_isready over TCP after first init" \
	smoke_exec pg pg_isready -q -h 127.0.0.1 -U course -d shop

q() { smoke_client -e PGPASSWORD="$1" "$IMAGE" psql -h "$2" -U "$3" -d "$4" -XtAc "$5"; }
expect_eq "init scripts ran (.sql, then .sh); read from another container with the password" \
	$'from 01-schema.sql\nfrom 02-more.sh' "$(q smoke-pw pg course shop 'SELECT note FROM smoke ORDER BY id')"
if q wrong pg course shop 'SELECT 1' >/dev/null 2>&1; then
	smoke_fail "a wrong password was accepted"
fi
smoke_ok "a wrong password is refused (host all all all scram-sha-256)"
expect_eq "database encoding and collation as in the official image" "UTF8 en_US.utf8" \
	"$(q smoke-pw pg course shop "SELECT pg_encoding_to_char(encoding) || ' ' || datcollate FROM pg_database WHERE datname = 'shop'")"
expect_eq "postgres is PID 1 and runs as the postgres user" "postgres postgres" "$(pid1 pg)"
stop_within pg 10

# 2. Restart on the same data: no second initialisation, data kept.
timeout 60 docker start "$(ctr pg)" >/dev/null
wait_until 60 "pg: ready again after restart" smoke_exec pg pg_isready -q -h 127.0.0.1 -U course -d shop
expect_eq "restart keeps the data and does not rerun init scripts" 2 \
	"$(q smoke-pw pg course shop 'SELECT count(*) FROM smoke')"
# (Logs read into a variable first: `docker logs | grep -q` fails under pipefail when
# grep stops reading early.)
logs=$(timeout 30 docker logs "$(ctr pg)" 2>&1)
grep -q 'Skipping initialization' <<<"$logs" ||
	smoke_fail "restart log does not say 'Skipping initialization'"
smoke_ok "restart log says 'Skipping initialization'"

# 3. `postgres -c key=value` passes through; defaults user postgres, database postgres.
smoke_run pg2 -e POSTGRES_PASSWORD=smoke-pw2 "$IMAGE" \
	postgres -c max_connections=50 -c wal_level=logical
wait_until 90 "pg2: ready (postgres -c max_connections=50 -c wal_level=logical)" \
	smoke_exec pg2 pg_isready -q -h 127.0.0.1 -U postgres
expect_eq "-c arguments reach the server" "50 logical" \
	"$(q smoke-pw2 pg2 postgres postgres "SELECT current_setting('max_connections') || ' ' || current_setting('wal_level')")"
stop_within pg2 10

# 4. Without POSTGRES_PASSWORD an uninitialised container refuses to start, like the official.
if out=$(smoke_client "$IMAGE" 2>&1); then
	smoke_fail "started without POSTGRES_PASSWORD"
fi
grep -q 'POSTGRES_PASSWORD' <<<"$out" || smoke_fail "no hint about POSTGRES_PASSWORD: $out"
smoke_ok "no POSTGRES_PASSWORD: exits non-zero and says why"
