package sync_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/graphsim"
	"github.com/entraprov/entraprov/internal/store"
	esync "github.com/entraprov/entraprov/internal/sync"
)

// TestConvergesUnderReplicationLag runs hires with managers and groups,
// leavers past their grace period and rehires (restore, then enable)
// against a directory that hides every new or restored user for 2 s (the
// systest and soak default, see scripts/lib/harness.sh), with the worker's
// own retry backoff: each run succeeds in one go, the manager and group
// writes meet the lag (404) and get through.
func TestConvergesUnderReplicationLag(t *testing.T) {
	t.Parallel()
	e := newEnv(t, graphsim.Options{ConsistencyDelay: 2 * time.Second})
	e.MinBackoff, e.MaxBackoff = 0, 0 // the worker's defaults
	all, eng := e.seeded.GroupIDs["All Staff"], e.seeded.GroupIDs["Engineering"]
	ps := e.people(6, 1)
	ps[0].Manager = "E000006" // created last
	for i := 1; i < 6; i++ {
		ps[i].Manager = "E000001"
		ps[i].Groups = []string{all, eng}
	}
	e.insert(ps...)

	r := e.run(esync.RunOptions{}, store.RunSucceeded)
	if r.Counts.ByAction["create"] != 6 || r.Counts.ByAction["manager"] != 6 || r.Counts.ByAction["group_add"] != 10 {
		t.Fatalf("counts %v; want 6 creates, 6 managers, 10 group adds", r.Counts)
	}
	boss := e.user(ps[0].UPN).ID
	for _, p := range ps[1:] {
		u := e.user(p.UPN)
		if u.ManagerID != boss || !slices.Contains(e.sim.GroupMembers(e.seeded.TenantID, eng), u.ID) {
			t.Fatalf("%s: manager %q, Engineering member %v; want %s and yes", p.ExternalID, u.ManagerID, slices.Contains(e.sim.GroupMembers(e.seeded.TenantID, eng), u.ID), boss)
		}
	}
	if e.user(ps[0].UPN).ManagerID != e.user(ps[5].UPN).ID {
		t.Fatal("manager created after its report was not set")
	}
	lagged := 0
	for k, n := range e.sim.Counters().Steps {
		if strings.HasSuffix(k, " 404") {
			lagged += int(n)
		}
	}
	if lagged == 0 {
		t.Fatal("no write met the replication lag: the test does not exercise it")
	}
	if d := e.sim.Counters().Duplicates(); len(d) > 0 {
		t.Fatalf("duplicate creates: %v", d)
	}

	// Two leavers, deleted after the grace period, then rehired: restored
	// (the same object, invisible again for 2 s) and enabled in one run.
	e.exec(`DELETE FROM entraprov.desired_users WHERE external_id IN ('E000004', 'E000005')`)
	e.run(esync.RunOptions{}, store.RunSucceeded)
	e.advance(31 * 24 * time.Hour)
	if r := e.run(esync.RunOptions{}, store.RunSucceeded); r.Counts.ByAction["delete"] != 2 {
		t.Fatalf("counts %v; want 2 deletes", r.Counts)
	}
	gone := e.user(ps[3].UPN).ID
	e.insert(ps[3:5]...)
	r = e.run(esync.RunOptions{}, store.RunSucceeded)
	if r.Counts.ByAction["restore"] != 2 || r.Counts.ByAction["enable"] != 2 {
		t.Fatalf("counts %v; want 2 restores and 2 enables", r.Counts)
	}
	if u := e.user(ps[3].UPN); u.Deleted || !u.AccountEnabled || u.ID != gone || u.ManagerID != boss {
		t.Fatalf("rehired user %+v; want object %s live, enabled, manager %s", u, gone, boss)
	}
	if p := e.ops(r.ID, store.OpFailed); len(p) != 0 {
		t.Fatalf("failed operations under lag: %+v", p)
	}
}
