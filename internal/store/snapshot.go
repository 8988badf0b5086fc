package store

import (
	"context"
	"fmt"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"
)

type snapshotKey struct{}

// WithSnapshot returns a context under which StreamSource reads the
// database as exported by ExportSnapshot (id), so several reads of a
// source agree on what it held.
func WithSnapshot(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, snapshotKey{}, id)
}

func snapshotOf(ctx context.Context) string {
	id, _ := ctx.Value(snapshotKey{}).(string)
	return id
}

// snapshotID is the shape of pg_export_snapshot()'s answer
// ("00000003-0000001B-1"); SET TRANSACTION SNAPSHOT takes no parameter, so
// anything else is refused rather than spliced into SQL.
var snapshotID = regexp.MustCompile(`^[0-9A-Fa-f]+(-[0-9A-Fa-f]+)+$`)

// ExportSnapshot opens a REPEATABLE READ transaction on a connection of its
// own and exports its snapshot (pg_export_snapshot). The snapshot can be
// imported (WithSnapshot) until release is called; release is idempotent.
// It costs one pooled connection, idle in a read-only transaction, for as
// long as it is held: the engine holds it for the budget's planning read
// and pass 1, whose own stream holds the same snapshot anyway.
func (s *Store) ExportSnapshot(ctx context.Context) (id string, release func(), err error) {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return "", nil, fmt.Errorf("export snapshot: %w", err)
	}
	if err := tx.QueryRow(ctx, `SELECT pg_export_snapshot()`).Scan(&id); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return "", nil, fmt.Errorf("export snapshot: %w", err)
	}
	done := false
	release = func() {
		if done {
			return
		}
		done = true
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tx.Rollback(rctx) // read-only: nothing to keep; a dead connection is dropped by the pool
	}
	return id, release, nil
}

// beginSourceTx starts the read-only transaction of a source read, in the
// snapshot ctx carries if any.
func (s *Store) beginSourceTx(ctx context.Context) (pgx.Tx, error) {
	snap := snapshotOf(ctx)
	opts := pgx.TxOptions{AccessMode: pgx.ReadOnly}
	if snap != "" {
		if !snapshotID.MatchString(snap) {
			return nil, fmt.Errorf("snapshot id %q is not one pg_export_snapshot returns", snap)
		}
		opts.IsoLevel = pgx.RepeatableRead // SET TRANSACTION SNAPSHOT requires it
	}
	tx, err := s.pool.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	if snap != "" {
		if _, err := tx.Exec(ctx, `SET TRANSACTION SNAPSHOT '`+snap+`'`); err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
			return nil, fmt.Errorf("import snapshot %s: %w", snap, err)
		}
	}
	return tx, nil
}
