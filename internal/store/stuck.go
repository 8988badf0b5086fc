package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// This file answers `worker show --stuck`: users whose operations keep
// failing the same way run after run, from the history and from
// user_backoff. Deciding what to do about them (the back-off) is the
// engine's job, not this file's.

// StuckUser is one user of a job whose operations failed, with the same
// HTTP status and Graph error code, in each of the job's last N apply runs.
type StuckUser struct {
	Job        string
	ExternalID string
	HTTPStatus int    // 0: the failure had no HTTP answer (e.g. validation)
	ErrorCode  string // Graph error code; "" none
	// Runs is the length of the streak: consecutive apply runs, newest
	// first, in which the user failed this way (at least N; at most
	// StuckWindow).
	Runs int
	// The last failure of the streak.
	Action    string
	Message   string
	RequestID string
	RunID     int64
	FirstAt   time.Time // first failure of the streak
	LastAt    time.Time // last failure
	// Failures and NextAttemptAt come from the user's user_backoff row
	// when it holds this failure (0 and nil otherwise): how many identical
	// failures in a row the engine counted, and the time before which it
	// does not try the user again.
	Failures      int
	NextAttemptAt *time.Time
}

// StuckWindow bounds how many of a job's runs the streak is counted over,
// so a user stuck for years costs no more than this.
const StuckWindow = 1000

// stuckQuery finds the stuck users of job $1 over its last $2 apply runs
// that applied something (succeeded, partial, failed: blocked, interrupted
// and skipped runs did not try the user). The runs come from
// sync_runs_job_started_idx, the candidates from the primary key of
// sync_operations (run_id, seq) over those $2 runs only, and the streak of
// each candidate from sync_operations_user_idx (external_id, run_id DESC),
// so the cost follows the size of the last runs and of the stuck users'
// history, not of the table.
const stuckQuery = `
WITH w AS (
    SELECT id, row_number() OVER (ORDER BY started_at DESC, id DESC) AS rn
      FROM (SELECT id, started_at FROM entraprov.sync_runs
             WHERE job = $1 AND mode = 'apply' AND status IN ('succeeded', 'partial', 'failed')
             ORDER BY started_at DESC, id DESC
             LIMIT $3) r
), cand AS (
    SELECT o.external_id, coalesce(o.http_status, 0) AS http_status, coalesce(o.error_code, '') AS error_code
      FROM w JOIN entraprov.sync_operations o ON o.run_id = w.id
     WHERE w.rn <= $2 AND o.status = 'failed'
     GROUP BY 1, 2, 3
    HAVING count(DISTINCT o.run_id) = $2
), hits AS (
    SELECT c.external_id, c.http_status, c.error_code, w.rn, o.run_id, o.seq, o.action,
           coalesce(o.message, '') AS message, coalesce(o.request_id, '') AS request_id, o.at
      FROM cand c
      JOIN entraprov.sync_operations o ON o.external_id = c.external_id
      JOIN w ON w.id = o.run_id
     WHERE o.status = 'failed' AND coalesce(o.http_status, 0) = c.http_status
       AND coalesce(o.error_code, '') = c.error_code
), streak AS (
    -- Runs 1..k all hit: a hit run's rank equals its position among hits.
    SELECT external_id, http_status, error_code, count(*) AS runs
      FROM (SELECT DISTINCT external_id, http_status, error_code, rn,
                   dense_rank() OVER (PARTITION BY external_id, http_status, error_code ORDER BY rn) AS pos
              FROM hits) x
     WHERE rn = pos
     GROUP BY 1, 2, 3
), last AS (
    SELECT DISTINCT ON (h.external_id, h.http_status, h.error_code)
           h.external_id, h.http_status, h.error_code, s.runs, h.action, h.message, h.request_id, h.run_id, h.at
      FROM hits h JOIN streak s USING (external_id, http_status, error_code)
     ORDER BY h.external_id, h.http_status, h.error_code, h.rn, h.seq DESC
)
SELECT l.external_id, l.http_status, l.error_code, l.runs, l.action, l.message, l.request_id, l.run_id,
       (SELECT min(h.at) FROM hits h
         WHERE h.external_id = l.external_id AND h.http_status = l.http_status
           AND h.error_code = l.error_code AND h.rn <= l.runs),
       l.at
  FROM last l
 ORDER BY l.runs DESC, l.external_id, l.http_status, l.error_code`

