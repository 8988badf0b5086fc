package store_test

import (
	"context"
	"errors"
	"fmt"
	neturl "net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/entraprov/entraprov/internal/profile"
	"github.com/entraprov/entraprov/internal/store"
	"github.com/entraprov/entraprov/internal/testdb"
)

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// exec and openT are internal/testdb's Exec and Open under the short names
// this package's tests use.
var (
	exec  = testdb.Exec
	openT = testdb.Open
)

// A second Migrate applies nothing and the version matches the binary.
func TestMigrateIsIdempotent(t *testing.T) {
	t.Parallel()
	st := testdb.New(t)
	ctx := ctxT(t)
	n, err := st.Migrate(ctx)
	if err != nil || n != 0 {
		t.Fatalf("Migrate on a migrated database = %d, %v; want 0, nil", n, err)
	}
	cur, latest, err := st.SchemaVersion(ctx)
	if err != nil || cur != latest || latest < 1 {
		t.Fatalf("SchemaVersion = %d, %d, %v; want equal and >= 1", cur, latest, err)
	}
	if err := st.CheckSchema(ctx); err != nil {
		t.Fatalf("CheckSchema: %v", err)
	}
}

// Two workers migrating an empty database at once: the migrations are
// applied exactly once in total and neither fails.
func TestMigrateConcurrentFromEmpty(t *testing.T) {
	t.Parallel()
	url := testdb.NewURL(t)
	ctx := ctxT(t)
	a := openT(t, url)
	exec(t, a, `DROP SCHEMA entraprov CASCADE`)
	cur, latest, err := a.SchemaVersion(ctx)
	if err != nil || cur != 0 {
		t.Fatalf("SchemaVersion after drop = %d, %v; want 0", cur, err)
	}
	if err := a.CheckSchema(ctx); !errors.Is(err, store.ErrSchemaOutdated) ||
		!strings.Contains(err.Error(), "worker migrate up") {
		t.Fatalf("CheckSchema on empty database = %v; want ErrSchemaOutdated naming `worker migrate up`", err)
	}

	var wg sync.WaitGroup
	applied := make([]int, 3)
	errs := make([]error, 3)
	for i := range applied {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := store.Open(ctx, url)
			if err != nil {
				errs[i] = err
				return
			}
			defer s.Close()
			applied[i], errs[i] = s.Migrate(ctx)
		}()
	}
	wg.Wait()
	total := 0
	for i := range applied {
		if errs[i] != nil {
			t.Fatalf("migrator %d: %v", i, errs[i])
		}
		total += applied[i]
	}
	if total != latest {
		t.Fatalf("migrations applied in total = %d (%v); want %d", total, applied, latest)
	}
	if err := a.CheckSchema(ctx); err != nil {
		t.Fatalf("CheckSchema after concurrent migrate: %v", err)
	}
}

// A database migrated by a newer worker is never touched by an older one.
func TestMigrateRefusesNewerSchema(t *testing.T) {
	t.Parallel()
	st := testdb.New(t)
	ctx := ctxT(t)
	exec(t, st, `UPDATE entraprov.schema_version SET version = 999`)
	n, err := st.Migrate(ctx)
	if !errors.Is(err, store.ErrSchemaTooNew) || n != 0 {
		t.Fatalf("Migrate = %d, %v; want 0, ErrSchemaTooNew", n, err)
	}
	if !strings.Contains(err.Error(), "999") || !strings.Contains(err.Error(), "upgrade the worker") {
		t.Fatalf("message %q should name the version and say to upgrade the worker", err)
	}
	if err := st.CheckSchema(ctx); !errors.Is(err, store.ErrSchemaTooNew) {
		t.Fatalf("CheckSchema = %v; want ErrSchemaTooNew", err)
	}
	var v int
	if err := st.Pool().QueryRow(ctx, `SELECT version FROM entraprov.schema_version`).Scan(&v); err != nil || v != 999 {
		t.Fatalf("version after refused migrate = %d, %v; want untouched 999", v, err)
	}
}

