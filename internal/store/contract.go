package store

import (
	"context"
	"fmt"
)

// DuplicateID is an external_id the source holds more than once.
type DuplicateID struct {
	ExternalID string
	Rows       int
}

// SourceDuplicates is the source relation's breach of its key contract (one
// row per external_id), for `worker check`.
type SourceDuplicates struct {
	IDs      int           // external_ids held more than once
	Rows     int           // source rows carrying them
	Examples []DuplicateID // the first few, most repeated first
}

// FindSourceDuplicates counts the external_ids relation holds more than
// once and returns up to examples of them. It reads the whole relation
// once (a hash aggregate; about what one run's stream costs, without the
// joins).
func (s *Store) FindSourceDuplicates(ctx context.Context, relation string, examples int) (SourceDuplicates, error) {
	src, err := parseSource(relation)
	if err != nil {
		return SourceDuplicates{}, err
	}
	rows, err := s.pool.Query(ctx, `
WITH d AS (
  SELECT external_id::text AS external_id, count(*) AS n
    FROM `+src.from(2)+` s
   WHERE external_id IS NOT NULL
   GROUP BY 1 HAVING count(*) > 1
)
SELECT external_id, n, count(*) OVER (), sum(n) OVER ()
  FROM d
 ORDER BY n DESC, external_id
 LIMIT $1`, src.args(examples)...)
	if err != nil {
		return SourceDuplicates{}, fmt.Errorf("source %s: look for duplicate external_id: %w", relation, err)
	}
	defer rows.Close()
	var out SourceDuplicates
	for rows.Next() {
		var d DuplicateID
		var ids, total int64
		if err := rows.Scan(&d.ExternalID, &d.Rows, &ids, &total); err != nil {
			return SourceDuplicates{}, fmt.Errorf("source %s: look for duplicate external_id: %w", relation, err)
		}
		out.IDs, out.Rows = int(ids), int(total)
		out.Examples = append(out.Examples, d)
	}
	if err := rows.Err(); err != nil {
		return SourceDuplicates{}, fmt.Errorf("source %s: look for duplicate external_id: %w", relation, err)
	}
	return out, nil
}
