-- The job lock is a session advisory lock; its session can die (a TCP
-- reset, idle_session_timeout, pg_terminate_backend) while the run that
-- took it goes on. lease_fence is a fencing counter: every new holder of a
-- job's lock increments it, and a run's writes to links, history, mirror,
-- back-offs and job state are refused once the fence is no longer the one
-- it took. lease_held says the holder of lease_fence has not released the
-- job yet: a new holder that finds it true took over from a run that may
-- still be stopping, and waits before writing to Graph.
ALTER TABLE entraprov.job_state
    ADD COLUMN lease_fence bigint NOT NULL DEFAULT 0,
    ADD COLUMN lease_held boolean NOT NULL DEFAULT false;

---- create above / drop below ----

ALTER TABLE entraprov.job_state
    DROP COLUMN IF EXISTS lease_held,
    DROP COLUMN IF EXISTS lease_fence;