// The schema's constraints reject what the code must never write.
func TestConstraintsRejectBadRows(t *testing.T) {
	t.Parallel()
	st := testdb.New(t)
	ctx := ctxT(t)
	exec(t, st, `INSERT INTO entraprov.sync_runs (id, job, trigger, mode, status) VALUES (1, 'j', 'manual', 'apply', 'running')`)
	exec(t, st, `INSERT INTO entraprov.directory_links (job, external_id, object_id, state) VALUES ('j', 'E1', 'o1', 'active')`)

	tests := []struct {
		name string
		sql  string
		code string // SQLSTATE
	}{
		{"run_status_outside_enum", `INSERT INTO entraprov.sync_runs (job, trigger, mode, status, finished_at) VALUES ('j', 'manual', 'apply', 'done', now())`, "23514"},
		{"run_trigger_outside_enum", `INSERT INTO entraprov.sync_runs (job, trigger, mode, status) VALUES ('j', 'cron', 'apply', 'running')`, "23514"},
		{"run_mode_outside_enum", `INSERT INTO entraprov.sync_runs (job, trigger, mode, status) VALUES ('j', 'manual', 'dry', 'running')`, "23514"},
		{"finished_run_without_finished_at", `INSERT INTO entraprov.sync_runs (job, trigger, mode, status) VALUES ('j', 'manual', 'apply', 'succeeded')`, "23514"},
		{"operation_action_outside_enum", `INSERT INTO entraprov.sync_operations (run_id, seq, external_id, action, status) VALUES (1, 1, 'E1', 'purge', 'pending')`, "23514"},
		{"operation_status_outside_enum", `INSERT INTO entraprov.sync_operations (run_id, seq, external_id, action, status) VALUES (1, 1, 'E1', 'create', 'ok')`, "23514"},
		{"operation_of_unknown_run", `INSERT INTO entraprov.sync_operations (run_id, seq, external_id, action, status) VALUES (42, 1, 'E1', 'create', 'pending')`, "23503"},
		{"second_link_for_external_id", `INSERT INTO entraprov.directory_links (job, external_id, object_id, state) VALUES ('j', 'E1', 'o2', 'active')`, "23505"},
		{"second_link_for_object", `INSERT INTO entraprov.directory_links (job, external_id, object_id, state) VALUES ('j', 'E2', 'o1', 'active')`, "23505"},
		{"active_link_without_object", `INSERT INTO entraprov.directory_links (job, external_id, state) VALUES ('j', 'E3', 'active')`, "23514"},
		{"link_state_outside_enum", `INSERT INTO entraprov.directory_links (job, external_id, object_id, state) VALUES ('j', 'E4', 'o4', 'gone')`, "23514"},
		{"empty_external_id_in_source", `INSERT INTO entraprov.desired_users (external_id) VALUES ('')`, "23514"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := st.Pool().Exec(ctx, tt.sql)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != tt.code {
				t.Fatalf("err = %v; want SQLSTATE %s", err, tt.code)
			}
		})
	}

	// The same object linked to a second external id through the API.
	err := st.UpsertLinks(ctx, []store.Link{{Job: "j", ExternalID: "E9", ObjectID: "o1", State: store.LinkActive}})
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.ConstraintName != "directory_links_object_key" {
		t.Fatalf("UpsertLinks duplicate object = %v; want directory_links_object_key violation", err)
	}
	// A creating link without object id is fine, twice even (NULLs are distinct).
	err = st.UpsertLinks(ctx, []store.Link{
		{Job: "j", ExternalID: "C1", State: store.LinkCreating},
		{Job: "j", ExternalID: "C2", State: store.LinkCreating},
	})
	if err != nil {
		t.Fatalf("UpsertLinks creating links: %v", err)
	}
}

