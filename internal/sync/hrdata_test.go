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

// permissiveSource lets desired_users hold what a view over a real HR
// database can produce: NULL, empty and whitespace-padded external_ids.
func (e *env) permissiveSource() {
	e.exec(`ALTER TABLE entraprov.desired_users DROP CONSTRAINT desired_users_pkey`)
	e.exec(`ALTER TABLE entraprov.desired_users DROP CONSTRAINT IF EXISTS desired_users_external_id_check`)
	e.exec(`ALTER TABLE entraprov.desired_users ALTER COLUMN external_id DROP NOT NULL`)
}

// TestInvalidIDsAndSelfManager (issue 19, case 5): a NULL external_id is
// refused with a message, not dropped; a trailing space added to an id
// refuses the row and keeps the linked account as is (not a leaver); a
// self-manager is "no manager" and the user's other changes go through;
// a leaver and a hire in the same run are done.
func TestInvalidIDsAndSelfManager(t *testing.T) {
	t.Parallel()
	e := newEnv(t, graphsim.Options{})
	e.permissiveSource()
	ps := e.people(5, 1)
	ceo, padded, leaver, hire := ps[0], ps[1], ps[2], ps[3]
	e.insert(ps[:3]...)
	e.run(esync.RunOptions{}, store.RunSucceeded)

	e.exec(`UPDATE entraprov.desired_users SET manager_external_id = external_id, job_title = 'CEO' WHERE external_id = $1`, ceo.ExternalID)
	e.exec(`UPDATE entraprov.desired_users SET external_id = external_id || ' ' WHERE external_id = $1`, padded.ExternalID)
	e.exec(`DELETE FROM entraprov.desired_users WHERE external_id = $1`, leaver.ExternalID)
	e.insert(hire)
	e.exec(`INSERT INTO entraprov.desired_users (external_id, user_principal_name, display_name) VALUES (NULL, $1, 'No Id')`,
		"noid@"+e.seeded.Domain)
	r := e.run(esync.RunOptions{}, store.RunPartial)

	if u := e.mustLive(ceo.UPN); u.Properties["jobTitle"] != "CEO" || u.ManagerID != "" {
		t.Fatalf("CEO: jobTitle %v, manager %q; want the title changed and no manager", u.Properties["jobTitle"], u.ManagerID)
	}
	if op := e.opOf(r.ID, ceo.ExternalID, esync.ActUpdate); op.Status != store.OpSucceeded || !strings.Contains(op.Message, "names the user itself: treated as no manager") {
		t.Fatalf("CEO update %s %q; want succeeded with the self-manager noted", op.Status, op.Message)
	}
	op := e.opOf(r.ID, padded.ExternalID+" ", esync.ActCreate)
	if op.Status != store.OpFailed || !strings.Contains(op.Message, `external_id "E000002 ": leading or trailing whitespace (trimmed: "E000002")`) {
		t.Fatalf("padded row: %s %q; want refused naming the id", op.Status, op.Message)
	}
	if u := e.mustLive(padded.UPN); !u.AccountEnabled {
		t.Fatal("a trailing space on the id disabled the person: the old id was taken for a leaver")
	}
	op = e.opOf(r.ID, "", esync.ActCreate)
	if op.Status != store.OpFailed || !strings.Contains(op.Message, `external_id: NULL or empty (row with user_principal_name "noid@`) {
		t.Fatalf("NULL id row: %s %q; want refused with a message", op.Status, op.Message)
	}
	if r.Counts[store.OpFailed] != 2 || r.Counts[store.CountFailedUnsent] != 2 {
		t.Fatalf("counts %v; want the 2 invalid rows counted as failed (not sent)", r.Counts)
	}
	if u := e.mustLive(leaver.UPN); u.AccountEnabled {
		t.Fatal("the leaver was not disabled")
	}
	e.mustLive(hire.UPN)

	// Nothing more to send while the source stays broken; the next hire and
	// leaver still go through.
	e.quiet(store.RunPartial)
	e.exec(`DELETE FROM entraprov.desired_users WHERE external_id = $1`, hire.ExternalID)
	e.insert(ps[4])
	r = e.run(esync.RunOptions{}, store.RunPartial)
	if r.Counts["create"] != 3 || r.Counts[store.OpFailed] != 2 || r.Counts["disable"] != 1 { // the two invalid rows are refused again
		t.Fatalf("counts %v; want the hire created (and the 2 invalid rows refused) and the leaver disabled", r.Counts)
	}

	// Source fixed: the padded user is the same account, untouched.
	id := e.mustLive(padded.UPN).ID
	e.exec(`UPDATE entraprov.desired_users SET external_id = btrim(external_id) WHERE external_id = $1`, padded.ExternalID+" ")
	e.exec(`DELETE FROM entraprov.desired_users WHERE external_id IS NULL`)
	e.quiet(store.RunSucceeded)
	if u := e.mustLive(padded.UPN); u.ID != id || !u.AccountEnabled {
		t.Fatal("the padded user's account changed once the id was fixed")
	}
}
