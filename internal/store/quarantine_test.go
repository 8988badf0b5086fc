package store_test

import (
	"context"
	"testing"

	"github.com/entraprov/entraprov/internal/store"
	"github.com/entraprov/entraprov/internal/testdb"
)

// RecentRunHealth counts as failed only what Graph refused or lost: a run
// whose one failure was a bad source row, never sent, is healthy for
// quarantine (an HR typo must not hold back the whole job).
func TestRecentRunHealthLeavesOutFailuresNeverSent(t *testing.T) {
	t.Parallel()
	st := testdb.New(t)
	ctx := context.Background()
	for _, counts := range []map[string]int{
		{"create": 3, "succeeded": 2, "failed": 1},                                             // older: one Graph refusal
		{"create": 1, "failed": 1, store.CountFailedUnsent: 1, "unchanged": 2000},              // a bad row only
		{"create": 5, "succeeded": 1, "failed": 4, store.CountFailedUnsent: 1, "unchanged": 9}, // newest: 3 refused + 1 bad row
	} {
		r := &store.Run{Job: "hr", Trigger: "manual", Mode: "apply"}
		if err := st.StartRun(ctx, r); err != nil {
			t.Fatal(err)
		}
		r.Status, r.Counts = store.RunPartial, store.CountsFromMap(counts)
		if err := st.FinishRun(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	got, err := st.RecentRunHealth(ctx, "hr", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("%d runs; want 3", len(got))
	}
	want := []struct{ succeeded, failed int }{{1, 3}, {0, 0}, {2, 1}} // newest first
	for i, w := range want {
		if got[i].Succeeded != w.succeeded || got[i].Failed != w.failed {
			t.Errorf("run %d: succeeded %d failed %d; want %d and %d", got[i].ID, got[i].Succeeded, got[i].Failed, w.succeeded, w.failed)
		}
	}
}
