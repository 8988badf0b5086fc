package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// JobNames returns the names of the jobs the database knows, from their
// runs and their state, sorted: what a job name given without a
// configuration file is checked against.
func (s *Store) JobNames(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, `
SELECT job FROM entraprov.job_state
UNION
SELECT DISTINCT job FROM entraprov.sync_runs
ORDER BY 1`)
	if err != nil {
		return nil, fmt.Errorf("list job names: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list job names: %w", err)
	}
	return names, nil
}
