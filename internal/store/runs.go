package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// StartRun inserts r as a running run (or as skipped, when r.Status is
// RunSkipped: a record that an occurrence was not run) and fills r.ID,
// r.StartedAt, r.Host and r.PID. When another run already took the job's
// r.ScheduledFor occurrence, it returns an error matching ErrOccurrenceTaken.
func (s *Store) StartRun(ctx context.Context, r *Run) error {
	status := RunRunning
	if r.Status == RunSkipped {
		status = RunSkipped
	}
	if r.Host == "" {
		r.Host = hostname
	}
	if r.PID == 0 {
		r.PID = os.Getpid()
	}
	counts := r.Counts
	err := s.pool.QueryRow(ctx, `
INSERT INTO entraprov.sync_runs
       (job, tenant_id, trigger, mode, scheduled_for, status, counts, error_summary, host, pid, finished_at)
VALUES ($1, nullif($2, ''), $3, $4, $5, $6, $7, nullif($8, ''), nullif($9, ''), $10,
        CASE WHEN $6 = 'running' THEN NULL ELSE now() END)
RETURNING id, started_at, finished_at`,
		r.Job, r.TenantID, r.Trigger, r.Mode, r.ScheduledFor, status, counts, r.ErrorSummary, r.Host, r.PID,
	).Scan(&r.ID, &r.StartedAt, &r.FinishedAt)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == "sync_runs_occurrence_key" {
			return fmt.Errorf("start run of job %s for %s: %w", r.Job, r.ScheduledFor.Format(time.RFC3339), ErrOccurrenceTaken)
		}
		return fmt.Errorf("start run of job %s: %w", r.Job, err)
	}
	r.Status = status
	return nil
}

