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
func (e *env) quiet(want store.RunStatus) store.Run {
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
func (e *env) opOf(runID int64, externalID string, action esync.Action) store.Operation {
	e.t.Helper()
	var found []store.Operation
	for _, o := range e.ops(runID, "") {
		if o.ExternalID == externalID && o.Action == string(action) {
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
	if r.Counts.ByAction["disable"] != 2 || r.Counts.ByAction["create"] != 1 {
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
	if r.Counts.ByAction["delete"] != 1 || r.Counts.ByAction["create"] != 1 {
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
	if u := e.mustLive(onLeave.UPN); !u.AccountEnabled || u.ID != id || r.Counts.ByAction["enable"] != 1 {
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
	if r.Counts.ByStatus[store.OpFailed] != 2 || r.Counts.FailedUnsent != 2 {
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
	if r.Counts.ByAction["create"] != 3 || r.Counts.ByStatus[store.OpFailed] != 2 || r.Counts.ByAction["disable"] != 1 { // the two invalid rows are refused again
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

// links returns the job's links by external id.
func (e *env) links() map[string]store.Link {
	e.t.Helper()
	rows, err := e.st.Pool().Query(e.ctx, `SELECT external_id FROM entraprov.directory_links WHERE job = $1`, e.job.Name)
	if err != nil {
		e.t.Fatal(err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			e.t.Fatal(err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	out := map[string]store.Link{}
	for _, id := range ids {
		l, err := e.st.GetLink(e.ctx, e.job.Name, id)
		if err != nil {
			e.t.Fatal(err)
		}
		out[id] = l
	}
	return out
}

// TestRekeyKeepsTheAccount (issue 19, case 1). Reproduction of the failure
// before the fix: E1 (ann@, employee id 1001) is synced, its row deleted
// (disabled), and E1b inserted with the same UPN and employee id. Run at
// 520adc5, the create of E1b failed on the UPN (partial) and left a
// "creating" link; the next run took ann's account for E1b's lost create,
// re-enabled it and failed whole on "write results: … directory_links_object_key",
// and every run after failed in "pass 1: write links" before writing
// anything for anyone (no later hire, no leaver). Now the link moves to E1b
// in one transaction (history: rekey, both ids), the account is kept and
// enabled, and the rest of the work is done in the same run, three times.
func TestRekeyKeepsTheAccount(t *testing.T) {
	t.Parallel()
	e := newEnv(t, graphsim.Options{})
	ps := e.people(4, 1)
	ann := ps[0]
	ann.ExternalID, ann.UPN, ann.EmployeeID = "E1", "ann@"+e.seeded.Domain, "1001"
	e.insert(ann, ps[1], ps[2])
	e.run(esync.RunOptions{}, store.RunSucceeded)
	id := e.mustLive(ann.UPN).ID

	e.exec(`DELETE FROM entraprov.desired_users WHERE external_id = 'E1'`)
	e.run(esync.RunOptions{}, store.RunSucceeded)
	if e.mustLive(ann.UPN).AccountEnabled {
		t.Fatal("ann was not disabled when her row left")
	}

	rehired := ann
	rehired.ExternalID = "E1b"
	e.insert(rehired, ps[3])
	e.exec(`DELETE FROM entraprov.desired_users WHERE external_id = $1`, ps[2].ExternalID)
	for i := 0; i < 3; i++ {
		r := e.run(esync.RunOptions{}, store.RunSucceeded)
		if i == 0 {
			op := e.opOf(r.ID, "E1b", esync.ActRekey)
			ch, _ := op.Changes["external_id"].(map[string]any)
			if op.Status != store.OpSucceeded || ch["from"] != "E1" || ch["to"] != "E1b" {
				t.Fatalf("rekey operation %+v; want succeeded from E1 to E1b", op)
			}
			if e.opOf(r.ID, "E1", esync.ActRekey).Status != store.OpSucceeded {
				t.Fatal("the old id's history does not record the re-key")
			}
			if r.Counts.ByAction["create"] != 1 || r.Counts.ByAction["enable"] != 1 || r.Counts.ByAction["disable"] != 1 {
				t.Fatalf("counts %v; want the hire created, ann enabled, the leaver disabled", r.Counts)
			}
		}
	}
	u := e.mustLive(ann.UPN)
	if u.ID != id || !u.AccountEnabled {
		t.Fatalf("ann: object %s enabled %v; want her account %s kept and enabled", u.ID, u.AccountEnabled, id)
	}
	links := e.links()
	if l, ok := links["E1b"]; !ok || l.ObjectID != id || l.State != store.LinkActive {
		t.Fatalf("link of E1b %+v; want active on %s", l, id)
	}
	if _, ok := links["E1"]; ok {
		t.Fatal("the old id E1 is still linked")
	}
	e.mustLive(ps[3].UPN)
	if e.mustLive(ps[2].UPN).AccountEnabled {
		t.Fatal("the leaver was not disabled")
	}
	e.quiet(store.RunSucceeded)
}

// TestRekeyOfEveryIDsCase (issue 19, case 1): the source upper-cases every
// external_id (c1 → C1). Before the fix this was the same failure as above
// for every user; now every link moves, nothing is created or disabled,
// and a hire and a leaver in the same run are done.
func TestRekeyOfEveryIDsCase(t *testing.T) {
	t.Parallel()
	e := newEnv(t, graphsim.Options{})
	ps := e.people(22, 1)
	for i := range ps[:20] {
		ps[i].ExternalID = strings.ToLower(ps[i].ExternalID)
	}
	e.insert(ps[:20]...)
	e.run(esync.RunOptions{}, store.RunSucceeded)
	before := e.live()

	e.exec(`UPDATE entraprov.desired_users SET external_id = upper(external_id)`)
	e.exec(`DELETE FROM entraprov.desired_users WHERE external_id = 'E000020'`)
	e.insert(ps[20])
	r := e.run(esync.RunOptions{}, store.RunSucceeded)
	// 19 re-keys are recorded twice (new id and old id's history).
	if r.Counts.ByAction["rekey"] != 19 || r.Counts.ByAction["create"] != 1 || r.Counts.ByAction["disable"] != 1 {
		t.Fatalf("counts %v; want 19 re-keys, the hire created, the leaver (e000020) disabled", r.Counts)
	}
	for upn, u := range e.live() {
		if b, ok := before[upn]; ok && b.ID != u.ID {
			t.Fatalf("%s changed object", upn)
		}
	}
	for id := range e.links() {
		if id != strings.ToUpper(id) && id != "e000020" {
			t.Fatalf("link %s kept its old id", id)
		}
	}
	e.quiet(store.RunSucceeded)
	e.insert(ps[21])
	if r := e.run(esync.RunOptions{}, store.RunSucceeded); r.Counts.ByAction["create"] != 1 {
		t.Fatalf("next run counts %v; want the next hire created", r.Counts)
	}
}

// TestRekeyRefusedFailsTheRowAlone (issue 19, case 1): a new id with the UPN
// of an account the job links under an id that left, but another employee
// id and adopt_by none: the new row fails naming the other id and the fix,
// the account is not touched, and the rest of the run's work is done.
func TestRekeyRefusedFailsTheRowAlone(t *testing.T) {
	t.Parallel()
	e := newEnv(t, graphsim.Options{})
	ps := e.people(4, 1)
	e.insert(ps[:3]...)
	e.run(esync.RunOptions{}, store.RunSucceeded)
	id := e.mustLive(ps[0].UPN).ID

	e.exec(`DELETE FROM entraprov.desired_users WHERE external_id = $1`, ps[0].ExternalID)
	stranger := ps[0]
	stranger.ExternalID, stranger.EmployeeID = "X1", "X1"
	e.insert(stranger, ps[3])
	e.exec(`DELETE FROM entraprov.desired_users WHERE external_id = $1`, ps[1].ExternalID)
	r := e.run(esync.RunOptions{}, store.RunPartial)
	op := e.opOf(r.ID, "X1", esync.ActRekey)
	if op.Status != store.OpFailed || !strings.Contains(op.Message, `links as external_id "E000001"`) ||
		!strings.Contains(op.Message, "give the row the account's employee_id") {
		t.Fatalf("X1: %s %q; want refused naming E000001 and the fix", op.Status, op.Message)
	}
	if u := e.mustLive(ps[0].UPN); u.ID != id || !u.AccountEnabled {
		t.Fatalf("the account of E000001: object %s enabled %v; want it kept as is", u.ID, u.AccountEnabled)
	}
	if _, ok := e.links()["X1"]; ok {
		t.Fatal("X1 got a link")
	}
	e.mustLive(ps[3].UPN)
	if e.mustLive(ps[1].UPN).AccountEnabled {
		t.Fatal("the leaver was not disabled")
	}
	e.quiet(store.RunPartial)
}

// TestSwapAndChainOfRenames (issue 19, case 4): two users exchange UPNs and
// a third takes the UPN a fourth gives up, in one run. Before, each PATCH
// met the other's UPN (400) run after run until both were backed off and
// the run read succeeded. Now the cycle goes through temporary UPNs
// (recorded in history) and completes in one run, the chain too, with the
// same accounts; a hire and a leaver in the same run are done.
func TestSwapAndChainOfRenames(t *testing.T) {
	t.Parallel()
	e := newEnv(t, graphsim.Options{})
	ps := e.people(6, 1)
	e.insert(ps[:5]...)
	e.run(esync.RunOptions{}, store.RunSucceeded)
	ids := map[string]string{}
	for _, p := range ps[:5] {
		ids[p.ExternalID] = e.mustLive(p.UPN).ID
	}
	a, b, c, d := ps[0], ps[1], ps[2], ps[3]
	e.exec(`UPDATE entraprov.desired_users SET user_principal_name = $2 WHERE external_id = $1`, a.ExternalID, b.UPN)
	e.exec(`UPDATE entraprov.desired_users SET user_principal_name = $2 WHERE external_id = $1`, b.ExternalID, a.UPN)
	e.exec(`UPDATE entraprov.desired_users SET user_principal_name = $2 WHERE external_id = $1`, c.ExternalID, "moved@"+e.seeded.Domain)
	e.exec(`UPDATE entraprov.desired_users SET user_principal_name = $2 WHERE external_id = $1`, d.ExternalID, c.UPN)
	e.exec(`DELETE FROM entraprov.desired_users WHERE external_id = $1`, ps[4].ExternalID)
	e.insert(ps[5])
	r := e.run(esync.RunOptions{}, store.RunSucceeded)

	for _, w := range []struct {
		p   person
		upn string
	}{{a, b.UPN}, {b, a.UPN}, {c, "moved@" + e.seeded.Domain}, {d, c.UPN}} {
		if u := e.mustLive(w.upn); u.ID != ids[w.p.ExternalID] {
			t.Errorf("%s is held by %s; want %s's account %s", w.upn, u.ID, w.p.ExternalID, ids[w.p.ExternalID])
		}
	}
	temp := 0
	for _, o := range e.ops(r.ID, store.OpSucceeded) {
		if strings.Contains(o.Message, "UPN swap:") && strings.Contains(o.Message, "temporary rn-") {
			temp++
		}
	}
	if temp != 3 { // a and b (the cycle), and d (its UPN was c's until c moved)
		t.Fatalf("%d renames through a temporary UPN recorded; want 3", temp)
	}
	e.mustLive(ps[5].UPN)
	if e.mustLive(ps[4].UPN).AccountEnabled {
		t.Fatal("the leaver was not disabled")
	}
	e.quiet(store.RunSucceeded)
}

// TestOneOwnerPerAccountAcrossJobs (issue 19, case 2): ann moves from job hr
// to job contractors (adopt_by user_principal_name). Before (reproduced at
// 520adc5: three rounds, each "hr disable 1, contractors enable 1", both
// succeeded, 2 writes a round), contractors
// adopted the account hr still linked (its candidate lookup left out only
// its own links), then hr disabled it ("left the source") and contractors
// re-enabled it ("rehire") at every run, both succeeded; with adopt_by
// none the message called the account "unmanaged". Now contractors never
// adopts, enables or disables it: ann's row fails naming job hr, and both
// jobs are quiet run after run while their other work (a hire, a leaver)
// is done. After the documented hand-over (hr's link released),
// contractors adopts the account, the same object.
func TestOneOwnerPerAccountAcrossJobs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, graphsim.Options{})
	e.exec(`CREATE TABLE entraprov.contractors (LIKE entraprov.desired_users INCLUDING ALL)`)
	hr := e.job
	co := e.job
	co.Name, co.Source, co.Matching.AdoptBy = "contractors", "entraprov.contractors", "user_principal_name"
	runJob := e.runJob
	toContractors := func(ids ...string) {
		for _, id := range ids {
			e.exec(`INSERT INTO entraprov.contractors SELECT * FROM entraprov.desired_users WHERE external_id = $1`, id)
			e.exec(`DELETE FROM entraprov.desired_users WHERE external_id = $1`, id)
		}
	}
	ps := e.people(6, 1)
	ann := ps[0]
	e.insert(ps[:3]...)
	runJob(hr, store.RunSucceeded)
	id := e.mustLive(ann.UPN).ID

	// ann moves to contractors, with a contractor hire; hr gets a leaver
	// and a hire.
	toContractors(ann.ExternalID)
	e.insert(ps[3])
	toContractors(ps[3].ExternalID)
	e.exec(`DELETE FROM entraprov.desired_users WHERE external_id = $1`, ps[1].ExternalID)
	e.insert(ps[4])
	runJob(hr, store.RunSucceeded) // disables ann (left hr's source) and the leaver
	r := runJob(co, store.RunPartial)
	op := e.opOf(r.ID, ann.ExternalID, esync.ActSkip)
	if op.Status != store.OpFailed || !strings.Contains(op.Message, "is managed by job hr (external_id "+ann.ExternalID+")") ||
		strings.Contains(op.Message, "unmanaged") {
		t.Fatalf("ann in contractors: %s %q; want failed naming job hr", op.Status, op.Message)
	}
	e.mustLive(ps[3].UPN)
	e.mustLive(ps[4].UPN)
	if e.mustLive(ps[1].UPN).AccountEnabled || e.mustLive(ann.UPN).AccountEnabled {
		t.Fatal("hr's leavers are not disabled")
	}
	// No flapping: neither job writes again.
	for i := 0; i < 2; i++ {
		e.sim.ResetCounters()
		runJob(hr, store.RunSucceeded)
		runJob(co, store.RunPartial)
		if w := e.sim.Counters().Writes; w != 0 {
			t.Fatalf("round %d: the two jobs wrote %d times; want none (no flapping)", i, w)
		}
	}
	shared, err := e.st.SharedLinks(e.ctx)
	if err != nil || len(shared) != 0 {
		t.Fatalf("SharedLinks = %v, %v; want none", shared, err)
	}

	// Hand-over (README): hr no longer wants ann; its link is released and
	// contractors adopts the account at its next run.
	e.exec(`DELETE FROM entraprov.directory_links WHERE job = 'hr' AND external_id = $1`, ann.ExternalID)
	r = runJob(co, store.RunSucceeded)
	if op := e.opOf(r.ID, ann.ExternalID, esync.ActAdopt); op.Status != store.OpSucceeded || op.ObjectID != id {
		t.Fatalf("adoption after the hand-over: %+v; want ann's account %s adopted", op, id)
	}
	if u := e.mustLive(ann.UPN); u.ID != id || !u.AccountEnabled {
		t.Fatalf("ann after the hand-over: object %s enabled %v; want her account enabled", u.ID, u.AccountEnabled)
	}
	e.sim.ResetCounters()
	runJob(hr, store.RunSucceeded)
	runJob(co, store.RunSucceeded)
	if w := e.sim.Counters().Writes; w != 0 {
		t.Fatalf("after the hand-over the jobs wrote %d times; want none", w)
	}

	// A double link made by hand (or before this change) is what worker
	// check lists. The database refuses one since migration 009; the
	// second links it found are marked legacy_shared, as here.
	if _, err := e.st.Pool().Exec(e.ctx, `INSERT INTO entraprov.directory_links (job, external_id, object_id, state) VALUES ('hr', 'LEGACY', $1, 'active')`, id); !store.IsOwnerConflict(err) {
		t.Fatalf("a second link to %s by hand: %v; want refused by directory_links_owner_key", id, err)
	}
	e.exec(`INSERT INTO entraprov.directory_links (job, external_id, object_id, state, legacy_shared) VALUES ('hr', 'LEGACY', $1, 'active', true)`, id)
	shared, err = e.st.SharedLinks(e.ctx)
	if err != nil || len(shared) != 1 || shared[0].ObjectID != id ||
		strings.Join(shared[0].Links, ",") != "contractors/"+ann.ExternalID+",hr/LEGACY" {
		t.Fatalf("SharedLinks = %+v, %v; want %s linked by both jobs", shared, err, id)
	}
	// And neither job acts on it meanwhile: hr would disable it (LEGACY is
	// not in its source), contractors would change its title.
	e.exec(`UPDATE entraprov.contractors SET job_title = 'Contractor' WHERE external_id = $1`, ann.ExternalID)
	e.sim.ResetCounters()
	rh := runJob(hr, store.RunPartial)
	rc := runJob(co, store.RunPartial)
	if w := e.sim.Counters().Writes; w != 0 {
		t.Fatalf("the jobs wrote %d times to an account both link; want none", w)
	}
	if op := e.opOf(rh.ID, "LEGACY", esync.ActDisable); op.Status != store.OpFailed || !strings.Contains(op.Message, "also linked by job contractors/"+ann.ExternalID) {
		t.Fatalf("hr's disable of the shared account: %s %q; want refused naming contractors", op.Status, op.Message)
	}
	if op := e.opOf(rc.ID, ann.ExternalID, esync.ActUpdate); op.Status != store.OpFailed || !strings.Contains(op.Message, "also linked by job hr/LEGACY") {
		t.Fatalf("contractors' update of the shared account: %s %q; want refused naming hr", op.Status, op.Message)
	}
}
