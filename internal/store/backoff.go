package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// This file keeps entraprov.user_backoff: the users of a job whose writes
// fail the same way run after run. When a user is tried again, and for how
// long it is left alone, is internal/sync's decision (backoff.go there);
// this file only reads and writes the rows.

// UserBackoff is a user_backoff row: a user whose last attempts failed the
// same way, and when the engine may try it again.
type UserBackoff struct {
	Job        string
	ExternalID string
	// DesiredHash fingerprints what the failing attempts tried to apply; a
	// plan with another hash (the source row or the directory changed) is
	// sent whatever NextAttemptAt says.
	DesiredHash string
	Action      string
	HTTPStatus  int    // of the last failure; 0 none
	ErrorCode   string // Graph error code of the last failure
	Message     string
	RequestID   string
	// Failures counts the identical failures in a row (same hash, status
	// and code).
	Failures      int
	FirstFailedAt time.Time
	LastFailedAt  time.Time
	LastRunID     int64
	NextAttemptAt time.Time
}

const backoffColumns = `job, external_id, desired_hash, action, coalesce(http_status, 0), coalesce(error_code, ''),
       coalesce(message, ''), coalesce(request_id, ''), failures, first_failed_at, last_failed_at,
       coalesce(last_run_id, 0), next_attempt_at`

func scanBackoff(row pgx.CollectableRow) (UserBackoff, error) {
	var b UserBackoff
	err := row.Scan(&b.Job, &b.ExternalID, &b.DesiredHash, &b.Action, &b.HTTPStatus, &b.ErrorCode, &b.Message,
		&b.RequestID, &b.Failures, &b.FirstFailedAt, &b.LastFailedAt, &b.LastRunID, &b.NextAttemptAt)
	return b, err
}

// UserBackoffs returns the back-off rows of job ("" every job), the most
// failures first.
func (s *Store) UserBackoffs(ctx context.Context, job string) ([]UserBackoff, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+backoffColumns+`
  FROM entraprov.user_backoff
 WHERE $1 = '' OR job = $1
 ORDER BY failures DESC, job, external_id`, job)
	if err != nil {
		return nil, fmt.Errorf("user back-offs of job %q: %w", job, err)
	}
	out, err := pgx.CollectRows(rows, scanBackoff)
	if err != nil {
		return nil, fmt.Errorf("user back-offs of job %q: %w", job, err)
	}
	return out, nil
}

// SaveUserBackoffs inserts or replaces the rows, keyed by (Job,
// ExternalID), in one statement. The caller computed every column (the
// engine holds the job's lock, so nobody else writes its rows).
func (s *Store) SaveUserBackoffs(ctx context.Context, bs []UserBackoff) error {
	if len(bs) == 0 {
		return nil
	}
	n := len(bs)
	var (
		jobs, ids, hashes, actions, codes, msgs, reqs = make([]string, n), make([]string, n), make([]string, n),
			make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		statuses, failures   = make([]int32, n), make([]int32, n)
		firsts, lasts, nexts = make([]time.Time, n), make([]time.Time, n), make([]time.Time, n)
		runs                 = make([]int64, n)
	)
	for i, b := range bs {
		if b.Failures < 1 {
			return fmt.Errorf("save user back-off of %s/%s: failures %d, want at least 1", b.Job, b.ExternalID, b.Failures)
		}
		jobs[i], ids[i], hashes[i], actions[i] = b.Job, b.ExternalID, b.DesiredHash, b.Action
		codes[i], msgs[i], reqs[i] = b.ErrorCode, b.Message, b.RequestID
		statuses[i], failures[i] = int32(b.HTTPStatus), int32(b.Failures)
		firsts[i], lasts[i], nexts[i], runs[i] = b.FirstFailedAt, b.LastFailedAt, b.NextAttemptAt, b.LastRunID
	}
	err := s.write(ctx, func(q dbtx) error {
		_, err := q.Exec(ctx, `
INSERT INTO entraprov.user_backoff AS b (job, external_id, desired_hash, action, http_status, error_code, message,
       request_id, failures, first_failed_at, last_failed_at, last_run_id, next_attempt_at)
SELECT u.job, u.external_id, u.desired_hash, u.action, nullif(u.http_status, 0), nullif(u.error_code, ''),
       nullif(u.message, ''), nullif(u.request_id, ''), u.failures, u.first_failed_at, u.last_failed_at,
       nullif(u.last_run_id, 0), u.next_attempt_at
  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::text[], $7::text[], $8::text[],
              $9::int[], $10::timestamptz[], $11::timestamptz[], $12::bigint[], $13::timestamptz[])
       AS u(job, external_id, desired_hash, action, http_status, error_code, message, request_id,
            failures, first_failed_at, last_failed_at, last_run_id, next_attempt_at)
ON CONFLICT (job, external_id) DO UPDATE
   SET desired_hash = excluded.desired_hash, action = excluded.action, http_status = excluded.http_status,
       error_code = excluded.error_code, message = excluded.message, request_id = excluded.request_id,
       failures = excluded.failures, first_failed_at = excluded.first_failed_at,
       last_failed_at = excluded.last_failed_at, last_run_id = excluded.last_run_id,
       next_attempt_at = excluded.next_attempt_at`,
			jobs, ids, hashes, actions, statuses, codes, msgs, reqs, failures, firsts, lasts, runs, nexts)
		return err
	})
	if err != nil {
		return fmt.Errorf("save %d user back-offs of job %s: %w", n, bs[0].Job, err)
	}
	return nil
}

// DeleteUserBackoffs removes the rows of these users of job (their write
// succeeded, or what failed is no longer wanted). Missing rows are fine.
func (s *Store) DeleteUserBackoffs(ctx context.Context, job string, externalIDs []string) error {
	if len(externalIDs) == 0 {
		return nil
	}
	err := s.write(ctx, func(q dbtx) error {
		_, err := q.Exec(ctx, `DELETE FROM entraprov.user_backoff WHERE job = $1 AND external_id = ANY($2::text[])`,
			job, externalIDs)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete %d user back-offs of job %s: %w", len(externalIDs), job, err)
	}
	return nil
}
