package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ErrRekeyLost is returned by RekeyLink when the link to move is no longer
// under the old id (another run moved or removed it meanwhile).
var ErrRekeyLost = errors.New("the link to move is no longer under the old external_id")

// RekeyLink moves a job's link from external id from to external id to in
// one transaction: HR re-keyed the person, and the account stays linked
// (never a second link to one object). A "creating" marker left under the
// new id by a create that met the account's UPN is dropped first: it never
// got an object.
func (s *Store) RekeyLink(ctx context.Context, job, from, to string) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if f, ok := fenceOf(ctx); ok {
			// A run that lost its job lease moves no link (see Fenced).
			if err := holdFence(ctx, tx, f); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `
DELETE FROM entraprov.directory_links
 WHERE job = $1 AND external_id = $2 AND (state = 'creating' OR object_id IS NULL)`, job, to); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `
UPDATE entraprov.directory_links SET external_id = $3, updated_at = now()
 WHERE job = $1 AND external_id = $2`, job, from, to)
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return ErrRekeyLost
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("move link of job %s from external_id %q to %q: %w", job, from, to, err)
	}
	return nil
}

// IsUniqueViolation says whether err is PostgreSQL refusing a duplicate key
// (a second link to one object, a link under an id already taken).
func IsUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}

// IsOwnerConflict says whether err is PostgreSQL refusing a link to an
// object another job links (directory_links_owner_key, migration 009): the
// account has its one owner already.
func IsOwnerConflict(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == "directory_links_owner_key"
}

// OtherOwner names the link of another job than job to objectID: the job
// and the external_id it links the account under ("", "" when none).
func (s *Store) OtherOwner(ctx context.Context, job, objectID string) (owner, externalID string, err error) {
	err = s.pool.QueryRow(ctx, `
SELECT job, external_id FROM entraprov.directory_links
 WHERE object_id = $2 AND job <> $1
 ORDER BY job, external_id LIMIT 1`, job, objectID).Scan(&owner, &externalID)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", "", nil
	}
	if err != nil {
		return "", "", fmt.Errorf("look for another job's link to %s: %w", objectID, err)
	}
	return owner, externalID, nil
}

// SharedLink is a directory object linked by more than one job: each of
// them would enable, disable or delete it by its own source.
type SharedLink struct {
	ObjectID string
	// Links name the jobs and external ids, "job/external_id", sorted.
	Links []string
}

// SharedLinks lists the objects linked by more than one job (worker check).
// The planner never creates such a link any more (a job does not adopt an
// account another job links), and since migration 009 the database refuses
// one; those listed predate that (marked legacy_shared), and are resolved
// by the hand-over the README describes.
func (s *Store) SharedLinks(ctx context.Context) ([]SharedLink, error) {
	rows, err := s.pool.Query(ctx, `
SELECT object_id, array_agg(job || '/' || external_id ORDER BY job, external_id)
  FROM entraprov.directory_links
 WHERE object_id IS NOT NULL
 GROUP BY object_id
HAVING count(DISTINCT job) > 1
 ORDER BY object_id`)
	if err != nil {
		return nil, fmt.Errorf("objects linked by several jobs: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (SharedLink, error) {
		var l SharedLink
		err := row.Scan(&l.ObjectID, &l.Links)
		return l, err
	})
	if err != nil {
		return nil, fmt.Errorf("objects linked by several jobs: %w", err)
	}
	return out, nil
}
