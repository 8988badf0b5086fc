package store_test

import (
	"fmt"
	"testing"

	"github.com/entraprov/entraprov/internal/store"
	"github.com/entraprov/entraprov/internal/testdb"
)

// fail is one failed operation of a seeded run.
type fail struct {
	id     string
	status int
	code   string
}

// seedRun records a finished run of job with one operation per entry of
// fails (failed) and ok (succeeded), and returns its id.
func seedRun(t *testing.T, st *store.Store, job, mode string, status store.RunStatus, fails []fail, ok ...string) int64 {
	t.Helper()
	ctx := ctxT(t)
	r := &store.Run{Job: job, Trigger: "manual", Mode: mode}
	if err := st.StartRun(ctx, r); err != nil {
		t.Fatal(err)
	}
	var ops, done []store.Operation
	seq := int64(0)
	for _, f := range fails {
		seq++
		ops = append(ops, store.Operation{RunID: r.ID, Seq: seq, ExternalID: f.id, Action: "update", Status: store.OpPending})
		done = append(done, store.Operation{RunID: r.ID, Seq: seq, Status: store.OpFailed, HTTPStatus: f.status,
			ErrorCode: f.code, Message: fmt.Sprintf("bad in run %d", r.ID), RequestID: fmt.Sprintf("req-%d-%d", r.ID, seq), Attempts: 1})
	}
	for _, id := range ok {
		seq++
		ops = append(ops, store.Operation{RunID: r.ID, Seq: seq, ExternalID: id, Action: "update", Status: store.OpPending})
		done = append(done, store.Operation{RunID: r.ID, Seq: seq, Status: store.OpSucceeded, HTTPStatus: 204, Attempts: 1})
	}
	if len(ops) > 0 {
		if err := st.RecordOperations(ctx, ops); err != nil {
			t.Fatal(err)
		}
		if err := st.CompleteOperations(ctx, done); err != nil {
			t.Fatal(err)
		}
	}
	r.Status = status
	if err := st.FinishRun(ctx, r); err != nil {
		t.Fatal(err)
	}
	return r.ID
}

// Only users failing the same way in each of the last N apply runs are
// stuck; the streak counts back to the first run that broke it.
func TestStuckUsers(t *testing.T) {
	t.Parallel()
	st := testdb.New(t)
	ctx := ctxT(t)
	bad := func(id string) fail { return fail{id, 400, "Request_BadRequest"} }
	denied := func(id string) fail { return fail{id, 403, "Authorization_RequestDenied"} }

	var runs []int64
	runs = append(runs, seedRun(t, st, "nightly", "apply", store.RunPartial, []fail{bad("E1"), bad("E5")}))
	runs = append(runs, seedRun(t, st, "nightly", "apply", store.RunPartial, []fail{bad("E1"), bad("E5")}, "E2"))
	runs = append(runs, seedRun(t, st, "nightly", "apply", store.RunPartial, []fail{bad("E1"), bad("E2"), bad("E4"), bad("E5")}))
	seedRun(t, st, "other", "apply", store.RunFailed, []fail{bad("E9")})
	runs = append(runs, seedRun(t, st, "nightly", "apply", store.RunPartial, []fail{bad("E1"), bad("E2"), bad("E3"), denied("E4"), bad("E5")}))
	// Blocked, interrupted and plan runs did not try anyone: they neither
	// count nor break a streak.
	seedRun(t, st, "nightly", "apply", store.RunBlocked, nil)
	seedRun(t, st, "nightly", "plan", store.RunSucceeded, nil, "E1", "E2", "E5")
	runs = append(runs, seedRun(t, st, "nightly", "apply", store.RunPartial, []fail{bad("E1"), bad("E2"), bad("E3"), bad("E4"), bad("E5"), denied("E5")}))

	got, err := st.StuckUsers(ctx, "nightly", 3)
	if err != nil {
		t.Fatal(err)
	}
	type key struct {
		id   string
		code int
		runs int
	}
	var keys []key
	for _, u := range got {
		keys = append(keys, key{u.ExternalID, u.HTTPStatus, u.Runs})
	}
	want := []key{{"E1", 400, 5}, {"E5", 400, 5}, {"E2", 400, 3}}
	if fmt.Sprint(keys) != fmt.Sprint(want) {
		t.Fatalf("StuckUsers(nightly, 3) = %v; want %v", keys, want)
	}
	e1, e2 := got[0], got[2]
	if e1.Job != "nightly" || e1.ErrorCode != "Request_BadRequest" || e1.Action != "update" || e1.RunID != runs[4] ||
		e1.RequestID != fmt.Sprintf("req-%d-1", runs[4]) || e1.Message != fmt.Sprintf("bad in run %d", runs[4]) {
		t.Errorf("last failure of E1 = %+v; want run %d", e1, runs[4])
	}
	if !e1.FirstAt.Before(e2.FirstAt) || !e2.LastAt.Equal(e1.LastAt) {
		t.Errorf("E1 streak %v..%v, E2 streak %v..%v: E1 must start first", e1.FirstAt, e1.LastAt, e2.FirstAt, e2.LastAt)
	}
	if !e1.FirstAt.Before(e1.LastAt) {
		t.Errorf("E1 first failure %v not before last %v", e1.FirstAt, e1.LastAt)
	}

	got, err = st.StuckUsers(ctx, "nightly", 5)
	if err != nil || len(got) != 2 || got[0].ExternalID != "E1" || got[1].ExternalID != "E5" {
		t.Fatalf("StuckUsers(nightly, 5) = %+v, %v; want E1 and E5", got, err)
	}
	if got, err = st.StuckUsers(ctx, "nightly", 6); err != nil || len(got) != 0 {
		t.Fatalf("StuckUsers with more runs than the job has = %+v, %v; want none", got, err)
	}
	got, err = st.StuckUsers(ctx, "", 1)
	if err != nil {
		t.Fatal(err)
	}
	jobs := map[string]int{}
	for _, u := range got {
		jobs[u.Job]++
	}
	// nightly, last run: E1..E4 at 400, E5 at 400 and 403.
	if jobs["nightly"] != 6 || jobs["other"] != 1 {
		t.Fatalf("StuckUsers(all jobs, 1) per job = %v; want nightly 6, other 1", jobs)
	}
	if _, err := st.StuckUsers(ctx, "nightly", 0); err == nil {
		t.Fatal("StuckUsers with 0 runs: want an error")
	}
}
