package store

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
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

// JobUsesGroups reports whether the job has group memberships to manage:
// a source row wants groups, or a link records groups applied earlier (to be
// removed). `worker check` then requires GroupMember.ReadWrite.All. Run
// CheckSource first.
func (s *Store) JobUsesGroups(ctx context.Context, job, relation string) (bool, error) {
	src, err := parseSource(relation)
	if err != nil {
		return false, err
	}
	var uses bool
	err = s.pool.QueryRow(ctx, `
SELECT EXISTS (SELECT 1 FROM `+src.from(2)+` s WHERE cardinality(groups) > 0)
    OR EXISTS (SELECT 1 FROM entraprov.directory_links WHERE job = $1 AND cardinality(groups) > 0)`,
		src.args(job)...).Scan(&uses)
	if err != nil {
		return false, fmt.Errorf("does job %s manage groups: %w", job, err)
	}
	return uses, nil
}

// ColumnsInUse returns those of columns (names from the attribute table,
// present in relation) that hold a value in at least one of the job's rows
// (a template job's own rows only): SourceSchema owns an OwnedWhenFilled
// attribute only then, so only then does a run select and write it, and
// only then does `worker check` ask for the permission it needs. One
// aggregate read of the source.
func (s *Store) ColumnsInUse(ctx context.Context, relation string, columns []string) ([]string, error) {
	if len(columns) == 0 {
		return nil, nil
	}
	src, err := parseSource(relation)
	if err != nil {
		return nil, err
	}
	exprs := make([]string, len(columns))
	for i, c := range columns {
		// coalesce: bool_or over no rows is NULL.
		exprs[i] = "coalesce(bool_or(" + pgx.Identifier{c}.Sanitize() + " IS NOT NULL), false)"
	}
	used := make([]bool, len(columns))
	targets := make([]any, len(columns))
	for i := range used {
		targets[i] = &used[i]
	}
	q := "SELECT " + strings.Join(exprs, ", ") + " FROM " + src.from(1) + " s"
	if err := s.pool.QueryRow(ctx, q, src.args()...).Scan(targets...); err != nil {
		return nil, fmt.Errorf("which of %s does %s fill: %w", strings.Join(columns, ", "), relation, err)
	}
	var out []string
	for i, c := range columns {
		if used[i] {
			out = append(out, c)
		}
	}
	return out, nil
}
