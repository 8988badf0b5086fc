package store_test

import (
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/store"
	"github.com/entraprov/entraprov/internal/testdb"
)

// A back-off row round-trips every column, is replaced (not duplicated) by
// the next save of the same user, stays within its job, and goes when
// deleted.
func TestUserBackoffsSaveLoadDelete(t *testing.T) {
	t.Parallel()
	st := testdb.New(t)
	ctx := ctxT(t)
	t0 := time.Date(2026, 11, 1, 2, 0, 0, 0, time.UTC)
	b := store.UserBackoff{Job: "nightly", ExternalID: "E1", DesiredHash: "h1", Action: "create", HTTPStatus: 400,
		ErrorCode: "Request_BadRequest", Message: "Property userPrincipalName is invalid.", RequestID: "req-1",
		Failures: 1, FirstFailedAt: t0, LastFailedAt: t0, LastRunID: 7, NextAttemptAt: t0}
	other := store.UserBackoff{Job: "other", ExternalID: "E1", DesiredHash: "x", Action: "update", Failures: 5,
		FirstFailedAt: t0, LastFailedAt: t0, NextAttemptAt: t0.Add(time.Hour)}
	if err := st.SaveUserBackoffs(ctx, []store.UserBackoff{b, other}); err != nil {
		t.Fatal(err)
	}
	b.Failures, b.LastFailedAt, b.NextAttemptAt, b.LastRunID, b.RequestID = 2, t0.Add(24*time.Hour), t0.Add(72*time.Hour), 8, "req-2"
	if err := st.SaveUserBackoffs(ctx, []store.UserBackoff{b}); err != nil {
		t.Fatal(err)
	}
	got, err := st.UserBackoffs(ctx, "nightly")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("nightly back-offs = %+v; want one row for E1", got)
	}
	g := got[0]
	g.FirstFailedAt, g.LastFailedAt, g.NextAttemptAt = g.FirstFailedAt.UTC(), g.LastFailedAt.UTC(), g.NextAttemptAt.UTC()
	if g != b {
		t.Fatalf("loaded back-off\n%+v\nwant\n%+v", g, b)
	}
	all, err := st.UserBackoffs(ctx, "")
	if err != nil || len(all) != 2 || all[0].Job != "other" {
		t.Fatalf("all back-offs = %+v, %v; want other's (5 failures) first, then nightly's", all, err)
	}
	if all[0].HTTPStatus != 0 || all[0].ErrorCode != "" || all[0].LastRunID != 0 {
		t.Fatalf("empty columns of other's row = %+v; want zero values back", all[0])
	}
	if err := st.DeleteUserBackoffs(ctx, "nightly", []string{"E1", "E404"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.UserBackoffs(ctx, "nightly"); len(got) != 0 {
		t.Fatalf("after delete: %+v; want none", got)
	}
	if got, _ := st.UserBackoffs(ctx, "other"); len(got) != 1 {
		t.Fatalf("delete of nightly's E1 touched job other: %+v", got)
	}
	if err := st.SaveUserBackoffs(ctx, []store.UserBackoff{{Job: "nightly", ExternalID: "E2", Failures: 0}}); err == nil {
		t.Fatal("saving a back-off with 0 failures: want an error")
	}
}

// A user backed off by the engine is recorded as skipped in the runs that
// leave it alone, which breaks its streak in the history: show --stuck
// still lists it, from its back-off row, with the next attempt.
func TestStuckUsersIncludesBackedOffUsers(t *testing.T) {
	t.Parallel()
	st := testdb.New(t)
	ctx := ctxT(t)
	bad := func(id string) fail { return fail{id, 400, "Request_BadRequest"} }
	var last int64
	for range 3 {
		last = seedRun(t, st, "nightly", "apply", store.RunPartial, []fail{bad("E1"), bad("E2")})
	}
	// E2 is backed off since; its later runs skip it.
	seedRun(t, st, "nightly", "apply", store.RunPartial, []fail{bad("E1")}, "E3")
	t0 := time.Date(2026, 11, 1, 2, 0, 0, 0, time.UTC)
	next := t0.Add(48 * time.Hour)
	err := st.SaveUserBackoffs(ctx, []store.UserBackoff{
		{Job: "nightly", ExternalID: "E2", DesiredHash: "h2", Action: "update", HTTPStatus: 400, ErrorCode: "Request_BadRequest",
			Message: "bad", RequestID: "req-e2", Failures: 3, FirstFailedAt: t0, LastFailedAt: t0, LastRunID: last, NextAttemptAt: next},
		// E1's row holds the failure of its history streak.
		{Job: "nightly", ExternalID: "E1", DesiredHash: "h1", Action: "update", HTTPStatus: 400, ErrorCode: "Request_BadRequest",
			Failures: 4, FirstFailedAt: t0, LastFailedAt: t0, NextAttemptAt: next},
		// Two failures are not enough for --runs 3.
		{Job: "nightly", ExternalID: "E9", DesiredHash: "h9", Action: "create", HTTPStatus: 400, Failures: 2,
			FirstFailedAt: t0, LastFailedAt: t0, NextAttemptAt: t0},
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := st.StuckUsers(ctx, "nightly", 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ExternalID != "E1" || got[1].ExternalID != "E2" {
		t.Fatalf("stuck = %+v; want E1 (4 runs, from history) then E2 (3 failures, from its back-off)", got)
	}
	e1, e2 := got[0], got[1]
	if e1.Runs != 4 || e1.Failures != 4 || e1.NextAttemptAt == nil || !e1.NextAttemptAt.Equal(next) {
		t.Errorf("E1 = %+v; want 4 runs with the back-off's failures and next attempt", e1)
	}
	if e2.Runs != 3 || e2.Failures != 3 || e2.RunID != last || e2.RequestID != "req-e2" || e2.HTTPStatus != 400 ||
		e2.NextAttemptAt == nil || !e2.NextAttemptAt.Equal(next) {
		t.Errorf("E2 = %+v; want its back-off row: 3 failures, last run %d, next attempt %v", e2, last, next)
	}
}
