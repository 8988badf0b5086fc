package daemon

import (
	"context"
	"log/slog"
	"time"

	"github.com/entraprov/entraprov/internal/store"
)

// retentionLoop prunes the history older than retention after first, then
// every `every`, until ctx ends (the daemon: 10 minutes after start, then
// daily). Errors are logged: the next pass retries. Several daemons on one
// database may prune at the same time; the deletes are idempotent.
func retentionLoop(ctx context.Context, st *store.Store, retention, first, every time.Duration, log *slog.Logger) {
	if retention <= 0 {
		return
	}
	t := time.NewTimer(first)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cutoff := time.Now().Add(-retention)
		started := time.Now()
		res, err := st.PruneHistory(ctx, cutoff, 0, nil)
		if err != nil && ctx.Err() == nil {
			log.Error("history prune failed; retrying at the next pass", "err", err,
				"runs_deleted", res.Runs, "operations_deleted", res.Operations)
		} else if res.Runs > 0 {
			log.Info("history pruned", "older_than", cutoff, "runs", res.Runs, "operations", res.Operations,
				"chunks", res.Chunks, "duration", time.Since(started).Round(time.Millisecond))
		}
		t.Reset(every)
	}
}
