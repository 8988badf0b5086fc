package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/profile"
	"github.com/entraprov/entraprov/internal/store"
	"github.com/entraprov/entraprov/internal/testdb"
)

// terminateLockSession ends the session holding job's advisory lock, as
// idle_session_timeout, a TCP reset or an operator would, and waits until
// it is gone (its locks with it).
func terminateLockSession(t *testing.T, st *store.Store, job string) {
	t.Helper()
	var n int
	err := st.Pool().QueryRow(ctxT(t), `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 10000)) FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND objid = hashtext($1)::oid AND objsubid = 2
			AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`, job).Scan(&n)
	if err != nil || n != 1 {
		t.Fatalf("terminate the lock session of %s: %d sessions, %v; want 1", job, n, err)
	}
}

// TestStaleLeaseHolderIsFenced: once a holder's lock session dies and
// another worker takes the job, every write the stale holder makes on the
// job's behalf is refused with ErrJobLockLost and leaves nothing behind,
// its watchdog cancels its context with that cause, and its release leaves
// the new holder's lease alone. The new holder knows it took over a job
// that was never released, and its own writes go through.
func TestStaleLeaseHolderIsFenced(t *testing.T) {
	t.Parallel()
	url := testdb.NewURL(t)
	ctx := ctxT(t)
	a, b := openT(t, url), openT(t, url)

	la, ok, err := a.LeaseJob(ctx, "hr")
	if ok {
		defer la.Release() // idempotent; a failed test must not hang Close
	}
	if err != nil || !ok || la.Fence != 1 || la.TookOver {
		t.Fatalf("first lease = %+v, %v, %v; want fence 1, not a takeover", la, ok, err)
	}
	actx := store.Fenced(ctx, la)
	if err := a.UpsertLinks(actx, []store.Link{{Job: "hr", ExternalID: "E1", ObjectID: "o1", State: store.LinkActive}}); err != nil {
		t.Fatalf("holder's write: %v", err)
	}
	run := &store.Run{Job: "hr", Trigger: "manual", Mode: "apply"}
	if err := a.StartRun(ctx, run); err != nil {
		t.Fatal(err)
	}
	if err := a.RecordOperations(actx, []store.Operation{{RunID: run.ID, Seq: 1, ExternalID: "E1",
		Action: "update", Status: store.OpPending}}); err != nil {
		t.Fatalf("holder's write: %v", err)
	}
	wctx, stop := la.Watch(ctx)
	defer stop()
	if _, ok, err := b.LeaseJob(ctx, "hr"); ok || err != nil {
		t.Fatalf("second lease while held = %v, %v; want false, nil", ok, err)
	}

	terminateLockSession(t, b, "hr")
	lb, ok, err := b.LeaseJob(ctx, "hr")
	if ok {
		defer lb.Release()
	}
	if err != nil || !ok || lb.Fence != 2 || !lb.TookOver {
		t.Fatalf("lease after the holder's session died = %+v, %v, %v; want fence 2, a takeover", lb, ok, err)
	}

	writes := []struct {
		name  string
		write func(context.Context) error
	}{
		{"UpsertLinks", func(ctx context.Context) error {
			return a.UpsertLinks(ctx, []store.Link{{Job: "hr", ExternalID: "E2", ObjectID: "o2", State: store.LinkActive}})
		}},
		{"RecordOperations", func(ctx context.Context) error {
			return a.RecordOperations(ctx, []store.Operation{{RunID: run.ID, Seq: 2, ExternalID: "E2",
				Action: "create", Status: store.OpPending}})
		}},
		{"CompleteOperations", func(ctx context.Context) error {
			return a.CompleteOperations(ctx, []store.Operation{{RunID: run.ID, Seq: 1, Status: store.OpSucceeded}})
		}},
		{"SaveJobState", func(ctx context.Context) error {
			return a.SaveJobState(ctx, store.JobState{Job: "hr", DeltaLink: "stale", LastRunID: run.ID})
		}},
		{"UpsertDirectoryUsers", func(ctx context.Context) error {
			return a.UpsertDirectoryUsers(ctx, "hr", []store.DirectoryUser{{Attrs: profile.Of(profile.UserPrincipalName, "u2@x"), ObjectID: "o2"}})
		}},
		{"DeleteDirectoryUsers", func(ctx context.Context) error {
			return a.DeleteDirectoryUsers(ctx, "hr", []string{"o1"})
		}},
		{"ResetMirror", func(ctx context.Context) error { return a.ResetMirror(ctx, "hr") }},
		{"SaveUserBackoffs", func(ctx context.Context) error {
			now := time.Now()
			return a.SaveUserBackoffs(ctx, []store.UserBackoff{{Job: "hr", ExternalID: "E1", DesiredHash: "h",
				Action: "update", Failures: 1, FirstFailedAt: now, LastFailedAt: now, NextAttemptAt: now}})
		}},
		{"DeleteUserBackoffs", func(ctx context.Context) error { return a.DeleteUserBackoffs(ctx, "hr", []string{"E1"}) }},
	}
	for _, w := range writes {
		if err := w.write(actx); !errors.Is(err, store.ErrJobLockLost) {
			t.Errorf("stale holder's %s = %v; want ErrJobLockLost", w.name, err)
		}
	}
	if _, err := a.GetLink(ctx, "hr", "E2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("link written by the stale holder: %v; want none", err)
	}
	if ops, err := a.ListOperations(ctx, run.ID, ""); err != nil || len(ops) != 1 || ops[0].Status != store.OpPending {
		t.Errorf("stale holder's operations = %+v, %v; want the one recorded while it held the job, still pending", ops, err)
	}
	if st, err := a.GetJobState(ctx, "hr"); err != nil || st.DeltaLink == "stale" {
		t.Errorf("job state after the stale save = %+v, %v; want it untouched", st, err)
	}

	select {
	case <-wctx.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the stale holder's watchdog never cancelled its context")
	}
	if cause := context.Cause(wctx); !errors.Is(cause, store.ErrJobLockLost) {
		t.Fatalf("watchdog cause = %v; want ErrJobLockLost", cause)
	}
	if err := stop(); !errors.Is(err, store.ErrJobLockLost) {
		t.Fatalf("stop() = %v; want ErrJobLockLost", err)
	}
	if err := la.Check(ctx); !errors.Is(err, store.ErrJobLockLost) {
		t.Fatalf("stale Check = %v; want ErrJobLockLost", err)
	}
	la.Release()

	bctx := store.Fenced(ctx, lb)
	if err := lb.Check(ctx); err != nil {
		t.Fatalf("new holder's Check: %v", err)
	}
	if err := b.UpsertLinks(bctx, []store.Link{{Job: "hr", ExternalID: "E3", ObjectID: "o3", State: store.LinkActive}}); err != nil {
		t.Fatalf("new holder's write: %v", err)
	}
	if err := b.SaveJobState(bctx, store.JobState{Job: "hr", DeltaLink: "fresh"}); err != nil {
		t.Fatalf("new holder's job state: %v", err)
	}
	lb.Release()
	// A clean release: the next holder has nobody to wait for.
	lc, ok, err := a.LeaseJob(ctx, "hr")
	if err != nil || !ok || lc.Fence != 3 || lc.TookOver {
		t.Fatalf("lease after a clean release = %+v, %v, %v; want fence 3, not a takeover", lc, ok, err)
	}
	lc.Release()
	if st, err := a.GetJobState(ctx, "hr"); err != nil || st.DeltaLink != "fresh" {
		t.Fatalf("job state = %+v, %v; want the new holder's", st, err)
	}
}
