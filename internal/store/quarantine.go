package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// This file holds what job quarantine (internal/jobs, quarantine.go) reads
// and writes: the outcome of a job's recent runs and the quarantine columns
// of job_state. The decision itself is internal/jobs' job.

// RunHealth is what quarantine needs to know of one finished apply run.
type RunHealth struct {
	ID           int64
	Status       RunStatus
	StartedAt    time.Time
	Succeeded    int // operations that succeeded (counts["succeeded"])
	Failed       int // operations Graph refused or lost (counts["failed"] - counts["failed_unsent"])
	ErrorSummary string
}

// RecentRunHealth returns up to limit of the job's last finished apply
// runs that succeeded, partly succeeded or failed, newest first, leaving
// out runs started before the job's last quarantine release. Blocked,
// interrupted and skipped runs say nothing about the job's health and are
// not listed.
func (s *Store) RecentRunHealth(ctx context.Context, job string, limit int) ([]RunHealth, error) {
	rows, err := s.pool.Query(ctx, `
SELECT r.id, r.status, r.started_at, coalesce((r.counts->>'succeeded')::int, 0),
       greatest(0, coalesce((r.counts->>'failed')::int, 0) - coalesce((r.counts->>'failed_unsent')::int, 0)),
       coalesce(r.error_summary, '')
  FROM entraprov.sync_runs r
  LEFT JOIN entraprov.job_state j ON j.job = r.job
 WHERE r.job = $1 AND r.mode = 'apply' AND r.status IN ('succeeded', 'partial', 'failed')
   AND (j.quarantine_released_at IS NULL OR r.started_at >= j.quarantine_released_at)
 ORDER BY r.started_at DESC, r.id DESC
 LIMIT $2`, job, limit)
	if err != nil {
		return nil, fmt.Errorf("recent runs of job %s: %w", job, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (RunHealth, error) {
		var h RunHealth
		err := row.Scan(&h.ID, &h.Status, &h.StartedAt, &h.Succeeded, &h.Failed, &h.ErrorSummary)
		return h, err
	})
	if err != nil {
		return nil, fmt.Errorf("recent runs of job %s: %w", job, err)
	}
	return out, nil
}

// SetQuarantine records the job's failure streak and its quarantine (until
// nil: not quarantined; reason is then cleared). It touches only those
// columns, so the engine's delta link and last success stay as they are.
func (s *Store) SetQuarantine(ctx context.Context, job string, failures int, until *time.Time, reason string) error {
	if until == nil {
		reason = ""
	}
	_, err := s.pool.Exec(ctx, `
INSERT INTO entraprov.job_state AS j (job, consecutive_failures, quarantined_until, quarantine_reason)
VALUES ($1, $2, $3, nullif($4, ''))
ON CONFLICT (job) DO UPDATE
   SET consecutive_failures = excluded.consecutive_failures,
       quarantined_until = excluded.quarantined_until,
       quarantine_reason = excluded.quarantine_reason,
       updated_at = now()`, job, failures, until, reason)
	if err != nil {
		return fmt.Errorf("set quarantine of job %s: %w", job, err)
	}
	return nil
}

// ReleaseQuarantine ends the job's quarantine and its failure streak: runs
// started before now no longer count towards the next quarantine. It
// returns the state as it was (QuarantinedUntil nil: it was not
// quarantined). Releasing a job that never ran records the release anyway.
func (s *Store) ReleaseQuarantine(ctx context.Context, job string) (JobState, error) {
	was := JobState{Job: job}
	err := s.pool.QueryRow(ctx, `
WITH old AS (
    SELECT quarantined_until, coalesce(quarantine_reason, '') AS reason, consecutive_failures
      FROM entraprov.job_state WHERE job = $1 FOR UPDATE
), up AS (
    INSERT INTO entraprov.job_state AS j (job, quarantine_released_at)
    VALUES ($1, now())
    ON CONFLICT (job) DO UPDATE
       SET quarantined_until = NULL, quarantine_reason = NULL, consecutive_failures = 0,
           quarantine_released_at = now(), updated_at = now()
)
SELECT quarantined_until, reason, consecutive_failures FROM old`, job).Scan(
		&was.QuarantinedUntil, &was.QuarantineReason, &was.ConsecutiveFailures)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return JobState{}, fmt.Errorf("release quarantine of job %s: %w", job, err)
	}
	return was, nil
}

// ListQuarantined returns the state of every quarantined job, by name. A
// job stays quarantined (quarantined_until set: the earliest time its
// schedule runs it again) until a run succeeds or it is released.
func (s *Store) ListQuarantined(ctx context.Context) ([]JobState, error) {
	rows, err := s.pool.Query(ctx, `
SELECT job, coalesce(delta_link, ''), last_success_at, coalesce(last_run_id, 0), quarantined_until,
       coalesce(quarantine_reason, ''), consecutive_failures
  FROM entraprov.job_state WHERE quarantined_until IS NOT NULL ORDER BY job`)
	if err != nil {
		return nil, fmt.Errorf("list quarantined jobs: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (JobState, error) {
		var st JobState
		err := row.Scan(&st.Job, &st.DeltaLink, &st.LastSuccessAt, &st.LastRunID, &st.QuarantinedUntil,
			&st.QuarantineReason, &st.ConsecutiveFailures)
		return st, err
	})
	if err != nil {
		return nil, fmt.Errorf("list quarantined jobs: %w", err)
	}
	return out, nil
}
