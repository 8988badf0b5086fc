package store

import (
	"context"
	"fmt"
	"strings"
)

// CountRowsOutsideGroups counts the rows of relation whose groups name a
// group id not in allowed (compared case-insensitively): the users a job
// with jobs[].allowed_groups fails at every run.
func (s *Store) CountRowsOutsideGroups(ctx context.Context, relation string, allowed []string) (int, error) {
	src, err := parseSource(relation)
	if err != nil {
		return 0, err
	}
	lower := make([]string, len(allowed))
	for i, g := range allowed {
		lower[i] = strings.ToLower(strings.TrimSpace(g))
	}
	var n int
	err = s.pool.QueryRow(ctx, `
SELECT count(*) FROM `+src.from(2)+` s
 WHERE EXISTS (SELECT 1 FROM unnest(s.groups::text[]) g
                WHERE btrim(g) <> '' AND NOT lower(btrim(g)) = ANY ($1::text[]))`, src.args(lower)...).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("source %s: count rows naming groups outside allowed_groups: %w", relation, err)
	}
	return n, nil
}
