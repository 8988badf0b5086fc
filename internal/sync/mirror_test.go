package sync_test

import (
	"strings"
	"testing"

	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/graphsim"
	"github.com/entraprov/entraprov/internal/store"
	esync "github.com/entraprov/entraprov/internal/sync"
)

// TestManagerChangedByHandIsPutBack: delta carries managers into the
// mirror, so a manager removed or changed by hand in the directory is seen
// by the next run and set again: exactly one write each, then quiet.
func TestManagerChangedByHandIsPutBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t, graphsim.Options{})
	ps := e.people(4, 1)
	ps[1].Manager, ps[2].Manager, ps[3].Manager = "E000001", "E000001", "E000001"
	e.insert(ps...)
	e.run(esync.RunOptions{}, store.RunSucceeded)
	id := func(i int) string { return e.user(ps[i].UPN).ID }
	boss := id(0)
	for i := 1; i < 4; i++ {
		if got := e.user(ps[i].UPN).ManagerID; got != boss {
			t.Fatalf("after the first run: manager of %s = %q; want %s", ps[i].ExternalID, got, boss)
		}
	}

	// By hand: E000003 loses its manager, E000004 reports to E000002.
	manual(t, e, directory.Operation{Key: 1, Kind: directory.OpRemoveManager, ObjectID: id(2)})
	manual(t, e, directory.Operation{Key: 1, Kind: directory.OpSetManager, ObjectID: id(3), RelatedID: id(1)})

	e.sim.ResetCounters()
	r := e.run(esync.RunOptions{}, store.RunSucceeded)
	if c := e.sim.Counters(); c.Writes != 2 || r.Counts.ByAction["manager"] != 2 || r.Counts.ByStatus["succeeded"] != 2 {
		t.Fatalf("repairing run: %d writes, counts %v; want exactly 2 manager writes", c.Writes, r.Counts)
	}
	for i := 1; i < 4; i++ {
		if got := e.user(ps[i].UPN).ManagerID; got != boss {
			t.Errorf("after the repairing run: manager of %s = %q; want %s", ps[i].ExternalID, got, boss)
		}
	}
	objects := map[string]bool{}
	for _, op := range e.ops(r.ID, store.OpSucceeded) {
		if op.Action != string(esync.ActManager) {
			t.Errorf("unexpected operation %+v", op)
		}
		objects[op.ObjectID] = true
	}
	if !objects[id(2)] || !objects[id(3)] {
		t.Errorf("manager operations on %v; want %s and %s", objects, id(2), id(3))
	}

	e.sim.ResetCounters()
	e.run(esync.RunOptions{}, store.RunSucceeded)
	if w := e.sim.Counters().Writes; w != 0 {
		t.Fatalf("the run after the repair wrote %d times; want 0", w)
	}
}

// TestSoftDeletedUserIsRestoredAfterAFullRead: a user deleted by hand while
// the delta link expires is not in the full read that follows; the engine
// finds it in deleted items and restores the same object (then brings it up
// to date) instead of creating a second account. A user purged for good is
// created again.
func TestSoftDeletedUserIsRestoredAfterAFullRead(t *testing.T) {
	t.Parallel()
	e := newEnv(t, graphsim.Options{})
	ps := e.people(3, 1)
	ps[1].Manager = "E000001"
	e.insert(ps...)
	e.run(esync.RunOptions{}, store.RunSucceeded)
	deletedID, purgedID := e.user(ps[1].UPN).ID, e.user(ps[2].UPN).ID

	manual(t, e, directory.Operation{Key: 1, Kind: directory.OpDelete, ObjectID: deletedID})
	manual(t, e, directory.Operation{Key: 1, Kind: directory.OpDelete, ObjectID: purgedID})
	c, err := directory.New(e.ctx, e.job, directory.Options{HTTPClient: e.Srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SDK().Directory().DeletedItems().ByDirectoryObjectId(purgedID).Delete(e.ctx, nil); err != nil {
		t.Fatalf("purge: %v", err)
	}
	e.sim.ExpireDeltaTokens(e.seeded.TenantID)

	e.sim.ResetCounters()
	r := e.run(esync.RunOptions{}, store.RunSucceeded)
	if r.Counts.ByAction["restore"] != 1 || r.Counts.ByAction["create"] != 1 {
		t.Fatalf("counts %v; want 1 restore (the soft-deleted user) and 1 create (the purged one)", r.Counts)
	}
	if got := e.sim.Counters().Requests["GET /v1.0/directory/deletedItems/{id} 200"] + e.sim.Counters().Requests["GET /v1.0/directory/deletedItems/{id} 404"]; got != 2 {
		t.Errorf("%d deleted-items lookups (%v); want 2, one per missing link", got, e.sim.Counters().Requests)
	}
	u := e.user(ps[1].UPN)
	if u.ID != deletedID || u.Deleted || !u.AccountEnabled || u.ManagerID != e.user(ps[0].UPN).ID {
		t.Fatalf("restored user %+v; want object %s, live, enabled, managed by E000001", u, deletedID)
	}
	var restores int
	for _, op := range e.ops(r.ID, store.OpSucceeded) {
		if op.Action == string(esync.ActRestore) {
			restores++
			if op.ObjectID != deletedID || op.ExternalID != ps[1].ExternalID {
				t.Errorf("restore operation %+v; want %s on %s", op, ps[1].ExternalID, deletedID)
			}
		}
	}
	if restores != 1 {
		t.Errorf("%d succeeded restore operations recorded; want 1", restores)
	}
	if u := e.user(ps[2].UPN); u.ID == purgedID || u.Deleted {
		t.Errorf("purged user: %+v; want a new live object", u)
	}
	live := e.live()
	if len(live) != 3 {
		t.Errorf("%d live users; want 3", len(live))
	}
	if d := e.sim.Counters().Duplicates(); len(d) > 0 {
		t.Fatalf("duplicate creates: %v", d)
	}
	for _, s := range e.sim.Users(e.seeded.TenantID) {
		if strings.EqualFold(s.UserPrincipalName, ps[1].UPN) && s.ID != deletedID {
			t.Fatalf("a second account %s for %s", s.ID, ps[1].UPN)
		}
	}

	e.sim.ResetCounters()
	e.run(esync.RunOptions{}, store.RunSucceeded)
	if w := e.sim.Counters().Writes; w != 0 {
		t.Fatalf("the run after the restore wrote %d times; want 0", w)
	}
}