// jobsQuery lists the jobs that have runs, skipping through
// sync_runs_job_started_idx one job at a time instead of reading every run.
const jobsQuery = `
WITH RECURSIVE j AS (
    SELECT min(job) AS job FROM entraprov.sync_runs
    UNION ALL
    SELECT (SELECT min(r.job) FROM entraprov.sync_runs r WHERE r.job > j.job) FROM j WHERE j.job IS NOT NULL
)
SELECT job FROM j WHERE job IS NOT NULL`

// StuckUsers returns the users of job ("" every job with runs) whose
// operations failed with the same HTTP status and Graph error code in each
// of the job's last n apply runs, longest streak first. A user stuck with
// two different errors is listed twice. n must be at least 1.
//
// A user the engine backs off is recorded as skipped in the runs that left
// it alone, which ends its streak in the history: such a user is listed
// from its user_backoff row instead when it failed at least n times in a
// row, with Runs set to those failures.
func (s *Store) StuckUsers(ctx context.Context, job string, n int) ([]StuckUser, error) {
	if n < 1 || n > StuckWindow {
		return nil, fmt.Errorf("stuck users: runs must be between 1 and %d, got %d", StuckWindow, n)
	}
	jobs := []string{job}
	if job == "" {
		rows, err := s.pool.Query(ctx, jobsQuery)
		if err != nil {
			return nil, fmt.Errorf("stuck users: list jobs: %w", err)
		}
		if jobs, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return nil, fmt.Errorf("stuck users: list jobs: %w", err)
		}
	}
	var out []StuckUser
	for _, j := range jobs {
		rows, err := s.pool.Query(ctx, stuckQuery, j, n, StuckWindow)
		if err != nil {
			return nil, fmt.Errorf("stuck users of job %s: %w", j, err)
		}
		us, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (StuckUser, error) {
			u := StuckUser{Job: j}
			err := row.Scan(&u.ExternalID, &u.HTTPStatus, &u.ErrorCode, &u.Runs, &u.Action, &u.Message,
				&u.RequestID, &u.RunID, &u.FirstAt, &u.LastAt)
			return u, err
		})
		if err != nil {
			return nil, fmt.Errorf("stuck users of job %s: %w", j, err)
		}
		bs, err := s.UserBackoffs(ctx, j)
		if err != nil {
			return nil, fmt.Errorf("stuck users of job %s: %w", j, err)
		}
		out = append(out, mergeBackoffs(us, bs, n)...)
	}
	return out, nil
}

// mergeBackoffs attaches each back-off row to the streak of the same
// failure and adds the backed-off users whose streak the skipped runs
// ended, keeping the order longest streak first.
func mergeBackoffs(us []StuckUser, bs []UserBackoff, n int) []StuckUser {
	if len(bs) == 0 {
		return us
	}
	byID := make(map[string]*UserBackoff, len(bs))
	for i := range bs {
		byID[bs[i].ExternalID] = &bs[i]
	}
	used := map[string]bool{}
	for i := range us {
		u := &us[i]
		if b := byID[u.ExternalID]; b != nil && b.HTTPStatus == u.HTTPStatus && b.ErrorCode == u.ErrorCode {
			t := b.NextAttemptAt
			u.Failures, u.NextAttemptAt = b.Failures, &t
			used[b.ExternalID] = true
		}
	}
	added := false
	for _, b := range bs {
		if used[b.ExternalID] || b.Failures < n {
			continue
		}
		t := b.NextAttemptAt
		us = append(us, StuckUser{Job: b.Job, ExternalID: b.ExternalID, HTTPStatus: b.HTTPStatus, ErrorCode: b.ErrorCode,
			Runs: b.Failures, Action: b.Action, Message: b.Message, RequestID: b.RequestID, RunID: b.LastRunID,
			FirstAt: b.FirstFailedAt, LastAt: b.LastFailedAt, Failures: b.Failures, NextAttemptAt: &t})
		added = true
	}
	if added {
		slices.SortStableFunc(us, func(a, b StuckUser) int {
			if a.Runs != b.Runs {
				return cmp.Compare(b.Runs, a.Runs)
			}
			return strings.Compare(a.ExternalID, b.ExternalID)
		})
	}
	return us
}
