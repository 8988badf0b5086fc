-- Per-user back-off. A user whose writes fail the same way run after run
-- (a 4xx that only a change of the source row or of the directory can fix)
-- is retried less and less often instead of failing, and filling history,
-- at every run. One row per (job, external_id) while the user is failing;
-- the row goes when an attempt succeeds. A changed source row (another
-- desired_hash) is retried at the next run whatever next_attempt_at says.
--   SELECT external_id, failures, error_code, next_attempt_at
--     FROM entraprov.user_backoff WHERE job = 'nightly' ORDER BY failures DESC;
CREATE TABLE entraprov.user_backoff (
    job             text NOT NULL,
    external_id     text NOT NULL,
    -- Hash of the desired attributes the failing attempts tried to apply.
    desired_hash    text NOT NULL,
    action          text NOT NULL,
    http_status     integer,
    error_code      text,
    message         text,
    request_id      text,
    failures        integer NOT NULL CHECK (failures > 0),
    first_failed_at timestamptz NOT NULL,
    last_failed_at  timestamptz NOT NULL,
    last_run_id     bigint,
    next_attempt_at timestamptz NOT NULL,
    CONSTRAINT user_backoff_pkey PRIMARY KEY (job, external_id)
);

-- The desired attributes an operation tried to apply, hashed, so that "the
-- same failure" can be told from "a new attempt after an HR fix".
ALTER TABLE entraprov.sync_operations ADD COLUMN desired_hash text;

---- create above / drop below ----

ALTER TABLE entraprov.sync_operations DROP COLUMN IF EXISTS desired_hash;
DROP TABLE IF EXISTS entraprov.user_backoff;