func TestStartRunTakesOccurrenceOnce(t *testing.T) {
	t.Parallel()
	st := testdb.New(t)
	ctx := ctxT(t)
	at := time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC)

	first := &store.Run{Job: "nightly", Trigger: "schedule", Mode: "apply", ScheduledFor: &at, TenantID: "t1"}
	if err := st.StartRun(ctx, first); err != nil {
		t.Fatal(err)
	}
	if first.ID == 0 || first.StartedAt.IsZero() || first.Status != store.RunRunning || first.PID == 0 || first.Host == "" {
		t.Fatalf("StartRun did not fill the run: %+v", first)
	}
	second := &store.Run{Job: "nightly", Trigger: "schedule", Mode: "apply", ScheduledFor: &at}
	if err := st.StartRun(ctx, second); !errors.Is(err, store.ErrOccurrenceTaken) {
		t.Fatalf("second StartRun for the same occurrence = %v; want ErrOccurrenceTaken", err)
	}
	// Finishing (even failing) does not free the occurrence: it ran once.
	first.Status = store.RunFailed
	first.ErrorSummary = "token: AADSTS7000215"
	if err := st.FinishRun(ctx, first); err != nil {
		t.Fatal(err)
	}
	if err := st.StartRun(ctx, &store.Run{Job: "nightly", Trigger: "catchup", Mode: "apply", ScheduledFor: &at}); !errors.Is(err, store.ErrOccurrenceTaken) {
		t.Fatalf("StartRun after the occurrence failed = %v; want ErrOccurrenceTaken", err)
	}
	// A skipped record does not take it; other jobs and times are independent.
	skipped := &store.Run{Job: "nightly", Trigger: "schedule", Mode: "apply", ScheduledFor: &at, Status: store.RunSkipped}
	if err := st.StartRun(ctx, skipped); err != nil || skipped.FinishedAt == nil {
		t.Fatalf("StartRun skipped = %v (finished %v); want recorded and finished", err, skipped.FinishedAt)
	}
	if err := st.StartRun(ctx, &store.Run{Job: "other", Trigger: "schedule", Mode: "apply", ScheduledFor: &at}); err != nil {
		t.Fatalf("other job, same time: %v", err)
	}
	if err := st.StartRun(ctx, &store.Run{Job: "nightly", Trigger: "manual", Mode: "plan"}); err != nil {
		t.Fatalf("manual run without occurrence: %v", err)
	}

	got, err := st.GetRun(ctx, first.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != store.RunFailed || got.FinishedAt == nil || got.ErrorSummary != first.ErrorSummary || got.TenantID != "t1" {
		t.Fatalf("GetRun = %+v", got)
	}
	if _, err := st.GetRun(ctx, 1e9); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetRun of unknown id = %v; want ErrNotFound", err)
	}
}

func TestFinishRunRecordsCountsAndStats(t *testing.T) {
	t.Parallel()
	st := testdb.New(t)
	ctx := ctxT(t)
	r := &store.Run{Job: "j", Trigger: "manual", Mode: "apply"}
	if err := st.StartRun(ctx, r); err != nil {
		t.Fatal(err)
	}
	r.Status = store.RunRunning
	if err := st.FinishRun(ctx, r); err == nil {
		t.Fatal("FinishRun accepted status running")
	}
	r.Status = store.RunPartial
	r.Counts = store.CountsFromMap(map[string]int{"create": 3, "failed": 1})
	r.Stats = store.RunStats{Requests: 5, Batches: 2, Throttled: 1, Retried: 1}
	if err := st.FinishRun(ctx, r); err != nil {
		t.Fatal(err)
	}
	runs, err := st.ListRuns(ctx, "j", 10)
	if err != nil || len(runs) != 1 {
		t.Fatalf("ListRuns = %v, %v", runs, err)
	}
	got := runs[0]
	if got.Counts.ByAction["create"] != 3 || got.Counts.ByStatus["failed"] != 1 || got.Stats != r.Stats || got.Status != store.RunPartial {
		t.Fatalf("run = %+v", got)
	}
	var counts string
	if err := st.Pool().QueryRow(ctx, `SELECT counts FROM entraprov.run_summary WHERE id = $1`, r.ID).Scan(&counts); err != nil || counts != "create=3 failed=1" {
		t.Fatalf("run_summary counts = %q, %v", counts, err)
	}
}

