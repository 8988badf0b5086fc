package store_test

import (
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/store"
	"github.com/entraprov/entraprov/internal/testdb"
)

// A skip records why an occurrence was not run without taking it: another
// worker may still run that occurrence. The catch-up reads the latest
// occurrence recorded, skips included.
func TestRecordSkippedAndLastScheduledFor(t *testing.T) {
	t.Parallel()
	st := testdb.New(t)
	ctx := ctxT(t)

	if _, ok, err := st.LastScheduledFor(ctx, "hr"); err != nil || ok {
		t.Fatalf("LastScheduledFor on a new job = ok %v, %v; want none", ok, err)
	}
	at := time.Date(2026, 3, 10, 2, 0, 0, 0, time.UTC)
	skip := store.Run{Job: "hr", Trigger: "schedule", ScheduledFor: &at, ErrorSummary: "the previous run is still in progress"}
	if err := st.RecordSkipped(ctx, &skip); err != nil {
		t.Fatal(err)
	}
	if skip.ID == 0 || skip.Status != store.RunSkipped || skip.FinishedAt == nil || skip.Mode != "apply" {
		t.Errorf("skipped run = %+v", skip)
	}
	run := store.Run{Job: "hr", Trigger: "schedule", Mode: "apply", ScheduledFor: &at}
	if err := st.StartRun(ctx, &run); err != nil {
		t.Fatalf("a skip took the occurrence: %v", err)
	}
	later := at.Add(24 * time.Hour)
	skip2 := store.Run{Job: "hr", Trigger: "schedule", ScheduledFor: &later, ErrorSummary: "busy"}
	if err := st.RecordSkipped(ctx, &skip2); err != nil {
		t.Fatal(err)
	}
	last, ok, err := st.LastScheduledFor(ctx, "hr")
	if err != nil || !ok || !last.Equal(later) {
		t.Errorf("LastScheduledFor = %v, %v, %v; want %v", last, ok, err, later)
	}
	if err := st.RecordSkipped(ctx, &store.Run{Job: "hr", Trigger: "schedule"}); err == nil {
		t.Error("a skip without a scheduled time was recorded")
	}
}

// At a stop that timed out, the worker closes its own running runs even
// though it still holds their job lock; other workers' runs stay running.
func TestInterruptOwnRunsTouchesOnlyThisProcess(t *testing.T) {
	t.Parallel()
	st := testdb.New(t)
	ctx := ctxT(t)
	mine := store.Run{Job: "a", Trigger: "schedule", Mode: "apply"}
	if err := st.StartRun(ctx, &mine); err != nil {
		t.Fatal(err)
	}
	exec(t, st, `INSERT INTO entraprov.sync_operations (run_id, seq, external_id, action, status) VALUES ($1, 1, 'E1', 'create', 'pending')`, mine.ID)
	other := store.Run{Job: "b", Trigger: "schedule", Mode: "apply", Host: "elsewhere", PID: 4242}
	if err := st.StartRun(ctx, &other); err != nil {
		t.Fatal(err)
	}
	n, err := st.InterruptOwnRuns(ctx, "interrupted: stop timed out")
	if err != nil || n != 1 {
		t.Fatalf("InterruptOwnRuns = %d, %v; want 1", n, err)
	}
	got, err := st.GetRun(ctx, mine.ID)
	if err != nil || got.Status != store.RunInterrupted || got.ErrorSummary != "interrupted: stop timed out" {
		t.Errorf("own run = %+v, %v", got, err)
	}
	ops, err := st.ListOperations(ctx, mine.ID, "")
	if err != nil || len(ops) != 1 || ops[0].Status != store.OpInterrupted {
		t.Errorf("own run's pending operation = %+v, %v; want interrupted", ops, err)
	}
	if got, _ := st.GetRun(ctx, other.ID); got.Status != store.RunRunning {
		t.Errorf("another worker's run became %s", got.Status)
	}
}
