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