// FinishRun records the outcome of r: status, counts, Graph figures, error
// summary and finished_at (set to now and copied back into r). In the same
// statement, operations of the run still pending (their result was never
// written, e.g. the database went away mid-run) become interrupted: a
// finished run has no operation without a final status. It is idempotent,
// so a caller may retry it after a connection error.
func (s *Store) FinishRun(ctx context.Context, r *Run) error {
	counts := r.Counts
	if r.Status == "" || r.Status == RunRunning {
		return fmt.Errorf("finish run %d: status %q is not a final status", r.ID, r.Status)
	}
	err := s.pool.QueryRow(ctx, `
WITH ops AS (
    UPDATE entraprov.sync_operations
       SET status = 'interrupted', at = now(),
           message = coalesce(message, 'no result recorded: the run ended before the outcome of this operation was written')
     WHERE run_id = $1 AND status = 'pending'
)
UPDATE entraprov.sync_runs
   SET status = $2, counts = $3, requests = $4, batches = $5, throttled = $6, retried = $7,
       error_summary = nullif($8, ''), finished_at = now()
 WHERE id = $1
RETURNING finished_at`,
		r.ID, r.Status, counts, r.Stats.Requests, r.Stats.Batches, r.Stats.Throttled, r.Stats.Retried, r.ErrorSummary,
	).Scan(&r.FinishedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("finish run %d: %w", r.ID, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("finish run %d: %w", r.ID, err)
	}
	return nil
}

// RecordOperations inserts operation rows with COPY (one round trip for
// thousands). A zero At is set to now.
func (s *Store) RecordOperations(ctx context.Context, ops []Operation) error {
	if len(ops) == 0 {
		return nil
	}
	now := time.Now()
	err := s.write(ctx, func(q dbtx) error {
		_, err := q.CopyFrom(ctx, pgx.Identifier{"entraprov", "sync_operations"},
			[]string{"run_id", "seq", "external_id", "object_id", "action", "changes", "status",
				"http_status", "error_code", "message", "request_id", "attempts", "latency_ms", "at", "desired_hash"},
			pgx.CopyFromSlice(len(ops), func(i int) ([]any, error) {
				o := &ops[i]
				at := o.At
				if at.IsZero() {
					at = now
				}
				var changes any
				if len(o.Changes) > 0 {
					changes = o.Changes
				}
				return []any{o.RunID, o.Seq, o.ExternalID, nullString(o.ObjectID), o.Action, changes, o.Status,
					nullInt(o.HTTPStatus), nullString(o.ErrorCode), nullString(o.Message), nullString(o.RequestID),
					o.Attempts, nullInt(o.LatencyMS), at, nullString(o.DesiredHash)}, nil
			}))
		return err
	})
	if err != nil {
		return fmt.Errorf("record %d operations of run %d: %w", len(ops), ops[0].RunID, err)
	}
	return nil
}

// CompleteOperations updates the outcome of recorded operations, keyed by
// (RunID, Seq), in one statement: Status, ObjectID (kept when empty),
// HTTPStatus, ErrorCode, Message, RequestID, Attempts, LatencyMS, At (now
// when zero). It fails if an operation does not exist.
func (s *Store) CompleteOperations(ctx context.Context, ops []Operation) error {
	if len(ops) == 0 {
		return nil
	}
	n := len(ops)
	var (
		runIDs   = make([]int64, n)
		seqs     = make([]int64, n)
		statuses = make([]string, n)
		objects  = make([]string, n)
		https    = make([]int32, n)
		codes    = make([]string, n)
		messages = make([]string, n)
		reqIDs   = make([]string, n)
		attempts = make([]int32, n)
		latency  = make([]int32, n)
		ats      = make([]time.Time, n)
	)
	now := time.Now()
	for i, o := range ops {
		runIDs[i], seqs[i], statuses[i], objects[i] = o.RunID, o.Seq, string(o.Status), o.ObjectID
		https[i], codes[i], messages[i], reqIDs[i] = int32(o.HTTPStatus), o.ErrorCode, o.Message, o.RequestID
		attempts[i], latency[i], ats[i] = int32(o.Attempts), int32(o.LatencyMS), o.At
		if o.At.IsZero() {
			ats[i] = now
		}
	}
	var tag pgconn.CommandTag
	err := s.write(ctx, func(q dbtx) (err error) {
		tag, err = q.Exec(ctx, `
UPDATE entraprov.sync_operations o
   SET status      = u.status,
       object_id   = coalesce(nullif(u.object_id, ''), o.object_id),
       http_status = nullif(u.http_status, 0),
       error_code  = nullif(u.error_code, ''),
       message     = nullif(u.message, ''),
       request_id  = nullif(u.request_id, ''),
       attempts    = u.attempts,
       latency_ms  = nullif(u.latency_ms, 0),
       at          = u.at
  FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::int[], $6::text[],
              $7::text[], $8::text[], $9::int[], $10::int[], $11::timestamptz[])
       AS u(run_id, seq, status, object_id, http_status, error_code, message, request_id, attempts, latency_ms, at)
 WHERE o.run_id = u.run_id AND o.seq = u.seq`,
			runIDs, seqs, statuses, objects, https, codes, messages, reqIDs, attempts, latency, ats)
		return err
	})
	if err != nil {
		return fmt.Errorf("complete %d operations of run %d: %w", n, ops[0].RunID, err)
	}
	if int(tag.RowsAffected()) != n {
		return fmt.Errorf("complete operations of run %d: %d of %d not found: %w",
			ops[0].RunID, n-int(tag.RowsAffected()), n, ErrNotFound)
	}
	return nil
}

// MarkInterrupted closes runs left "running" by a process that died: a run
// is stale when no session holds its job's advisory lock (TryLockJob), which
// PostgreSQL drops with the dead process's connection. Their pending and
// planned operations become interrupted too. job "" means every job. It
// returns the number of runs marked.
func (s *Store) MarkInterrupted(ctx context.Context, job string) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, `
WITH dead AS (
    UPDATE entraprov.sync_runs r
       SET status = 'interrupted',
           finished_at = now(),
           error_summary = coalesce(r.error_summary,
               'interrupted: the worker process ended without finishing the run (host ' ||
               coalesce(r.host, '?') || ', pid ' || coalesce(r.pid::text, '?') || ')')
     WHERE r.status = 'running'
       AND ($1 = '' OR r.job = $1)
       AND NOT EXISTS (
           SELECT 1 FROM pg_locks k
            WHERE k.locktype = 'advisory' AND k.granted
              AND k.database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND k.classid = $2::int4::oid AND k.objid = hashtext(r.job)::oid AND k.objsubid = 2)
    RETURNING r.id
), ops AS (
    UPDATE entraprov.sync_operations o
       SET status = 'interrupted', at = now()
      FROM dead
     WHERE o.run_id = dead.id AND o.status IN ('pending', 'planned')
)
SELECT count(*) FROM dead`, job, jobLockClass).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("mark interrupted runs: %w", err)
	}
	return n, nil
}

