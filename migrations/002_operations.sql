-- Operating for years: writeback for the source system, quarantine release
-- bookkeeping, and an index for history retention.

-- Writeback: what the worker last applied per job and external id, for the
-- HR side to read with SQL (what Microsoft's provisioning service calls
-- writeback). One row per link; the directory columns come from the job's
-- mirror (refreshed by /users/delta at every run), so mail is Exchange's
-- answer, not ours. A user whose create is still in flight has link_state
-- 'creating' and no object id yet.
--   SELECT external_id, object_id, user_principal_name, mail
--     FROM entraprov.user_directory_state WHERE job = 'nightly';
CREATE VIEW entraprov.user_directory_state AS
SELECT l.job,
       l.external_id,
       l.object_id,
       coalesce(d.user_principal_name, l.user_principal_name) AS user_principal_name,
       d.mail,
       d.account_enabled,
       l.state AS link_state,
       l.disabled_at,
       l.deleted_at,
       l.updated_at AS last_applied_at,
       d.updated_at AS directory_seen_at
  FROM entraprov.directory_links l
  LEFT JOIN entraprov.directory_users d ON d.job = l.job AND d.object_id = l.object_id;

-- Quarantine counts the failures of a job since its last release: runs
-- started before it no longer count (`worker quarantine release`, or a
-- manual `worker sync`).
ALTER TABLE entraprov.job_state ADD COLUMN quarantine_released_at timestamptz;

-- History retention (`worker history prune`) picks old runs by start time
-- across all jobs; (job, started_at) cannot serve that.
CREATE INDEX sync_runs_started_idx ON entraprov.sync_runs (started_at);

---- create above / drop below ----

DROP INDEX IF EXISTS entraprov.sync_runs_started_idx;
ALTER TABLE entraprov.job_state DROP COLUMN IF EXISTS quarantine_released_at;
DROP VIEW IF EXISTS entraprov.user_directory_state;
