-- entraprov schema: desired users (default source), links and directory
-- mirror per job, job state, and the run history operators query.
--
-- Schema entraprov itself is created by the worker before tern's version
-- table (entraprov.schema_version), unless a DBA created it already.

-- The default source relation. A job may point at any table or view with the
-- same columns (names and types are checked at start by the worker). NULL and
-- '' both mean "no value wanted"; rows are validated one by one by the
-- planner, so the table itself stays permissive.
CREATE TABLE entraprov.desired_users (
    external_id         text PRIMARY KEY CHECK (external_id <> ''),
    user_principal_name text,
    display_name        text,
    mail_nickname       text,
    given_name          text,
    surname             text,
    job_title           text,
    department          text,
    office_location     text,
    company_name        text,
    employee_id         text,
    employee_type       text,
    usage_location      text,
    mobile_phone        text,
    account_enabled     boolean NOT NULL DEFAULT true,
    manager_external_id text,
    groups              text[] NOT NULL DEFAULT '{}'
);

-- A link is what makes the worker touch only users it manages.
CREATE TABLE entraprov.directory_links (
    job                 text NOT NULL,
    external_id         text NOT NULL,
    -- NULL only while a create is in flight (its answer unknown).
    object_id           text,
    user_principal_name text,
    state               text NOT NULL
        CHECK (state IN ('creating', 'active', 'disabled', 'deleted')),
    applied_hash        text,
    manager_object_id   text,
    groups              text[] NOT NULL DEFAULT '{}',
    disabled_at         timestamptz,
    deleted_at          timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT directory_links_pkey PRIMARY KEY (job, external_id),
    -- One directory object is managed for one external id only.
    CONSTRAINT directory_links_object_key UNIQUE (job, object_id),
    CONSTRAINT directory_links_object_required
        CHECK (object_id IS NOT NULL OR state = 'creating'),
    CONSTRAINT directory_links_object_nonempty CHECK (object_id <> '')
);

-- Mirror of the directory (from /users/delta), per job because each job may
-- point at a different tenant.
CREATE TABLE entraprov.directory_users (
    job                 text NOT NULL,
    object_id           text NOT NULL,
    user_principal_name text,
    display_name        text,
    mail_nickname       text,
    given_name          text,
    surname             text,
    job_title           text,
    department          text,
    office_location     text,
    company_name        text,
    employee_id         text,
    employee_type       text,
    usage_location      text,
    mobile_phone        text,
    mail                text,
    account_enabled     boolean NOT NULL DEFAULT true,
    manager_object_id   text,
    -- Soft-deleted (restorable for 30 days).
    deleted             boolean NOT NULL DEFAULT false,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT directory_users_pkey PRIMARY KEY (job, object_id)
);
-- Adoption candidates are looked up by UPN (case-insensitive) or employeeId.
CREATE INDEX directory_users_upn_idx ON entraprov.directory_users (job, lower(user_principal_name));
CREATE INDEX directory_users_employee_idx ON entraprov.directory_users (job, employee_id);