const runColumns = `id, job, coalesce(tenant_id, ''), trigger, mode, scheduled_for, started_at, finished_at,
       status, counts, requests, batches, throttled, retried, coalesce(error_summary, ''),
       coalesce(host, ''), coalesce(pid, 0)`

func scanRun(row pgx.Row) (Run, error) {
	var r Run
	err := row.Scan(&r.ID, &r.Job, &r.TenantID, &r.Trigger, &r.Mode, &r.ScheduledFor, &r.StartedAt, &r.FinishedAt,
		&r.Status, &r.Counts, &r.Stats.Requests, &r.Stats.Batches, &r.Stats.Throttled, &r.Stats.Retried,
		&r.ErrorSummary, &r.Host, &r.PID)
	return r, err
}

// ListRuns returns the last runs, newest first; job "" lists every job.
// limit <= 0 means 20.
func (s *Store) ListRuns(ctx context.Context, job string, limit int) ([]Run, error) {
	if limit <= 0 {
		limit = 20
	}
	return s.listRuns(ctx, "list runs", job, time.Time{}, limit)
}

// ListRunsSince lists the runs started at or after since, newest first;
// limit <= 0 means all of them (an export for auditors wants the whole
// window, not the last screenful).
func (s *Store) ListRunsSince(ctx context.Context, job string, since time.Time, limit int) ([]Run, error) {
	if limit <= 0 {
		limit = math.MaxInt32
	}
	return s.listRuns(ctx, "list runs since "+since.Format(time.RFC3339), job, since, limit)
}

// listRuns is the query behind ListRuns and ListRunsSince: job's runs (""
// every job), only those started at or after since unless it is zero,
// newest first, at most limit. what names the call in errors.
func (s *Store) listRuns(ctx context.Context, what, job string, since time.Time, limit int) ([]Run, error) {
	q := `SELECT ` + runColumns + `
  FROM entraprov.sync_runs
 WHERE ($1 = '' OR job = $1)`
	args := []any{job, limit}
	if !since.IsZero() {
		q += ` AND started_at >= $3`
		args = append(args, since)
	}
	rows, err := s.pool.Query(ctx, q+`
 ORDER BY started_at DESC, id DESC
 LIMIT $2`, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	runs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Run, error) { return scanRun(row) })
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return runs, nil
}

// GetRun returns one run; ErrNotFound when there is none with that id.
func (s *Store) GetRun(ctx context.Context, id int64) (Run, error) {
	r, err := scanRun(s.pool.QueryRow(ctx, `SELECT `+runColumns+` FROM entraprov.sync_runs WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Run{}, fmt.Errorf("run %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Run{}, fmt.Errorf("get run %d: %w", id, err)
	}
	return r, nil
}

// ListOperations returns the operations of a run in seq order, only those
// with the given status unless status is "".
func (s *Store) ListOperations(ctx context.Context, runID int64, status OpStatus) ([]Operation, error) {
	rows, err := s.pool.Query(ctx, `
SELECT run_id, seq, external_id, coalesce(object_id, ''), action, changes, status,
       coalesce(http_status, 0), coalesce(error_code, ''), coalesce(message, ''),
       coalesce(request_id, ''), attempts, coalesce(latency_ms, 0), at, coalesce(desired_hash, '')
  FROM entraprov.sync_operations
 WHERE run_id = $1 AND ($2 = '' OR status = $2)
 ORDER BY seq`, runID, string(status))
	if err != nil {
		return nil, fmt.Errorf("list operations of run %d: %w", runID, err)
	}
	ops, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Operation, error) {
		var o Operation
		err := row.Scan(&o.RunID, &o.Seq, &o.ExternalID, &o.ObjectID, &o.Action, &o.Changes, &o.Status,
			&o.HTTPStatus, &o.ErrorCode, &o.Message, &o.RequestID, &o.Attempts, &o.LatencyMS, &o.At, &o.DesiredHash)
		return o, err
	})
	if err != nil {
		return nil, fmt.Errorf("list operations of run %d: %w", runID, err)
	}
	return ops, nil
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nullInt(n int) any {
	if n == 0 {
		return nil
	}
	return n
}
