package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/entraprov/entraprov/internal/profile"
)

// UpsertLinks inserts or replaces links by (job, external_id) in one
// statement. created_at is kept on update; updated_at becomes now. When the
// same (job, external_id) appears twice, the last one wins. A link whose
// object id is already linked to another external id of the job fails with
// the unique violation (directory_links_object_key): that is a bug to see,
// not to paper over. A link naming an object another job links fails with
// the unique violation directory_links_owner_key (IsOwnerConflict): one
// owner per account, whoever wrote first. A second link to an object that
// migration 009 found (legacy_shared) stays out of that index until it
// names another object or no other job's link names its object.
func (s *Store) UpsertLinks(ctx context.Context, links []Link) error {
	links = lastByKey(links, func(l Link) [2]string { return [2]string{l.Job, l.ExternalID} })
	if len(links) == 0 {
		return nil
	}
	n := len(links)
	var (
		jobs, xids, objects, upns = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		states, hashes, managers  = make([]string, n), make([]string, n), make([]string, n)
		groups                    = make([]string, n)
		disabled, deleted         = make([]*time.Time, n), make([]*time.Time, n)
	)
	for i, l := range links {
		jobs[i], xids[i], objects[i], upns[i] = l.Job, l.ExternalID, l.ObjectID, l.UserPrincipalName
		states[i], hashes[i], managers[i] = string(l.State), l.AppliedHash, l.ManagerObjectID
		disabled[i], deleted[i] = l.DisabledAt, l.DeletedAt
		// Arrays of arrays cannot be unnested row by row: each row's groups
		// travel as a JSON array.
		g := l.Groups
		if g == nil {
			g = []string{}
		}
		b, err := json.Marshal(g)
		if err != nil {
			return fmt.Errorf("upsert links: encode groups of %s: %w", l.ExternalID, err)
		}
		groups[i] = string(b)
	}
	err := s.write(ctx, func(q dbtx) error {
		_, err := q.Exec(ctx, `
INSERT INTO entraprov.directory_links AS d
       (job, external_id, object_id, user_principal_name, state, applied_hash, manager_object_id,
        groups, disabled_at, deleted_at)
SELECT u.job, u.external_id, nullif(u.object_id, ''), nullif(u.upn, ''), u.state, nullif(u.hash, ''),
       nullif(u.manager, ''), ARRAY(SELECT jsonb_array_elements_text(u.groups::jsonb)),
       u.disabled_at, u.deleted_at
  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
              $8::text[], $9::timestamptz[], $10::timestamptz[])
       AS u(job, external_id, object_id, upn, state, hash, manager, groups, disabled_at, deleted_at)
ON CONFLICT (job, external_id) DO UPDATE
   SET object_id = excluded.object_id,
       user_principal_name = excluded.user_principal_name,
       state = excluded.state,
       applied_hash = excluded.applied_hash,
       manager_object_id = excluded.manager_object_id,
       groups = excluded.groups,
       disabled_at = excluded.disabled_at,
       deleted_at = excluded.deleted_at,
       legacy_shared = CASE WHEN NOT d.legacy_shared OR excluded.object_id IS DISTINCT FROM d.object_id THEN false
                            ELSE EXISTS (SELECT 1 FROM entraprov.directory_links o
                                          WHERE o.object_id = d.object_id AND o.job <> d.job) END,
       updated_at = now()`,
			jobs, xids, objects, upns, states, hashes, managers, groups, disabled, deleted)
		return err
	})
	if err != nil {
		return fmt.Errorf("upsert %d links: %w", n, err)
	}
	return nil
}

