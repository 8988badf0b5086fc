package store

import (
	"context"
	"fmt"
	"os"
	"time"
)

// This file holds what the scheduler (internal/jobs) reads and writes in the
// run history; internal/jobs declares the interface (jobs.History).

// RecordSkipped records that an occurrence of r.Job was not run (the job was
// still running in this process): a sync_runs row with status skipped,
// finished at once, r.ErrorSummary saying why. A skipped row does not take
// the (job, scheduled_for) occurrence. r.ID, StartedAt, FinishedAt, Host and
// PID are filled in.
func (s *Store) RecordSkipped(ctx context.Context, r *Run) error {
	if r.ScheduledFor == nil {
		return fmt.Errorf("record skipped run of job %s: no scheduled time", r.Job)
	}
	if r.Mode == "" {
		r.Mode = "apply"
	}
	r.Status = RunSkipped
	if err := s.StartRun(ctx, r); err != nil {
		return fmt.Errorf("record skipped run: %w", err)
	}
	return nil
}

// LastScheduledFor returns the latest occurrence recorded for job (any
// trigger and status, skips included); ok is false when the job never had a
// scheduled run. The scheduler's catch-up compares it with the schedule.
func (s *Store) LastScheduledFor(ctx context.Context, job string) (t time.Time, ok bool, err error) {
	var last *time.Time
	err = s.pool.QueryRow(ctx,
		`SELECT max(scheduled_for) FROM entraprov.sync_runs WHERE job = $1`, job).Scan(&last)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("last scheduled run of job %s: %w", job, err)
	}
	if last == nil {
		return time.Time{}, false, nil
	}
	return *last, true, nil
}

// InterruptOwnRuns marks as interrupted the runs this process (same host and
// pid) still has running, with their pending and planned operations. The
// daemon calls it when a run did not wind down within the stop timeout:
// MarkInterrupted cannot, since the stuck run still holds its job lock.
func (s *Store) InterruptOwnRuns(ctx context.Context, reason string) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, `
WITH own AS (
    UPDATE entraprov.sync_runs
       SET status = 'interrupted', finished_at = now(),
           error_summary = coalesce(error_summary, $3)
     WHERE status = 'running' AND host IS NOT DISTINCT FROM nullif($1, '') AND pid = $2
    RETURNING id
), ops AS (
    UPDATE entraprov.sync_operations o
       SET status = 'interrupted', at = now()
      FROM own
     WHERE o.run_id = own.id AND o.status IN ('pending', 'planned')
)
SELECT count(*) FROM own`, hostname, os.Getpid(), reason).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("interrupt this worker's runs: %w", err)
	}
	return n, nil
}
