-- Jobs submitted with POST /jobs (stage 07): the row is the job's state, the queue only
-- carries the work. A worker moves a row from pending to done once; a dead-lettered
-- message moves it to failed. Versions live in goose_jobs_version (pgdb.MigrateTable).

-- +goose Up
CREATE TABLE jobs (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    -- NULL only for a dead-lettered message that was never a valid job (its body could
    -- not be decoded), recorded so that every message that reached the queue has a row.
    n           bigint      CHECK (n >= 0),
    state       text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'failed')),
    prime       boolean,
    reason      text,
    -- deliveries counts the times a worker received the job's message (redeliveries after
    -- a worker died included); completions the times a result was stored: at most 1,
    -- whatever the deliveries, because only a pending job can be completed.
    deliveries  integer     NOT NULL DEFAULT 0,
    completions integer     NOT NULL DEFAULT 0 CHECK (completions <= 1),
    worker      text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    CHECK ((state = 'done') = (prime IS NOT NULL))
);

-- +goose Down
DROP TABLE jobs;