CREATE TABLE entraprov.job_state (
    job                  text PRIMARY KEY,
    -- Opaque /users/delta continuation (a state token, not a credential).
    delta_link           text,
    last_success_at      timestamptz,
    last_run_id          bigint,
    quarantined_until    timestamptz,
    quarantine_reason    text,
    consecutive_failures integer NOT NULL DEFAULT 0 CHECK (consecutive_failures >= 0),
    updated_at           timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE entraprov.sync_runs (
    id            bigserial PRIMARY KEY,
    job           text NOT NULL,
    tenant_id     text,
    trigger       text NOT NULL
        CHECK (trigger IN ('schedule', 'catchup', 'manual', 'startup')),
    mode          text NOT NULL CHECK (mode IN ('apply', 'plan')),
    -- The cron occurrence this run serves (NULL for manual runs).
    scheduled_for timestamptz,
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    status        text NOT NULL
        CHECK (status IN ('running', 'succeeded', 'partial', 'failed', 'blocked', 'interrupted', 'skipped')),
    -- Per action and per status, e.g. {"create": 3, "failed": 1}.
    counts        jsonb NOT NULL DEFAULT '{}',
    requests      integer NOT NULL DEFAULT 0,
    batches       integer NOT NULL DEFAULT 0,
    throttled     integer NOT NULL DEFAULT 0,
    retried       integer NOT NULL DEFAULT 0,
    error_summary text,
    host          text,
    pid           integer,
    CONSTRAINT sync_runs_finished_when_done
        CHECK ((status = 'running') = (finished_at IS NULL))
);
-- Two workers sharing the database run each scheduled occurrence once: the
-- second insert of (job, scheduled_for) fails. Skipped runs only record that
-- an occurrence was not run and do not take it.
CREATE UNIQUE INDEX sync_runs_occurrence_key ON entraprov.sync_runs (job, scheduled_for)
    WHERE scheduled_for IS NOT NULL AND status <> 'skipped';
-- "Last runs of job X".
CREATE INDEX sync_runs_job_started_idx ON entraprov.sync_runs (job, started_at DESC);
-- Stale running runs are looked up at every start.
CREATE INDEX sync_runs_running_idx ON entraprov.sync_runs (job) WHERE status = 'running';

CREATE TABLE entraprov.sync_operations (
    run_id      bigint NOT NULL REFERENCES entraprov.sync_runs (id) ON DELETE CASCADE,
    seq         bigint NOT NULL CHECK (seq > 0),
    external_id text NOT NULL,
    object_id   text,
    action      text NOT NULL
        CHECK (action IN ('create', 'update', 'disable', 'enable', 'delete', 'restore',
                          'manager', 'group_add', 'group_remove', 'adopt', 'skip')),
    -- Changed fields; never a secret (no passwords).
    changes     jsonb,
    status      text NOT NULL
        CHECK (status IN ('planned', 'pending', 'succeeded', 'failed', 'skipped', 'not_started', 'interrupted')),
    http_status integer,
    error_code  text,
    message     text,
    request_id  text,
    attempts    integer NOT NULL DEFAULT 0,
    latency_ms  integer,
    at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sync_operations_pkey PRIMARY KEY (run_id, seq)
);
-- "History of user Y", newest run first.
CREATE INDEX sync_operations_user_idx ON entraprov.sync_operations (external_id, run_id DESC);

-- One line per run, for humans: SELECT * FROM entraprov.run_summary LIMIT 20;
CREATE VIEW entraprov.run_summary AS
SELECT r.id,
       r.job,
       r.mode,
       r.trigger,
       r.status,
       r.started_at,
       date_trunc('second', r.finished_at - r.started_at) AS duration,
       (SELECT string_agg(c.key || '=' || c.value, ' ' ORDER BY c.key)
          FROM jsonb_each_text(r.counts) AS c) AS counts,
       r.requests,
       r.throttled,
       r.retried,
       r.error_summary AS error
  FROM entraprov.sync_runs r
 ORDER BY r.started_at DESC, r.id DESC;

-- What happened to one user, newest first:
--   SELECT * FROM entraprov.user_history WHERE external_id = 'E123';
CREATE VIEW entraprov.user_history AS
SELECT o.external_id,
       o.at,
       r.job,
       o.run_id,
       r.mode,
       o.action,
       o.status,
       o.object_id,
       o.changes,
       o.http_status,
       o.error_code,
       o.message,
       o.request_id,
       o.attempts,
       o.latency_ms,
       r.status AS run_status,
       r.started_at AS run_started_at,
       o.seq
  FROM entraprov.sync_operations o
  JOIN entraprov.sync_runs r ON r.id = o.run_id
 ORDER BY o.run_id DESC, o.seq DESC;

---- create above / drop below ----

DROP VIEW IF EXISTS entraprov.user_history;
DROP VIEW IF EXISTS entraprov.run_summary;
DROP TABLE IF EXISTS entraprov.sync_operations;
DROP TABLE IF EXISTS entraprov.sync_runs;
DROP TABLE IF EXISTS entraprov.job_state;
DROP TABLE IF EXISTS entraprov.directory_users;
DROP TABLE IF EXISTS entraprov.directory_links;
DROP TABLE IF EXISTS entraprov.desired_users;
