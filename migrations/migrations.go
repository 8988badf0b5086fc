// Package migrations holds entraprov's numbered SQL migrations in the format
// of jackc/tern (`NNN_name.sql`, with `---- create above / drop below ----`
// between the up and down parts), embedded into the binary.
//
// It owns only the SQL. Applying it (locking, version table, refusing a
// database newer than the binary) is internal/store's job.
package migrations

import "embed"

// FS holds the migration files; tern applies them in numeric order.
//
//go:embed *.sql
var FS embed.FS
