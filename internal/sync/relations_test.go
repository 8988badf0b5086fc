package sync_test

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/graphsim"
	"github.com/entraprov/entraprov/internal/store"
	esync "github.com/entraprov/entraprov/internal/sync"
)

// TestManagerChainAndGroups: managers are set once both users exist (in the
// same run, even when created together), and group memberships change only
// among those the worker manages.
func TestManagerChainAndGroups(t *testing.T) {
	t.Parallel()
	e := newEnv(t, graphsim.Options{})
	all, eng, sales := e.seeded.GroupIDs["All Staff"], e.seeded.GroupIDs["Engineering"], e.seeded.GroupIDs["Sales"]
	ps := e.people(5, 1)
	// Created in the "wrong" order for managers: E000001's manager is the last.
	ps[0].Manager = "E000003"
	ps[1].Manager = "E000001"
	ps[2].Manager = ""
	ps[3].Manager = "E000002"
	ps[4].Manager = "E999999" // not in the source
	ps[0].Groups = []string{all, eng}
	ps[1].Groups = []string{all}
	e.insert(ps...)

	r := e.run(esync.RunOptions{}, store.RunPartial)
	id := func(i int) string { return e.user(ps[i].UPN).ID }
	for _, c := range []struct{ user, manager int }{{0, 2}, {1, 0}, {3, 1}} {
		if got := e.user(ps[c.user].UPN).ManagerID; got != id(c.manager) {
			t.Errorf("manager of %s = %q; want %s", ps[c.user].ExternalID, got, id(c.manager))
		}
	}
	if got := e.user(ps[4].UPN).ManagerID; got != "" {
		t.Errorf("manager of the user whose manager is missing = %q; want none", got)
	}
	failed := e.ops(r.ID, store.OpFailed)
	if len(failed) != 1 || failed[0].ExternalID != "E000005" || failed[0].Action != "manager" ||
		!strings.Contains(failed[0].Message, `manager_external_id "E999999": no user with this external_id is provisioned`) {
		t.Fatalf("failed operations %+v; want E000005's manager, not found", failed)
	}
	if r.Counts.ByAction["manager"] != 4 || r.Counts.ByAction["group_add"] != 3 {
		t.Fatalf("counts %v; want 4 manager and 3 group_add operations", r.Counts)
	}
	if m := e.sim.GroupMembers(e.seeded.TenantID, eng); !slices.Contains(m, id(0)) {
		t.Fatalf("Engineering members %v; want %s", m, id(0))
	}

	// Someone adds user 1 to Sales by hand: not ours, never removed.
	manual(t, e, directory.Operation{Key: 1, Kind: directory.OpAddMember, ObjectID: id(0), RelatedID: sales})
	// Source: user 1 leaves Engineering, joins nothing else; user 2's
	// manager is cleared; user 4 now reports to user 1.
	e.exec(`UPDATE entraprov.desired_users SET groups = ARRAY[$1] WHERE external_id = 'E000001'`, all)
	e.exec(`UPDATE entraprov.desired_users SET manager_external_id = NULL WHERE external_id = 'E000002'`)
	e.exec(`UPDATE entraprov.desired_users SET manager_external_id = 'E000001' WHERE external_id = 'E000004'`)
	e.exec(`UPDATE entraprov.desired_users SET manager_external_id = NULL WHERE external_id = 'E000005'`)
	r = e.run(esync.RunOptions{}, store.RunSucceeded)
	if r.Counts.ByAction["group_remove"] != 1 || r.Counts.ByAction["manager"] != 2 {
		t.Fatalf("counts %v; want 1 group_remove and 2 manager operations", r.Counts)
	}
	if m := e.sim.GroupMembers(e.seeded.TenantID, eng); slices.Contains(m, id(0)) {
		t.Fatal("user 1 still in Engineering")
	}
	if m := e.sim.GroupMembers(e.seeded.TenantID, sales); !slices.Contains(m, id(0)) {
		t.Fatal("the hand-made Sales membership was removed; the worker must touch only memberships it manages")
	}
	if got := e.user(ps[1].UPN).ManagerID; got != "" {
		t.Errorf("manager of user 2 = %q; want removed", got)
	}
	if got := e.user(ps[3].UPN).ManagerID; got != id(0) {
		t.Errorf("manager of user 4 = %q; want %s", got, id(0))
	}
	// And then it is quiet.
	e.sim.ResetCounters()
	e.run(esync.RunOptions{}, store.RunSucceeded)
	if w := e.sim.Counters().Writes; w != 0 {
		t.Fatalf("a settled job wrote %d times", w)
	}
}

