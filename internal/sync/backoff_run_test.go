package sync_test

import (
	"strings"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/graphsim"
	"github.com/entraprov/entraprov/internal/store"
	esync "github.com/entraprov/entraprov/internal/sync"
)

var _ esync.Backoff = (*store.Store)(nil)

// backoffRow returns the job's back-off row of externalID (ok false: none).
func (e *env) backoffRow(externalID string) (store.UserBackoff, bool) {
	e.t.Helper()
	bs, err := e.st.UserBackoffs(e.ctx, e.job.Name)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, b := range bs {
		if b.ExternalID == externalID {
			return b, true
		}
	}
	return store.UserBackoff{}, false
}

// refusedCreates counts the creates Graph refused since the last reset.
func (e *env) refusedCreates() int64 {
	return e.sim.Counters().Calls("POST", "/v1.0/users", "400")
}

// A user whose create Graph refuses with the same 400 at every run (a UPN
// domain the job allows but the tenant has not verified: valid for the
// planner, invalid for Graph) fails three runs, then is left alone until
// its next attempt is due, is tried at once with --retry-stuck or when its
// source row changes, and leaves the back-off when its create succeeds.
// The invariant: a backed-off user costs no Graph write, and nothing but
// an identical failure extends its back-off.
func TestUserBackoff(t *testing.T) {
	t.Parallel()
	e := newEnv(t, graphsim.Options{})
	e.job.AllowedDomains = append(e.job.AllowedDomains, "unverified.example")
	e.job.UserBackoff = config.UserBackoff{AfterFailures: 3, Base: config.Duration{Duration: time.Hour},
		Max: config.Duration{Duration: 7 * 24 * time.Hour}}
	good := e.people(3, 1)
	bad := e.people(1, 100)[0]
	bad.UPN = "stuck@unverified.example"
	e.insert(append(good, bad)...)

	// attempt runs once and says whether the bad user's create was sent
	// (and refused: every other create succeeds).
	attempt := func(opts esync.RunOptions, want store.RunStatus) (store.Run, bool) {
		t.Helper()
		e.sim.ResetCounters()
		r := e.run(opts, want)
		switch n := e.refusedCreates(); {
		case n > 1:
			t.Fatalf("run %d had %d creates refused; want at most the bad user's", r.ID, n)
		case n == 1:
			return r, true
		}
		return r, false
	}
	wantFailures := func(n int) store.UserBackoff {
		t.Helper()
		b, ok := e.backoffRow(bad.ExternalID)
		if !ok || b.Failures != n || b.HTTPStatus != 400 || b.ErrorCode != "Request_BadRequest" || b.Action != "create" {
			t.Fatalf("back-off of %s = %+v (found %v); want %d failures of a 400 create", bad.ExternalID, b, ok, n)
		}
		return b
	}

	// Runs 1..3 try and fail; the first also creates the good users.
	r, _ := attempt(esync.RunOptions{}, store.RunPartial)
	if r.Counts.ByStatus["succeeded"] != 3 || r.Counts.ByStatus["failed"] != 1 {
		t.Fatalf("run 1 counts %v; want 3 created, 1 failed", r.Counts)
	}
	ops := e.ops(r.ID, store.OpFailed)
	b := wantFailures(1)
	if len(ops) != 1 || ops[0].DesiredHash == "" || ops[0].DesiredHash != b.DesiredHash || b.LastRunID != r.ID {
		t.Fatalf("failed operations %+v; want the bad user's, with the desired hash of its back-off %q", ops, b.DesiredHash)
	}
	if !b.NextAttemptAt.Equal(b.LastFailedAt) {
		t.Fatalf("after 1 failure next attempt %v; want the next run (%v)", b.NextAttemptAt, b.LastFailedAt)
	}
	// From run 2 on the user's create is all a run sends: a run where it
	// fails is failed (and counts towards the job's quarantine), one that
	// leaves it alone succeeds.
	for i := 2; i <= 3; i++ {
		e.advance(time.Hour)
		if _, sent := attempt(esync.RunOptions{}, store.RunFailed); !sent {
			t.Fatalf("run %d did not try the user after %d failures; want it tried until the 3rd", i, i-1)
		}
	}
	b = wantFailures(3)
	if want := b.LastFailedAt.Add(2*time.Hour - 6*time.Minute); !b.NextAttemptAt.Equal(want) {
		t.Fatalf("after 3 failures next attempt %v; want %v (2 bases, a tenth early)", b.NextAttemptAt, want)
	}

	// Run 4: left alone. No Graph write, no lookup, one skipped row that
	// says why and how to end it; the run is partial (not converged), not
	// succeeded (issue 19).
	e.advance(time.Hour)
	r, sent := attempt(esync.RunOptions{}, store.RunPartial)
	if sent || e.sim.Counters().BatchSteps != 0 {
		t.Fatalf("run 4 sent %d batch steps; want none for a backed-off user", e.sim.Counters().BatchSteps)
	}
	if n := e.sim.Counters().GraphRequests(); n != 1 {
		t.Fatalf("run 4 made %d Graph requests; want the delta read only", n)
	}
	if r.Counts.BackingOff != 1 || r.Counts.ByStatus["skipped"] != 1 || r.Counts.ByStatus["failed"] != 0 {
		t.Fatalf("run 4 counts %v; want 1 backing_off, 1 skipped", r.Counts)
	}
	ops = e.ops(r.ID, "")
	if len(ops) != 1 || ops[0].ExternalID != bad.ExternalID || ops[0].Status != store.OpSkipped || ops[0].Action != "create" ||
		ops[0].DesiredHash != b.DesiredHash {
		t.Fatalf("run 4 operations %+v; want one skipped create of %s", ops, bad.ExternalID)
	}
	for _, s := range []string{"backing off after 3 identical failures", "400 Request_BadRequest", "next attempt after",
		"worker sync --job hr --retry-stuck"} {
		if !strings.Contains(ops[0].Message, s) {
			t.Fatalf("skipped message %q lacks %q", ops[0].Message, s)
		}
	}
	if same := wantFailures(3); same != b {
		t.Fatalf("a skipped run changed the back-off: %+v; was %+v", same, b)
	}
	// show --stuck lists it though its streak of failed runs is broken.
	stuck, err := e.st.StuckUsers(e.ctx, e.job.Name, 3)
	if err != nil || len(stuck) != 1 || stuck[0].ExternalID != bad.ExternalID || stuck[0].Failures != 3 ||
		stuck[0].NextAttemptAt == nil || !stuck[0].NextAttemptAt.Equal(b.NextAttemptAt) {
		t.Fatalf("StuckUsers = %+v, %v; want %s with 3 failures and its next attempt", stuck, err, bad.ExternalID)
	}

	// A dry run says a sync would skip it, and changes nothing.
	pr := e.run(esync.RunOptions{Mode: esync.ModePlan}, store.RunSucceeded)
	if ops := e.ops(pr.ID, ""); len(ops) != 1 || ops[0].Status != store.OpPlanned ||
		!strings.HasPrefix(ops[0].Message, "a sync now would skip this user: backing off") || pr.Counts.BackingOff != 1 {
		t.Fatalf("dry run operations %+v, counts %v; want the planned create saying a sync would skip it", ops, pr.Counts)
	}
	if same := wantFailures(3); same != b {
		t.Fatalf("a dry run changed the back-off: %+v; was %+v", same, b)
	}

	// Run 5: the next attempt is due; it fails a 4th time and waits 4h.
	e.advance(time.Hour)
	if _, sent := attempt(esync.RunOptions{}, store.RunFailed); !sent {
		t.Fatal("run 5 did not try the user once its next attempt was due")
	}
	b = wantFailures(4)
	if want := b.LastFailedAt.Add(4*time.Hour - 6*time.Minute); !b.NextAttemptAt.Equal(want) {
		t.Fatalf("after 4 failures next attempt %v; want %v", b.NextAttemptAt, want)
	}
	e.advance(time.Hour)
	if _, sent := attempt(esync.RunOptions{}, store.RunPartial); sent {
		t.Fatal("run 6 tried the user 1h into a 4h back-off")
	}

	// --retry-stuck tries it now.
	if _, sent := attempt(esync.RunOptions{RetryStuck: true}, store.RunFailed); !sent {
		t.Fatal("--retry-stuck did not try the backed-off user")
	}
	wantFailures(5)
	if _, sent := attempt(esync.RunOptions{}, store.RunPartial); sent {
		t.Fatal("the run after --retry-stuck tried the user again")
	}

	// HR changes the row: tried at the next run, and the count starts over.
	e.exec(`UPDATE entraprov.desired_users SET job_title = 'Stuck Engineer' WHERE external_id = $1`, bad.ExternalID)
	if _, sent := attempt(esync.RunOptions{}, store.RunFailed); !sent {
		t.Fatal("a changed source row was not tried at the next run")
	}
	if nb := wantFailures(1); nb.DesiredHash == b.DesiredHash {
		t.Fatal("the changed row kept its desired hash")
	}

	// HR fixes the UPN: created, and the back-off row goes.
	e.exec(`UPDATE entraprov.desired_users SET user_principal_name = 'stuck@' || $2 WHERE external_id = $1`,
		bad.ExternalID, e.seeded.Domain)
	if _, sent := attempt(esync.RunOptions{}, store.RunSucceeded); sent || e.sim.Counters().Calls("POST", "/v1.0/users", "201") != 1 {
		t.Fatal("the fixed row was not created at the next run")
	}
	if b, ok := e.backoffRow(bad.ExternalID); ok {
		t.Fatalf("back-off left after the create succeeded: %+v", b)
	}
	e.user("stuck@" + e.seeded.Domain)
}

// Validation failures cost no Graph request: they are never backed off,
// and they record their own message at every run.
func TestUserBackoffLeavesValidationFailuresAlone(t *testing.T) {
	t.Parallel()
	e := newEnv(t, graphsim.Options{})
	e.job.UserBackoff = config.UserBackoff{AfterFailures: 1, Base: config.Duration{Duration: time.Hour},
		Max: config.Duration{Duration: 24 * time.Hour}}
	p := e.people(1, 1)[0]
	p.UsageLocation = "Germany"
	e.insert(p)
	for i := range 3 {
		r := e.run(esync.RunOptions{}, store.RunPartial)
		ops := e.ops(r.ID, store.OpFailed)
		if len(ops) != 1 || !strings.Contains(ops[0].Message, "usage_location") {
			t.Fatalf("run %d operations %+v; want the validation failure", i+1, ops)
		}
		if b, ok := e.backoffRow(p.ExternalID); ok {
			t.Fatalf("run %d backed off a validation failure: %+v", i+1, b)
		}
		e.advance(time.Minute)
	}
}
