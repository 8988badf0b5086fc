package sync_test

import (
	"strings"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/graphsim"
	"github.com/entraprov/entraprov/internal/store"
	esync "github.com/entraprov/entraprov/internal/sync"
)

// Tests of issue 19: what a real HR feed produces on a bad night (people on
// leave, bad ids, re-keys) fails the affected user alone, and the rest of
// the job's work (a new hire, a leaver) is done in the same and next run.

// quiet runs the job once more and fails when the run writes anything: the
// scenario converged.
func (e *env) quiet(want string) store.Run {
	e.t.Helper()
	e.sim.ResetCounters()
	r := e.run(esync.RunOptions{}, want)
	if w := e.sim.Counters().Writes; w != 0 {
		e.t.Fatalf("run %d after convergence wrote %d times (counts %v)", r.ID, w, r.Counts)
	}
	return r
}

// mustLive returns the live (not soft-deleted) directory user of upn.
func (e *env) mustLive(upn string) graphsim.UserState {
	e.t.Helper()
	u, ok := e.live()[strings.ToLower(upn)]
	if !ok {
		e.t.Fatalf("%s is not a live user in the directory", upn)
	}
	return u
}

// opOf returns the single operation of action for externalID in run id.
func (e *env) opOf(runID int64, externalID, action string) store.Operation {
	e.t.Helper()
	var found []store.Operation
	for _, o := range e.ops(runID, "") {
		if o.ExternalID == externalID && o.Action == action {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		e.t.Fatalf("run %d: %d %s operations of %s; want 1 (all: %+v)", runID, len(found), action, externalID, e.ops(runID, ""))
	}
	return found[0]
}

// TestLeaveIsNotLeaving (issue 19, case 3): under leaver.action delete with
// a 30-day grace, a row still in the source with account_enabled = false
// is disabled and kept for good, while a user who left the source is
// disabled then deleted after the grace; hires go on alongside.
func TestLeaveIsNotLeaving(t *testing.T) {
	t.Parallel()
	e := newEnv(t, graphsim.Options{})
	ps := e.people(5, 1)
	onLeave, leaver := ps[0], ps[1]
	e.insert(ps[:3]...)
	e.run(esync.RunOptions{}, store.RunSucceeded)

	e.exec(`UPDATE entraprov.desired_users SET account_enabled = false WHERE external_id = $1`, onLeave.ExternalID)
	e.exec(`DELETE FROM entraprov.desired_users WHERE external_id = $1`, leaver.ExternalID)
	e.insert(ps[3])
	r := e.run(esync.RunOptions{}, store.RunSucceeded)
	if r.Counts["disable"] != 2 || r.Counts["create"] != 1 {
		t.Fatalf("counts %v; want 2 disables and 1 create", r.Counts)
	}
	if op := e.opOf(r.ID, onLeave.ExternalID, esync.ActDisable); !strings.Contains(op.Message, "on leave") {
		t.Fatalf("disable of the user on leave says %q; want it to say on leave", op.Message)
	}
	e.mustLive(ps[3].UPN)

	// Past the grace period: the leaver is deleted, the user on leave is not;
	// a hire in the same run is created.
	e.advance(31 * 24 * time.Hour)
	e.insert(ps[4])
	r = e.run(esync.RunOptions{}, store.RunSucceeded)
	if r.Counts["delete"] != 1 || r.Counts["create"] != 1 {
		t.Fatalf("counts %v; want 1 delete (the leaver) and 1 create", r.Counts)
	}
	e.opOf(r.ID, leaver.ExternalID, esync.ActDelete)
	if _, ok := e.live()[strings.ToLower(leaver.UPN)]; ok {
		t.Fatal("the user who left the source is still live after the grace period")
	}
	if u := e.mustLive(onLeave.UPN); u.AccountEnabled {
		t.Fatal("the user on leave is enabled")
	}
	e.mustLive(ps[4].UPN)

	// A year on leave: still kept, and nothing to write.
	e.advance(365 * 24 * time.Hour)
	e.quiet(store.RunSucceeded)
	e.mustLive(onLeave.UPN)

	// Back from leave: enabled again, same account.
	id := e.mustLive(onLeave.UPN).ID
	e.exec(`UPDATE entraprov.desired_users SET account_enabled = true WHERE external_id = $1`, onLeave.ExternalID)
	r = e.run(esync.RunOptions{}, store.RunSucceeded)
	if u := e.mustLive(onLeave.UPN); !u.AccountEnabled || u.ID != id || r.Counts["enable"] != 1 {
		t.Fatalf("back from leave: enabled %v, object %s (was %s), counts %v; want the same account enabled", u.AccountEnabled, u.ID, id, r.Counts)
	}
	e.quiet(store.RunSucceeded)
}