// TestGroupRemovalThatAlreadyLanded (found by make soak, seed 4242): a run
// killed (or whose answer was lost) after Graph removed a membership but
// before the link forgot it leaves the link recording a group the user is
// no longer in. The next run's group_remove then meets 404 ("does not
// exist or one of its queried reference-property objects are not
// present"). Before, that failed the user in every run, after the
// replication-lag retries (14 s a run in the soak), and the job never
// converged; now the membership is gone, which is what the source wants:
// the removal succeeds ("not a member"), the link forgets the group, and
// the next run is quiet.
func TestGroupRemovalThatAlreadyLanded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, graphsim.Options{})
	eng := e.seeded.GroupIDs["Engineering"]
	ps := e.people(2, 1)
	ps[0].Groups = []string{eng}
	e.insert(ps...)
	e.run(esync.RunOptions{}, store.RunSucceeded)
	id := e.user(ps[0].UPN).ID

	// The removal an interrupted run sent and never recorded.
	manual(t, e, directory.Operation{Key: 1, Kind: directory.OpRemoveMember, ObjectID: id, RelatedID: eng})
	e.exec(`UPDATE entraprov.desired_users SET groups = '{}' WHERE external_id = $1`, ps[0].ExternalID)
	e.exec(`UPDATE entraprov.desired_users SET job_title = 'Changed' WHERE external_id = $1`, ps[1].ExternalID)
	r := e.run(esync.RunOptions{}, store.RunSucceeded)
	op := e.opOf(r.ID, ps[0].ExternalID, esync.ActGroupRemove)
	if op.Status != store.OpSucceeded || !strings.Contains(op.Message, "not a member") {
		t.Fatalf("group_remove of a membership already gone: %s %q; want succeeded, not a member", op.Status, op.Message)
	}
	if g := e.links()[ps[0].ExternalID].Groups; len(g) != 0 {
		t.Fatalf("the link still records groups %v; want none", g)
	}
	if m := e.sim.GroupMembers(e.seeded.TenantID, eng); slices.Contains(m, id) {
		t.Fatal("the user is in Engineering again")
	}
	e.quiet(store.RunSucceeded)
}

// manual performs one write as "someone else" with its own client.
func manual(t *testing.T, e *env, op directory.Operation) {
	t.Helper()
	c, err := directory.New(e.ctx, e.job, directory.Options{HTTPClient: e.Srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	ops, res := make(chan directory.Operation, 1), make(chan directory.Result, 1)
	ops <- op
	close(ops)
	c.Execute(context.Background(), ops, res)
	if r := <-res; r.Outcome != directory.Succeeded {
		t.Fatalf("manual %s: %v", op, r.Err)
	}
}

// TestAdoption: a pre-existing user with the desired UPN is left alone
// unless the job's matching rule accepts it; then it is linked and updated,
// never duplicated.
func TestAdoption(t *testing.T) {
	t.Parallel()
	e := newEnv(t, graphsim.Options{})
	p := e.people(1, 7)[0]
	existing := e.sim.AddUser(e.seeded.TenantID, graphsim.UserSeed{UserPrincipalName: p.UPN, DisplayName: "Old Name",
		EmployeeID: p.EmployeeID, AccountEnabled: true})
	e.insert(p)

	r := e.run(esync.RunOptions{}, store.RunPartial)
	f := e.ops(r.ID, store.OpFailed)
	if len(f) != 1 || f[0].Action != "skip" || !strings.Contains(f[0].Message,
		"conflict: an unmanaged user ("+existing+", "+p.UPN+") already has this UPN ("+p.UPN+"); set matching.adopt_by or rename") {
		t.Fatalf("operations %+v; want one conflict", f)
	}
	if c := e.sim.Counters(); c.Writes != 0 || len(c.Patches) != 0 {
		t.Fatalf("the unmanaged user was written to (%d writes)", c.Writes)
	}

	e.job.Matching.AdoptBy = "employee_id"
	r = e.run(esync.RunOptions{}, store.RunSucceeded)
	if r.Counts.ByAction["adopt"] != 1 {
		t.Fatalf("counts %v; want one adoption", r.Counts)
	}
	u := e.user(p.UPN)
	if u.ID != existing || u.DisplayName != p.DisplayName {
		t.Fatalf("user %+v; want %s adopted and renamed to %q", u, existing, p.DisplayName)
	}
	if n := len(e.live()); n != 1 {
		t.Fatalf("%d users; want 1", n)
	}
	l, err := e.st.GetLink(e.ctx, "hr", p.ExternalID)
	if err != nil || l.ObjectID != existing || l.State != store.LinkActive {
		t.Fatalf("link %+v (%v); want active on %s", l, err, existing)
	}
}

// TestSignInFailureFailsTheRun: a rejected client secret fails the run
// before anything is planned, and the summary says what to do about it.
func TestSignInFailureFailsTheRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t, graphsim.Options{})
	e.insert(e.people(3, 1)...)
	if err := os.WriteFile(e.job.Auth.Secret.File, []byte("not-the-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := e.run(esync.RunOptions{}, store.RunFailed)
	t.Logf("summary: %s", r.ErrorSummary)
	if !strings.Contains(r.ErrorSummary, "7000215") {
		t.Fatalf("summary %q; want the AADSTS code and advice", r.ErrorSummary)
	}
	if ops := e.ops(r.ID, ""); len(ops) != 0 {
		t.Fatalf("a run that could not sign in recorded %d operations", len(ops))
	}
	st, err := e.st.GetJobState(e.ctx, "hr")
	if err != nil || st.ConsecutiveFailures != 1 || st.LastRunID != r.ID {
		t.Fatalf("job state %+v (%v); want one consecutive failure and the run id", st, err)
	}
}