// A finished run has no operation without a final status: FinishRun
// settles the pending ones (their results were never written) and leaves
// final and planned ones alone. Finishing twice is harmless (retries).
func TestFinishRunSettlesPendingOperations(t *testing.T) {
	t.Parallel()
	st := testdb.New(t)
	ctx := ctxT(t)
	r := &store.Run{Job: "j", Trigger: "manual", Mode: "apply"}
	if err := st.StartRun(ctx, r); err != nil {
		t.Fatal(err)
	}
	recordOps(t, st, r.ID, store.OpPending, store.OpSucceeded, store.OpPlanned, store.OpPending)
	r.Status, r.ErrorSummary = store.RunFailed, "write results: conn closed"
	for range 2 {
		if err := st.FinishRun(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for status, want := range map[store.OpStatus]int{store.OpPending: 0, store.OpInterrupted: 2, store.OpSucceeded: 1, store.OpPlanned: 1} {
		ops, err := st.ListOperations(ctx, r.ID, status)
		if err != nil || len(ops) != want {
			t.Fatalf("%s operations = %d (%v); want %d", status, len(ops), err, want)
		}
		for _, o := range ops {
			if status == store.OpInterrupted && o.Message == "" {
				t.Fatalf("interrupted operation %d has no message", o.Seq)
			}
		}
	}
}

func recordOps(t *testing.T, st *store.Store, runID int64, statuses ...store.OpStatus) {
	t.Helper()
	var ops []store.Operation
	for i, s := range statuses {
		ops = append(ops, store.Operation{RunID: runID, Seq: int64(i + 1), ExternalID: "E" + string(rune('A'+i)),
			Action: "update", Status: s, Changes: map[string]any{"jobTitle": "Engineer"}})
	}
	if err := st.RecordOperations(ctxT(t), ops); err != nil {
		t.Fatal(err)
	}
}

// A crashed worker's run is closed as interrupted; a live worker's run (its
// job lock is held by some session) is left alone.
func TestMarkInterruptedOnlyTouchesRunsWithoutLock(t *testing.T) {
	t.Parallel()
	url := testdb.NewURL(t)
	ctx := ctxT(t)
	live := openT(t, url) // the "other process" still running job A
	me := openT(t, url)

	unlockA, ok, err := live.TryLockJob(ctx, "A")
	if err != nil || !ok {
		t.Fatalf("TryLockJob A = %v, %v", ok, err)
	}
	if _, ok, err := me.TryLockJob(ctx, "A"); ok || err != nil {
		t.Fatalf("second TryLockJob A from another session = %v, %v; want false, nil", ok, err)
	}
	runA := &store.Run{Job: "A", Trigger: "manual", Mode: "apply"}
	runB := &store.Run{Job: "B", Trigger: "manual", Mode: "apply"} // its process died: no lock
	for _, r := range []*store.Run{runA, runB} {
		if err := live.StartRun(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	recordOps(t, live, runB.ID, store.OpSucceeded, store.OpPending, store.OpPlanned, store.OpFailed)

	n, err := me.MarkInterrupted(ctx, "")
	if err != nil || n != 1 {
		t.Fatalf("MarkInterrupted = %d, %v; want 1", n, err)
	}
	gotA, _ := me.GetRun(ctx, runA.ID)
	gotB, _ := me.GetRun(ctx, runB.ID)
	if gotA.Status != store.RunRunning {
		t.Fatalf("run of locked job A = %s; want running", gotA.Status)
	}
	if gotB.Status != store.RunInterrupted || gotB.FinishedAt == nil || !strings.Contains(gotB.ErrorSummary, "interrupted") {
		t.Fatalf("run of dead job B = %+v; want interrupted with a summary", gotB)
	}
	ops, err := me.ListOperations(ctx, runB.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	want := []store.OpStatus{store.OpSucceeded, store.OpInterrupted, store.OpInterrupted, store.OpFailed}
	for i, o := range ops {
		if o.Status != want[i] {
			t.Fatalf("op %d status = %s; want %s", o.Seq, o.Status, want[i])
		}
	}

	// Once A's process lets go of the lock, its stale run is closed too.
	unlockA()
	unlockA() // idempotent
	if n, err := me.MarkInterrupted(ctx, "A"); err != nil || n != 1 {
		t.Fatalf("MarkInterrupted(A) after unlock = %d, %v; want 1", n, err)
	}
	unlock, ok, err := me.TryLockJob(ctx, "A")
	if err != nil || !ok {
		t.Fatalf("TryLockJob A after unlock = %v, %v; want the lock", ok, err)
	}
	unlock()
}

func TestCompleteOperations(t *testing.T) {
	t.Parallel()
	st := testdb.New(t)
	ctx := ctxT(t)
	r := &store.Run{Job: "j", Trigger: "manual", Mode: "apply"}
	if err := st.StartRun(ctx, r); err != nil {
		t.Fatal(err)
	}
	recordOps(t, st, r.ID, store.OpPending, store.OpPending, store.OpPending)
	at := time.Date(2026, 11, 27, 2, 3, 4, 0, time.UTC)
	err := st.CompleteOperations(ctx, []store.Operation{
		{RunID: r.ID, Seq: 1, Status: store.OpSucceeded, ObjectID: "obj-1", HTTPStatus: 201, RequestID: "req-1", Attempts: 1, LatencyMS: 120, At: at},
		{RunID: r.ID, Seq: 3, Status: store.OpFailed, HTTPStatus: 400, ErrorCode: "Request_BadRequest", Message: "Property usageLocation is invalid", Attempts: 2},
	})
	if err != nil {
		t.Fatal(err)
	}
	ops, err := st.ListOperations(ctx, r.ID, "")
	if err != nil || len(ops) != 3 {
		t.Fatalf("ListOperations = %v, %v", ops, err)
	}
	if o := ops[0]; o.Status != store.OpSucceeded || o.ObjectID != "obj-1" || o.HTTPStatus != 201 || o.RequestID != "req-1" ||
		o.Attempts != 1 || o.LatencyMS != 120 || !o.At.Equal(at) || o.Changes["jobTitle"] != "Engineer" {
		t.Fatalf("op 1 = %+v", o)
	}
	if o := ops[1]; o.Status != store.OpPending {
		t.Fatalf("op 2 untouched = %+v", o)
	}
	if o := ops[2]; o.Status != store.OpFailed || o.ErrorCode != "Request_BadRequest" || o.HTTPStatus != 400 || o.Attempts != 2 {
		t.Fatalf("op 3 = %+v", o)
	}
	failed, err := st.ListOperations(ctx, r.ID, store.OpFailed)
	if err != nil || len(failed) != 1 || failed[0].Seq != 3 {
		t.Fatalf("ListOperations(failed) = %v, %v", failed, err)
	}
	// The user history view answers "what happened to EC".
	var action, status, code string
	err = st.Pool().QueryRow(ctx, `SELECT action, status, error_code FROM entraprov.user_history WHERE external_id = 'EC'`).Scan(&action, &status, &code)
	if err != nil || status != "failed" || code != "Request_BadRequest" {
		t.Fatalf("user_history = %s %s %s, %v", action, status, code, err)
	}
	err = st.CompleteOperations(ctx, []store.Operation{{RunID: r.ID, Seq: 99, Status: store.OpSucceeded}})
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("CompleteOperations of unknown op = %v; want ErrNotFound", err)
	}
}

func TestLinksMirrorAndJobState(t *testing.T) {
	t.Parallel()
	st := testdb.New(t)
	ctx := ctxT(t)
	err := st.UpsertLinks(ctx, []store.Link{
		{Job: "j", ExternalID: "E1", ObjectID: "o1", State: store.LinkActive, Groups: []string{"g1", "g2"}, AppliedHash: "h0"},
		{Job: "j", ExternalID: "E1", ObjectID: "o1", State: store.LinkActive, Groups: []string{"g1", "g2"}, AppliedHash: "h1"}, // last wins
		{Job: "j", ExternalID: "E2", State: store.LinkCreating, UserPrincipalName: "b@x.test"},
	})
	if err != nil {
		t.Fatal(err)
	}
	l1, err := st.GetLink(ctx, "j", "E1")
	if err != nil || l1.AppliedHash != "h1" || len(l1.Groups) != 2 || l1.Groups[1] != "g2" || l1.CreatedAt.IsZero() {
		t.Fatalf("GetLink E1 = %+v, %v", l1, err)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	err = st.UpsertLinks(ctx, []store.Link{{Job: "j", ExternalID: "E1", ObjectID: "o1", State: store.LinkDisabled, DisabledAt: &now}})
	if err != nil {
		t.Fatal(err)
	}
	l1b, _ := st.GetLink(ctx, "j", "E1")
	if l1b.State != store.LinkDisabled || l1b.DisabledAt == nil || !l1b.DisabledAt.Equal(now) || !l1b.CreatedAt.Equal(l1.CreatedAt) || len(l1b.Groups) != 0 {
		t.Fatalf("updated link = %+v (created %v)", l1b, l1.CreatedAt)
	}
	counts, err := st.CountLinks(ctx, "j")
	if err != nil || counts[store.LinkDisabled] != 1 || counts[store.LinkCreating] != 1 {
		t.Fatalf("CountLinks = %v, %v", counts, err)
	}
	if _, err := st.GetLink(ctx, "j", "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetLink unknown = %v", err)
	}

	users := []store.DirectoryUser{
		{Attrs: profile.Of(profile.UserPrincipalName, "a@x.test", profile.DisplayName, "A"), ObjectID: "o1", AccountEnabled: true, Mail: "a@x.test"},
		{Attrs: profile.Of(profile.UserPrincipalName, "b@x.test"), ObjectID: "o2", Deleted: true},
	}
	if err := st.UpsertDirectoryUsers(ctx, "j", users); err != nil {
		t.Fatal(err)
	}
	users[0].Set(profile.DisplayName, "A2")
	if err := st.UpsertDirectoryUsers(ctx, "j", users[:1]); err != nil {
		t.Fatal(err)
	}
	var name string
	var n int
	if err := st.Pool().QueryRow(ctx, `SELECT display_name, (SELECT count(*) FROM entraprov.directory_users) FROM entraprov.directory_users WHERE object_id = 'o1'`).Scan(&name, &n); err != nil || name != "A2" || n != 2 {
		t.Fatalf("mirror = %q, %d, %v", name, n, err)
	}
	if err := st.DeleteDirectoryUsers(ctx, "j", []string{"o2"}); err != nil {
		t.Fatal(err)
	}
	if err := st.UpsertDirectoryUsers(ctx, "other", users); err != nil {
		t.Fatal(err)
	}
	if err := st.ResetMirror(ctx, "j"); err != nil {
		t.Fatal(err)
	}
	if err := st.Pool().QueryRow(ctx, `SELECT count(*) FROM entraprov.directory_users WHERE job = 'j'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("mirror after reset = %d, %v", n, err)
	}
	if err := st.Pool().QueryRow(ctx, `SELECT count(*) FROM entraprov.directory_users WHERE job = 'other'`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("other job's mirror after reset of j = %d, %v; want untouched", n, err)
	}

	zero, err := st.GetJobState(ctx, "j")
	if err != nil || zero != (store.JobState{Job: "j"}) {
		t.Fatalf("GetJobState of new job = %+v, %v", zero, err)
	}
	js := store.JobState{Job: "j", DeltaLink: "https://graph.microsoft.com/v1.0/users/delta?$deltatoken=x", LastSuccessAt: &now,
		LastRunID: 7, QuarantinedUntil: &now, QuarantineReason: "3 failures", ConsecutiveFailures: 3}
	if err := st.SaveJobState(ctx, js); err != nil {
		t.Fatal(err)
	}
	js.ConsecutiveFailures = 0
	js.QuarantinedUntil = nil
	if err := st.SaveJobState(ctx, js); err != nil {
		t.Fatal(err)
	}
	got, err := st.GetJobState(ctx, "j")
	if err != nil || got.DeltaLink != js.DeltaLink || got.LastRunID != 7 || got.QuarantinedUntil != nil ||
		got.ConsecutiveFailures != 0 || got.LastSuccessAt == nil || !got.LastSuccessAt.Equal(now) {
		t.Fatalf("GetJobState = %+v, %v", got, err)
	}
}

// A least-privilege role that owns a schema created by a DBA, without CREATE
// on the database, can migrate.
func TestMigrateIntoSchemaCreatedByDBA(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	admin, err := store.Open(ctx, testdb.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	role := fmt.Sprintf("entraprov_app_%d", time.Now().UnixNano()%1e9)
	exec(t, admin, `CREATE ROLE `+role+` LOGIN`)
	t.Cleanup(func() { _, _ = admin.Pool().Exec(context.Background(), `DROP ROLE IF EXISTS `+role) })
	url := testdb.NewURL(t) // dropped before the role (cleanups run last-in first-out)

	dba := openT(t, url)
	exec(t, dba, `DROP SCHEMA entraprov CASCADE`)
	exec(t, dba, `REVOKE CREATE ON DATABASE `+currentDB(t, dba)+` FROM PUBLIC`)
	exec(t, dba, `CREATE SCHEMA entraprov AUTHORIZATION `+role)
	dba.Close()

	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	u.User = neturl.User(role)
	app := openT(t, u.String())
	if n, err := app.Migrate(ctx); err != nil || n < 1 {
		t.Fatalf("Migrate as schema owner without CREATE on the database = %d, %v", n, err)
	}
	if err := app.CheckSchema(ctx); err != nil {
		t.Fatal(err)
	}
}

func currentDB(t *testing.T, st *store.Store) string {
	var name string
	if err := st.Pool().QueryRow(ctxT(t), `SELECT current_database()`).Scan(&name); err != nil {
		t.Fatal(err)
	}
	return name
}

// ListRuns and ListRunsSince share one query: both filter by job ("" is
// every job), order newest first and honour the limit; only ListRunsSince
// drops the runs started before its bound.
func TestListRunsAndListRunsSince(t *testing.T) {
	t.Parallel()
	st := testdb.New(t)
	ctx := ctxT(t)
	base := time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)
	ids := map[string]int64{}
	for i, name := range []string{"a1", "b1", "a2", "a3"} {
		r := &store.Run{Job: name[:1], Trigger: "manual", Mode: "apply"}
		if err := st.StartRun(ctx, r); err != nil {
			t.Fatal(err)
		}
		exec(t, st, `UPDATE entraprov.sync_runs SET started_at = $2 WHERE id = $1`, r.ID, base.Add(time.Duration(i)*time.Hour))
		ids[name] = r.ID
	}
	names := func(runs []store.Run) string {
		var out []string
		for _, r := range runs {
			for n, id := range ids {
				if id == r.ID {
					out = append(out, n)
				}
			}
		}
		return strings.Join(out, " ")
	}
	for _, tc := range []struct {
		name string
		list func() ([]store.Run, error)
		want string
	}{
		{"every_job_newest_first", func() ([]store.Run, error) { return st.ListRuns(ctx, "", 0) }, "a3 a2 b1 a1"},
		{"one_job", func() ([]store.Run, error) { return st.ListRuns(ctx, "a", 0) }, "a3 a2 a1"},
		{"limit", func() ([]store.Run, error) { return st.ListRuns(ctx, "", 2) }, "a3 a2"},
		{"since_is_inclusive", func() ([]store.Run, error) { return st.ListRunsSince(ctx, "", base.Add(time.Hour), 0) }, "a3 a2 b1"},
		{"since_one_job", func() ([]store.Run, error) { return st.ListRunsSince(ctx, "a", base.Add(time.Hour), 0) }, "a3 a2"},
		{"since_with_limit", func() ([]store.Run, error) { return st.ListRunsSince(ctx, "", base, 1) }, "a3"},
		{"since_after_every_run", func() ([]store.Run, error) { return st.ListRunsSince(ctx, "", base.Add(4*time.Hour), 0) }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runs, err := tc.list()
			if err != nil {
				t.Fatal(err)
			}
			if got := names(runs); got != tc.want {
				t.Fatalf("runs = %q, want %q", got, tc.want)
			}
		})
	}
}