// GetLink returns the link of one external id; ErrNotFound when none.
func (s *Store) GetLink(ctx context.Context, job, externalID string) (Link, error) {
	l := Link{Job: job, ExternalID: externalID}
	err := s.pool.QueryRow(ctx, `
SELECT coalesce(object_id, ''), coalesce(user_principal_name, ''), state, coalesce(applied_hash, ''),
       coalesce(manager_object_id, ''), groups, disabled_at, deleted_at, created_at, updated_at
  FROM entraprov.directory_links WHERE job = $1 AND external_id = $2`, job, externalID).Scan(
		&l.ObjectID, &l.UserPrincipalName, &l.State, &l.AppliedHash, &l.ManagerObjectID, &l.Groups,
		&l.DisabledAt, &l.DeletedAt, &l.CreatedAt, &l.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Link{}, fmt.Errorf("link %s/%s: %w", job, externalID, ErrNotFound)
	}
	if err != nil {
		return Link{}, fmt.Errorf("get link %s/%s: %w", job, externalID, err)
	}
	return l, nil
}

// CountLinks counts a job's links per state (the managed population the
// change budget's percentages refer to).
func (s *Store) CountLinks(ctx context.Context, job string) (map[LinkState]int, error) {
	rows, err := s.pool.Query(ctx,
		`SELECT state, count(*) FROM entraprov.directory_links WHERE job = $1 GROUP BY state`, job)
	if err != nil {
		return nil, fmt.Errorf("count links of job %s: %w", job, err)
	}
	counts := map[LinkState]int{}
	var state string
	var n int
	_, err = pgx.ForEachRow(rows, []any{&state, &n}, func() error {
		counts[LinkState(state)] = n
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("count links of job %s: %w", job, err)
	}
	return counts, nil
}

// mirrorColumns are the directory_users text columns UpsertDirectoryUsers
// writes, in parameter order: the object id, the attributes with a column
// of their own (profile.Attr.Mirror), mail and the manager. The other
// attributes go into the profile jsonb.
var mirrorColumns = func() []string {
	cols := []string{"object_id"}
	for _, a := range profile.Builtin {
		if a.Mirror != "" {
			cols = append(cols, a.Mirror)
		}
	}
	return append(cols, "mail", "manager_object_id")
}()

// UpsertDirectoryUsers writes mirror rows of a job in one statement (insert
// or replace by object id). The users' Attrs are positioned by the schema
// ctx carries (profile.From). UpdatedAt is ignored: the row's updated_at
// becomes now. A user whose ManagerKnown is false keeps the row's manager
// (an incremental delta item without manager@delta: the manager did not
// change); once known, a row's manager stays known.
func (s *Store) UpsertDirectoryUsers(ctx context.Context, job string, users []DirectoryUser) error {
	users = lastByKey(users, func(u DirectoryUser) [2]string { return [2]string{u.ObjectID} })
	if len(users) == 0 {
		return nil
	}
	schema := profile.From(ctx)
	n := len(users)
	cols := make([][]string, len(mirrorColumns))
	for i := range cols {
		cols[i] = make([]string, n)
	}
	profiles := make([]string, n)
	enabled, deleted, known := make([]bool, n), make([]bool, n), make([]bool, n)
	var vals []string
	for i, u := range users {
		c := 0
		cols[c][i] = u.ObjectID
		vals = u.Attrs.Expand(vals, schema.Len())
		extra := map[string]string{}
		for k, a := range schema.Attrs {
			switch {
			case a.Mirror != "":
				c++
				cols[c][i] = vals[k]
			case vals[k] != "":
				extra[a.Graph] = vals[k]
			}
		}
		cols[c+1][i], cols[c+2][i] = u.Mail, u.ManagerObjectID
		b, err := json.Marshal(extra)
		if err != nil {
			return fmt.Errorf("upsert directory users of job %s: encode the profile of %s: %w", job, u.ObjectID, err)
		}
		profiles[i] = string(b)
		enabled[i], deleted[i], known[i] = u.AccountEnabled, u.Deleted, u.ManagerKnown
	}
	args := []any{job}
	for _, c := range cols {
		args = append(args, c)
	}
	args = append(args, profiles, enabled, deleted, known)
	err := s.write(ctx, func(q dbtx) error {
		_, err := q.Exec(ctx, upsertMirrorSQL, args...)
		return err
	})
	if err != nil {
		return fmt.Errorf("upsert %d directory users of job %s: %w", n, job, err)
	}
	return nil
}

// upsertMirrorSQL is built once from mirrorColumns ($2.. in that order, then
// profile, account_enabled, deleted and manager_known).
var upsertMirrorSQL = func() string {
	var names, selects, params, sets string
	for i, c := range mirrorColumns {
		sep := ", "
		if i == 0 {
			sep = ""
		}
		names += sep + c
		params += fmt.Sprintf("%s$%d::text[]", sep, i+2)
		switch c {
		case "object_id":
			selects += sep + "u.object_id"
		case "manager_object_id":
			selects += fmt.Sprintf("%snullif(u.%s, '')", sep, c)
			sets += "manager_object_id = CASE WHEN excluded.manager_known THEN excluded.manager_object_id ELSE d.manager_object_id END, "
		default:
			selects += fmt.Sprintf("%snullif(u.%s, '')", sep, c)
			sets += fmt.Sprintf("%s = excluded.%s, ", c, c)
		}
	}
	k := len(mirrorColumns) + 2
	return fmt.Sprintf(`
INSERT INTO entraprov.directory_users AS d (job, %[1]s, profile, account_enabled, deleted, manager_known)
SELECT $1, %[2]s, u.profile::jsonb, u.account_enabled, u.deleted, u.manager_known
  FROM unnest(%[3]s, $%[4]d::text[], $%[5]d::boolean[], $%[6]d::boolean[], $%[7]d::boolean[])
       AS u(%[1]s, profile, account_enabled, deleted, manager_known)
ON CONFLICT (job, object_id) DO UPDATE
   SET %[8]sprofile = excluded.profile, account_enabled = excluded.account_enabled, deleted = excluded.deleted,
       manager_known = d.manager_known OR excluded.manager_known, updated_at = now()`,
		names, selects, params, k, k+1, k+2, k+3, sets)
}()

// deletedRetention is how long Entra keeps a soft-deleted user restorable.
const deletedRetention = "30 days"

// LinkedObjectsNotInMirror lists the object ids of a job's links whose
// object the mirror does not hold: after a full read, those were either
// soft-deleted (a full read leaves them out) or purged. Links we deleted
// more than 30 days ago are left out: their objects are purged by now.
func (s *Store) LinkedObjectsNotInMirror(ctx context.Context, job string) ([]string, error) {
	rows, err := s.pool.Query(ctx, `
SELECT l.object_id
  FROM entraprov.directory_links l
 WHERE l.job = $1 AND l.object_id IS NOT NULL AND l.state <> 'creating'
   AND (l.state <> 'deleted' OR l.deleted_at IS NULL OR l.deleted_at > now() - interval '`+deletedRetention+`')
   AND NOT EXISTS (SELECT 1 FROM entraprov.directory_users u WHERE u.job = $1 AND u.object_id = l.object_id)
 ORDER BY l.object_id`, job)
	if err != nil {
		return nil, fmt.Errorf("linked objects missing from the mirror of job %s: %w", job, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("linked objects missing from the mirror of job %s: %w", job, err)
	}
	return ids, nil
}

// DeleteDirectoryUsers removes mirror rows (users hard-deleted from the
// directory, delta "@removed" reason "deleted").
func (s *Store) DeleteDirectoryUsers(ctx context.Context, job string, objectIDs []string) error {
	if len(objectIDs) == 0 {
		return nil
	}
	err := s.write(ctx, func(q dbtx) error {
		_, err := q.Exec(ctx,
			`DELETE FROM entraprov.directory_users WHERE job = $1 AND object_id = ANY($2::text[])`, job, objectIDs)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete %d directory users of job %s: %w", len(objectIDs), job, err)
	}
	return nil
}

// ResetMirror empties a job's mirror before a full resync (first run or an
// expired delta link).
func (s *Store) ResetMirror(ctx context.Context, job string) error {
	err := s.write(ctx, func(q dbtx) error {
		_, err := q.Exec(ctx, `DELETE FROM entraprov.directory_users WHERE job = $1`, job)
		return err
	})
	if err != nil {
		return fmt.Errorf("reset directory mirror of job %s: %w", job, err)
	}
	return nil
}

// GetJobState returns the job's state, or a zero JobState (with Job set)
// when the job never ran.
func (s *Store) GetJobState(ctx context.Context, job string) (JobState, error) {
	st := JobState{Job: job}
	err := s.pool.QueryRow(ctx, `
SELECT coalesce(delta_link, ''), last_success_at, coalesce(last_run_id, 0), quarantined_until,
       coalesce(quarantine_reason, ''), consecutive_failures
  FROM entraprov.job_state WHERE job = $1`, job).Scan(
		&st.DeltaLink, &st.LastSuccessAt, &st.LastRunID, &st.QuarantinedUntil, &st.QuarantineReason,
		&st.ConsecutiveFailures)
	if errors.Is(err, pgx.ErrNoRows) {
		return JobState{Job: job}, nil
	}
	if err != nil {
		return JobState{}, fmt.Errorf("get state of job %s: %w", job, err)
	}
	return st, nil
}

// SaveJobState inserts or replaces the job's state.
func (s *Store) SaveJobState(ctx context.Context, st JobState) error {
	if st.Job == "" {
		return errors.New("save job state: empty job name")
	}
	if f, ok := fenceOf(ctx); ok && f.job == st.Job {
		return s.saveFencedJobState(ctx, st, f)
	}
	_, err := s.pool.Exec(ctx, `
INSERT INTO entraprov.job_state AS j
       (job, delta_link, last_success_at, last_run_id, quarantined_until, quarantine_reason, consecutive_failures)
VALUES ($1, nullif($2, ''), $3, nullif($4::bigint, 0), $5, nullif($6, ''), $7)
ON CONFLICT (job) DO UPDATE
   SET delta_link = excluded.delta_link,
       last_success_at = excluded.last_success_at,
       last_run_id = excluded.last_run_id,
       quarantined_until = excluded.quarantined_until,
       quarantine_reason = excluded.quarantine_reason,
       consecutive_failures = excluded.consecutive_failures,
       updated_at = now()`,
		st.Job, st.DeltaLink, st.LastSuccessAt, st.LastRunID, st.QuarantinedUntil, st.QuarantineReason,
		st.ConsecutiveFailures)
	if err != nil {
		return fmt.Errorf("save state of job %s: %w", st.Job, err)
	}
	return nil
}

// saveFencedJobState is SaveJobState for a lease holder: one UPDATE guarded
// by the fence (the row exists: LeaseJob wrote it). Not the transaction of
// Store.write: two of them holding the row FOR SHARE and both updating it
// would deadlock.
func (s *Store) saveFencedJobState(ctx context.Context, st JobState, f fence) error {
	tag, err := s.pool.Exec(ctx, `
UPDATE entraprov.job_state
   SET delta_link = nullif($2, ''), last_success_at = $3, last_run_id = nullif($4::bigint, 0),
       quarantined_until = $5, quarantine_reason = nullif($6, ''), consecutive_failures = $7,
       updated_at = now()
 WHERE job = $1 AND lease_fence = $8`,
		st.Job, st.DeltaLink, st.LastSuccessAt, st.LastRunID, st.QuarantinedUntil, st.QuarantineReason,
		st.ConsecutiveFailures, f.n)
	if err != nil {
		return fmt.Errorf("save state of job %s: %w", st.Job, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("save state of job %s: %w", st.Job, staleFence(st.Job, f.n, -1))
	}
	return nil
}

// lastByKey drops earlier duplicates (by key) keeping the last occurrence,
// because one INSERT … ON CONFLICT cannot touch the same row twice. The
// common no-duplicate case returns xs unchanged.
func lastByKey[T any](xs []T, key func(T) [2]string) []T {
	seen := make(map[[2]string]int, len(xs))
	dups := false
	for i, x := range xs {
		k := key(x)
		if _, ok := seen[k]; ok {
			dups = true
		}
		seen[k] = i
	}
	if !dups {
		return xs
	}
	out := make([]T, 0, len(seen))
	for i, x := range xs {
		if seen[key(x)] == i {
			out = append(out, x)
		}
	}
	return out
}
