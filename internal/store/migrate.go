package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/tern/v2/migrate"

	"github.com/entraprov/entraprov/migrations"
)

// versionTable is tern's one-row table holding the schema version. It lives
// in our schema so dropping the schema drops everything of ours.
const versionTable = "entraprov.schema_version"

// ternLockNum is the advisory lock key tern's migrate package takes
// (migrate.go, lockNum); sharing it also excludes a concurrent `tern` CLI.
const ternLockNum = int64(9628173550095224)

// migrationFS is the migration set compiled into this binary.
var migrationFS fs.FS = migrations.FS

// Migrate applies pending migrations and returns how many it applied (0: the
// schema was up to date). tern serialises concurrent migrators with its own
// advisory lock and applies each file in a transaction, so two workers
// starting at once cannot both migrate. A database whose version is higher
// than this binary knows is refused with ErrSchemaTooNew.
func (s *Store) Migrate(ctx context.Context) (applied int, err error) {
	err = s.withMigrator(ctx, func(m *migrate.Migrator) error {
		latest := len(m.Migrations)
		m.OnStart = func(int32, string, string, string) { applied++ }
		cur, err := m.GetCurrentVersion(ctx)
		if err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		if int(cur) > latest {
			return tooNew(int(cur), latest)
		}
		err = m.Migrate(ctx)
		var bad migrate.BadVersionError
		if errors.As(err, &bad) {
			// A newer worker migrated between our read and tern's lock.
			if cur, verr := m.GetCurrentVersion(ctx); verr == nil && int(cur) > latest {
				return tooNew(int(cur), latest)
			}
		}
		var pgErr migrate.MigrationPgError
		if errors.As(err, &pgErr) {
			return fmt.Errorf("migration %s failed: %s (%s)", pgErr.MigrationName, pgErr.Message, pgErr.Code)
		}
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		return nil
	})
	return applied, err
}

// SchemaVersion reports the database's schema version and the latest this
// binary knows. A database never migrated reports current 0.
func (s *Store) SchemaVersion(ctx context.Context) (current, latest int, err error) {
	latest, err = latestVersion()
	if err != nil {
		return 0, 0, err
	}
	// Read without tern so a status check never creates the version table.
	var exists bool
	err = s.pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, versionTable).Scan(&exists)
	if err != nil {
		return 0, 0, fmt.Errorf("read schema version: %w", err)
	}
	if !exists {
		return 0, latest, nil
	}
	var v int32
	err = s.pool.QueryRow(ctx, `SELECT version FROM `+versionTable).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, latest, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("read schema version: %w", err)
	}
	return int(v), latest, nil
}

// CheckSchema returns nil when the database is exactly at this binary's
// schema version, ErrSchemaOutdated (migrate) or ErrSchemaTooNew (upgrade
// the worker) otherwise.
func (s *Store) CheckSchema(ctx context.Context) error {
	cur, latest, err := s.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	switch {
	case cur > latest:
		return tooNew(cur, latest)
	case cur < latest:
		return fmt.Errorf("%w: version %d, this worker needs %d; run `worker migrate up`",
			ErrSchemaOutdated, cur, latest)
	}
	return nil
}

func tooNew(cur, latest int) error {
	return fmt.Errorf("%w: the database is at schema version %d but this worker knows only up to %d; "+
		"upgrade the worker binary (never downgrade a migrated database)", ErrSchemaTooNew, cur, latest)
}

func latestVersion() (int, error) {
	names, err := migrate.FindMigrations(migrationFS)
	if err != nil {
		return 0, fmt.Errorf("read embedded migrations: %w", err)
	}
	return len(names), nil
}

// withMigrator runs fn with a tern migrator on a dedicated connection (not a
// pooled one): if a migration is cancelled half-way, closing the connection
// is what guarantees tern's session advisory lock is released.
func (s *Store) withMigrator(ctx context.Context, fn func(*migrate.Migrator) error) error {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("connect for migration: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// Hold tern's own advisory lock for the whole check-and-migrate (advisory
	// locks nest within a session, so tern's lock/unlock inside still work):
	// creating the schema and tern's version table is then race-free too.
	// Closing the connection releases it.
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, ternLockNum); err != nil {
		return fmt.Errorf("wait for the migration lock: %w", err)
	}
	// tern creates its version table in our schema, so the schema comes
	// first. Only when missing: CREATE SCHEMA IF NOT EXISTS still demands
	// CREATE on the database, which a least-privilege role owning a schema
	// made by a DBA does not have.
	var haveSchema bool
	if err := conn.QueryRow(ctx, `SELECT to_regnamespace('entraprov') IS NOT NULL`).Scan(&haveSchema); err != nil {
		return fmt.Errorf("look for schema entraprov: %w", err)
	}
	if !haveSchema {
		if _, err := conn.Exec(ctx, `CREATE SCHEMA entraprov`); err != nil {
			return fmt.Errorf("create schema entraprov (or have a DBA create it, owned by this role): %w", err)
		}
	}
	m, err := migrate.NewMigrator(ctx, conn, versionTable)
	if err != nil {
		return fmt.Errorf("prepare migrations: %w", err)
	}
	if err := m.LoadMigrations(migrationFS); err != nil {
		return fmt.Errorf("load embedded migrations: %w", err)
	}
	return fn(m)
}

// MigrationNames lists the embedded migration files in version order
// (version n is MigrationNames()[n-1]).
func MigrationNames() ([]string, error) {
	names, err := migrate.FindMigrations(migrationFS)
	if err != nil {
		return nil, fmt.Errorf("read embedded migrations: %w", err)
	}
	return names, nil
}
