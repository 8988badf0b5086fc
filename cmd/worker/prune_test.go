package main

import (
	"context"
	"testing"

	"github.com/entraprov/entraprov/internal/testdb"
)

// `worker history prune` deletes old runs with their operations, prints
// the counts, and refuses a missing or malformed age.
func TestHistoryPruneCommand(t *testing.T) {
	url := testdb.NewURL(t)
	db := "--database-url=" + url
	st := openStore(t, url)
	_, err := st.Pool().Exec(context.Background(), `
WITH r AS (
    INSERT INTO entraprov.sync_runs (job, trigger, mode, status, started_at, finished_at)
    SELECT 'nightly', 'schedule', 'apply', 'succeeded', now() - g * interval '100 days', now() - g * interval '100 days'
      FROM generate_series(0, 5) g
    RETURNING id
)
INSERT INTO entraprov.sync_operations (run_id, seq, external_id, action, status)
SELECT r.id, s, 'E' || s, 'update', 'succeeded' FROM r, generate_series(1, 10) s`)
	if err != nil {
		t.Fatal(err)
	}
	runCases(t, []cliCase{
		{name: "missing_age_is_usage", args: []string{"history", "prune", db}, code: exitUsage,
			contains: []string{"older-than"}},
		{name: "bad_age_is_usage", args: []string{"history", "prune", "--older-than", "soon", db}, code: exitUsage,
			contains: []string{"400d"}},
		{name: "age_under_the_retention_floor_is_usage", args: []string{"history", "prune", "--older-than", "1h", "--yes", db}, code: exitUsage,
			contains: []string{"shorter than 1d"}},
		{name: "no_terminal_wants_yes", args: []string{"history", "prune", "--older-than", "399d", db}, code: exitUsage,
			contains: []string{"--yes"}},
		// Runs at 0, 100, …, 500 days: 400 and 500 are older than 400d minus a bit.
		{name: "prunes_old_runs", args: []string{"history", "prune", "--older-than", "399d", "--chunk", "3", "--yes", db}, code: exitOK,
			contains: []string{"pruned 2 runs and 20 operations"}},
		{name: "second_prune_has_nothing", args: []string{"history", "prune", "--older-than", "399d", "-y", db}, code: exitOK,
			contains: []string{"pruned 0 runs and 0 operations"}},
	})
	var runs, ops int
	if err := st.Pool().QueryRow(context.Background(),
		`SELECT (SELECT count(*) FROM entraprov.sync_runs), (SELECT count(*) FROM entraprov.sync_operations)`).Scan(&runs, &ops); err != nil {
		t.Fatal(err)
	}
	if runs != 4 || ops != 40 {
		t.Fatalf("left %d runs and %d operations; want 4 and 40", runs, ops)
	}
}
