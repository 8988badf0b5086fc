package sync_test

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/graphsim"
	"github.com/entraprov/entraprov/internal/store"
	esync "github.com/entraprov/entraprov/internal/sync"
)

// TestLifecycle walks 1,000 users through a year of HR events and checks
// the directory and the history after each run.
func TestLifecycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t, graphsim.Options{})
	people := e.people(1000, 1)
	e.insert(people...)

	// Initial load: every user created once, links active, history complete.
	r := e.run(esync.RunOptions{}, store.RunSucceeded)
	if r.Counts.ByAction["create"] != 1000 || r.Counts.ByStatus["succeeded"] != 1000 {
		t.Fatalf("counts = %v; want 1000 creates succeeded", r.Counts)
	}
	live := e.live()
	if len(live) != 1000 {
		t.Fatalf("directory holds %d users; want 1000", len(live))
	}
	u := live[strings.ToLower(people[41].UPN)]
	if u.DisplayName != people[41].DisplayName || u.EmployeeID != people[41].EmployeeID || u.MailNickname != "user000042" ||
		u.Properties["department"] != people[41].Department || u.Properties["usageLocation"] != "DE" || !u.AccountEnabled {
		t.Fatalf("user 42 = %+v; want the source's attributes", u)
	}
	if d := e.sim.Counters().Duplicates(); len(d) > 0 {
		t.Fatalf("duplicate creates: %v", d)
	}
	if s := e.linkStates(); s[store.LinkActive] != 1000 {
		t.Fatalf("links = %v; want 1000 active", s)
	}
	if p := e.ops(r.ID, store.OpPending); len(p) != 0 {
		t.Fatalf("%d operations still pending after the run", len(p))
	}

	// Nothing changed: only the delta request, no operation rows.
	e.sim.ResetCounters()
	r = e.run(esync.RunOptions{}, store.RunSucceeded)
	c := e.sim.Counters()
	if c.Batches != 0 || c.Writes != 0 {
		t.Fatalf("a no-change run sent %d batches, %d writes; want none", c.Batches, c.Writes)
	}
	if n := c.GraphRequests(); n != 1 {
		t.Fatalf("a no-change run made %d Graph requests (%v); want the delta read only", n, c.Requests)
	}
	if ops := e.ops(r.ID, ""); len(ops) != 0 || r.Counts.Unchanged != 1000 {
		t.Fatalf("no-change run recorded %d operations, counts %v; want 0 and 1000 unchanged", len(ops), r.Counts)
	}

	// 50 attribute changes: one PATCH each, carrying only what changed.
	e.exec(`UPDATE entraprov.desired_users SET job_title = 'Senior Engineer' WHERE external_id <= 'E000025'`)
	e.exec(`UPDATE entraprov.desired_users SET department = 'Platform', mobile_phone = '+49 30 1234' WHERE external_id > 'E000100' AND external_id <= 'E000125'`)
	e.sim.ResetCounters()
	r = e.run(esync.RunOptions{}, store.RunSucceeded)
	if r.Counts.ByAction["update"] != 50 {
		t.Fatalf("counts = %v; want 50 updates", r.Counts)
	}
	c = e.sim.Counters()
	if c.Writes != 50 {
		t.Fatalf("%d writes; want 50", c.Writes)
	}
	for id, bodies := range c.Patches {
		if len(bodies) != 1 {
			t.Fatalf("user %s patched %d times; want once", id, len(bodies))
		}
		keys := slices.Sorted(maps.Keys(bodies[0]))
		if !slices.Equal(keys, []string{"jobTitle"}) && !slices.Equal(keys, []string{"department", "mobilePhone"}) {
			t.Fatalf("PATCH body of %s has %v; want only the changed fields", id, keys)
		}
	}
	ops := e.ops(r.ID, "")
	if ops[0].Changes == nil || ops[0].Status != store.OpSucceeded || ops[0].HTTPStatus != 204 || ops[0].Attempts < 1 {
		t.Fatalf("operation row %+v; want changes, succeeded, 204", ops[0])
	}

	// A cleared attribute is sent as null.
	e.exec(`UPDATE entraprov.desired_users SET mobile_phone = NULL WHERE external_id = 'E000101'`)
	e.sim.ResetCounters()
	e.run(esync.RunOptions{}, store.RunSucceeded)
	id101 := e.user(people[100].UPN).ID
	if b := e.sim.Counters().Patches[id101]; len(b) != 1 || len(b[0]) != 1 || b[0]["mobilePhone"] != nil {
		t.Fatalf("PATCH bodies %v; want {mobilePhone: null}", b)
	}
	if _, ok := e.user(people[100].UPN).Properties["mobilePhone"]; ok && e.user(people[100].UPN).Properties["mobilePhone"] != nil {
		t.Fatalf("mobilePhone still set: %v", e.user(people[100].UPN).Properties["mobilePhone"])
	}

	// 20 leavers: disabled, not deleted.
	e.exec(`DELETE FROM entraprov.desired_users WHERE external_id > 'E000900' AND external_id <= 'E000920'`)
	r = e.run(esync.RunOptions{}, store.RunSucceeded)
	if r.Counts.ByAction["disable"] != 20 {
		t.Fatalf("counts = %v; want 20 disables", r.Counts)
	}
	for _, p := range people[900:920] {
		if u := e.user(p.UPN); u.AccountEnabled || u.Deleted {
			t.Fatalf("leaver %s enabled=%v deleted=%v; want disabled, not deleted", p.UPN, u.AccountEnabled, u.Deleted)
		}
	}

	// 5 rehires: enabled again, same objects.
	before := e.user(people[900].UPN).ID
	e.insert(people[900:905]...)
	r = e.run(esync.RunOptions{}, store.RunSucceeded)
	if r.Counts.ByAction["enable"] != 5 {
		t.Fatalf("counts = %v; want 5 enables", r.Counts)
	}
	if u := e.user(people[900].UPN); !u.AccountEnabled || u.ID != before {
		t.Fatalf("rehire %+v; want the same object enabled", u)
	}

	// Inside the grace period nothing is deleted; after it, the 15 are.
	e.advance(29 * 24 * time.Hour)
	r = e.run(esync.RunOptions{}, store.RunSucceeded)
	if r.Counts.ByAction["delete"] != 0 {
		t.Fatalf("deleted inside the grace period: %v", r.Counts)
	}
	e.advance(2 * 24 * time.Hour)
	r = e.run(esync.RunOptions{}, store.RunSucceeded)
	if r.Counts.ByAction["delete"] != 15 {
		t.Fatalf("counts = %v; want 15 deletes after the grace period", r.Counts)
	}
	for _, p := range people[905:920] {
		if u := e.user(p.UPN); !u.Deleted {
			t.Fatalf("%s not soft-deleted", p.UPN)
		}
	}
	if s := e.linkStates(); s[store.LinkDeleted] != 15 {
		t.Fatalf("links = %v; want 15 deleted", s)
	}

	// Three come back: restored (same object), then enabled in the same run.
	gone := e.user(people[910].UPN).ID
	e.insert(people[910:913]...)
	r = e.run(esync.RunOptions{}, store.RunSucceeded)
	if r.Counts.ByAction["restore"] != 3 || r.Counts.ByAction["enable"] != 3 {
		t.Fatalf("counts = %v; want 3 restores and 3 enables", r.Counts)
	}
	if u := e.user(people[910].UPN); u.Deleted || !u.AccountEnabled || u.ID != gone {
		t.Fatalf("restored user %+v; want the same object, live and enabled", u)
	}

	// A UPN rename patches the same object.
	e.exec(`UPDATE entraprov.desired_users SET user_principal_name = 'renamed.user@' || $1 WHERE external_id = 'E000002'`, e.seeded.Domain)
	id2 := e.user(people[1].UPN).ID
	r = e.run(esync.RunOptions{}, store.RunSucceeded)
	if u := e.user("renamed.user@" + e.seeded.Domain); u.ID != id2 || u.MailNickname != "renamed.user" {
		t.Fatalf("renamed user %+v; want object %s with the new UPN and mailNickname", u, id2)
	}

	// A dry run records its plan and writes nothing.
	e.exec(`UPDATE entraprov.desired_users SET job_title = 'Dry Run' WHERE external_id <= 'E000010'`)
	e.exec(`DELETE FROM entraprov.desired_users WHERE external_id = 'E000500'`)
	e.sim.ResetCounters()
	r = e.run(esync.RunOptions{Mode: esync.ModePlan}, store.RunSucceeded)
	if w := e.sim.Counters().Writes; w != 0 {
		t.Fatalf("plan wrote %d times to the directory", w)
	}
	planned := e.ops(r.ID, store.OpPlanned)
	if len(planned) != 11 || r.Mode != string(esync.ModePlan) {
		t.Fatalf("plan recorded %d planned operations (mode %s); want 11", len(planned), r.Mode)
	}
	if e.user(people[0].UPN).Properties["jobTitle"] == "Dry Run" || !e.user(people[499].UPN).AccountEnabled {
		t.Fatal("plan changed the directory")
	}
}
