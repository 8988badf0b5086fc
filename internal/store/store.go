// Package store is entraprov's PostgreSQL layer (pgx/v5): it applies the
// embedded migrations, streams a job's source relation joined with its links
// and directory mirror, keeps links, mirror and job state, and records the
// run history (sync_runs, sync_operations).
//
// It owns every SQL statement of the worker and the meaning of NULL in the
// schema ("" in Go). It must not make decisions: what to do with a user is
// internal/sync's job, talking to Graph is internal/directory's.
//
//	st, err := store.Open(ctx, databaseURL)
//	if err != nil { ... }
//	defer st.Close()
//	if err := st.CheckSchema(ctx); err != nil { ... } // "run `worker migrate up`"
//	err = st.StreamSource(ctx, "nightly", "hr.entra_users", func(r store.SourceRow) error {
//		... // plan r
//		return nil
//	})
package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Errors callers branch on (errors.Is).
var (
	// ErrNotFound: the row asked for does not exist.
	ErrNotFound = errors.New("not found")
	// ErrOccurrenceTaken: another run already serves this (job, scheduled_for).
	ErrOccurrenceTaken = errors.New("scheduled occurrence already taken by another run")
	// ErrSchemaTooNew: the database was migrated by a newer worker.
	ErrSchemaTooNew = errors.New("database schema is newer than this worker")
	// ErrSchemaOutdated: migrations are pending.
	ErrSchemaOutdated = errors.New("database schema is not up to date")
)

// defaultMaxConns leaves room for a job lock connection, the source stream
// and concurrent history writes per job; pgxpool's own default (4 on small
// machines) starves a worker running two jobs.
const defaultMaxConns = 10

// Store is the worker's database handle. It is safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool
}

// Option adjusts Open.
type Option func(*pgxpool.Config)

// WithMaxConns bounds the connection pool (config database.max_conns);
// n <= 0 keeps the default.
func WithMaxConns(n int32) Option {
	return func(c *pgxpool.Config) {
		if n > 0 {
			c.MaxConns = n
		}
	}
}

// Open connects to databaseURL (postgres://… or key=value DSN) and checks the
// connection. It does not migrate.
func Open(ctx context.Context, databaseURL string, opts ...Option) (*Store, error) {
	if databaseURL == "" {
		return nil, errors.New("open database: no database URL (set database.url, ENTRAPROV_DATABASE_URL or DATABASE_URL)")
	}
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		// pgx's parse errors may echo the URL, password included: keep them out.
		return nil, errors.New("open database: the database URL is not a valid PostgreSQL connection string")
	}
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = "entraprov-worker"
	}
	// JIT compiling the wide source stream costs more (0.65 s measured) than
	// the whole query without it; the worker runs no analytics that would
	// gain from it.
	if _, set := cfg.ConnConfig.RuntimeParams["jit"]; !set {
		cfg.ConnConfig.RuntimeParams["jit"] = "off"
	}
	if !strings.Contains(databaseURL, "pool_max_conns") && cfg.MaxConns < defaultMaxConns {
		cfg.MaxConns = defaultMaxConns
	}
	for _, o := range opts {
		o(cfg)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", describe(cfg), err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to database %s: %w", describe(cfg), err)
	}
	return &Store{pool: pool}, nil
}

// describe names the server without the password, for error messages.
func describe(cfg *pgxpool.Config) string {
	c := cfg.ConnConfig
	return fmt.Sprintf("%s@%s:%d/%s", c.User, c.Host, c.Port, c.Database)
}

// Close closes every connection of the pool.
func (s *Store) Close() { s.pool.Close() }

// Pool exposes the pgx pool for callers that need raw SQL (tests, checks).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// hostname is recorded in sync_runs; computed once.
var hostname = func() string {
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	return h
}()
