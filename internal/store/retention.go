package store

import (
	"context"
	"fmt"
	"time"
)

// PruneResult counts what PruneHistory deleted.
type PruneResult struct {
	Runs       int64
	Operations int64
	// Chunks is the number of DELETE statements (each its own transaction).
	Chunks int
}

// defaultPruneChunk bounds the operation rows one DELETE removes: about a
// second of work, so the row locks and the WAL burst of one transaction stay
// small and autovacuum can follow.
const defaultPruneChunk = 50_000

// prunePerPass is how many old runs one pass of PruneHistory picks up.
const prunePerPass = 100

// PruneHistory deletes the runs that started before cutoff (never a run
// still running) and their operations. It deletes in chunks of at most
// chunk operation rows (chunk <= 0: 50,000), each in its own short
// transaction, operations first and then the emptied runs, so a run in
// progress — which only inserts rows of newer runs — is never blocked for
// longer than one chunk and a cancelled prune leaves consistent history (a
// run keeps its remaining operations until the next prune). progress, when
// not nil, is called after each chunk with the totals so far.
func (s *Store) PruneHistory(ctx context.Context, cutoff time.Time, chunk int, progress func(PruneResult)) (PruneResult, error) {
	if chunk <= 0 {
		chunk = defaultPruneChunk
	}
	var res PruneResult
	for {
		var ids []int64
		err := s.pool.QueryRow(ctx, `
SELECT coalesce(array_agg(id ORDER BY id), '{}')
  FROM (SELECT id FROM entraprov.sync_runs
         WHERE started_at < $1 AND status <> 'running'
         ORDER BY started_at, id LIMIT $2) old`, cutoff, prunePerPass).Scan(&ids)
		if err != nil {
			return res, fmt.Errorf("prune history: find runs started before %s: %w", cutoff.Format(time.RFC3339), err)
		}
		if len(ids) == 0 {
			return res, nil
		}
		for {
			// The primary key (run_id, seq) serves both the inner scan and
			// the delete.
			tag, err := s.pool.Exec(ctx, `
DELETE FROM entraprov.sync_operations o
 USING (SELECT run_id, seq FROM entraprov.sync_operations
         WHERE run_id = ANY($1) LIMIT $2) v
 WHERE o.run_id = v.run_id AND o.seq = v.seq`, ids, chunk)
			if err != nil {
				return res, fmt.Errorf("prune history: delete operations of runs %d..%d: %w", ids[0], ids[len(ids)-1], err)
			}
			res.Operations += tag.RowsAffected()
			res.Chunks++
			if progress != nil {
				progress(res)
			}
			if tag.RowsAffected() < int64(chunk) {
				break
			}
		}
		tag, err := s.pool.Exec(ctx, `DELETE FROM entraprov.sync_runs WHERE id = ANY($1) AND status <> 'running'`, ids)
		if err != nil {
			return res, fmt.Errorf("prune history: delete runs %d..%d: %w", ids[0], ids[len(ids)-1], err)
		}
		res.Runs += tag.RowsAffected()
		res.Chunks++
		if progress != nil {
			progress(res)
		}
	}
}
