-- Deterministic dummy data, generated here rather than committed as a dump:
--   user i (1..10000) is "user" || lpad(i, 5, '0'), with email <username>@example.com;
--   user u has (u % 19) + 1 messages (1 to 19, about 10 on average): 99,967 in all.
-- The checks rely on these rules; docs/02-db.md states them.

-- +goose Up
-- The servers' connections carry a 2 s statement_timeout (DB_QUERY_TIMEOUT); generating
-- 100,000 rows can take longer on a busy laptop. LOCAL: for this migration's transaction only.
SET LOCAL statement_timeout = 0;

INSERT INTO users (id, username, email, created_at)
SELECT i,
       'user' || lpad(i::text, 5, '0'),
       'user' || lpad(i::text, 5, '0') || '@example.com',
       timestamptz '2024-01-01 00:00:00+00' + i * interval '17 minutes'
FROM generate_series(1, 10000) AS i;

-- Explicit ids above leave the identity behind; new users must start after them.
SELECT setval(pg_get_serial_sequence('users', 'id'), 10000);

INSERT INTO messages (user_id, body, created_at)
SELECT u,
       format('message %s of %s', k, 'user' || lpad(u::text, 5, '0')),
       timestamptz '2024-01-01 00:00:00+00' + u * interval '17 minutes' + k * interval '1 hour'
FROM generate_series(1, 10000) AS u
CROSS JOIN LATERAL generate_series(1, (u % 19) + 1) AS k
ORDER BY u, k;

ANALYZE users;
ANALYZE messages;

-- +goose Down
TRUNCATE messages, users;
