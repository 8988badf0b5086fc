package directory_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/graphsim"
	"github.com/entraprov/entraprov/internal/profile"
)

// collect runs one delta round and returns its users by id.
func collect(t *testing.T, e *env, link string) (map[string]directory.User, string, bool) {
	t.Helper()
	got := map[string]directory.User{}
	next, full, err := e.c.Delta(context.Background(), link, nil, func(u directory.User) error {
		got[u.ObjectID] = u
		return nil
	})
	if err != nil {
		t.Fatalf("delta: %v", err)
	}
	return got, next, full
}

// TestDeltaReadsManagers: a full read knows every user's manager (none
// included); an incremental round knows it for the users whose manager was
// set, changed or removed, and leaves it unknown for users changed
// otherwise, whose manager did not change.
func TestDeltaReadsManagers(t *testing.T) {
	e := newEnv(t, graphsim.Options{}, nil)
	ctx := context.Background()
	add := func(name, manager string) string {
		return e.sim.AddUser(e.seeded.TenantID, graphsim.UserSeed{UserPrincipalName: name + "@" + e.seeded.Domain,
			DisplayName: name, AccountEnabled: true, ManagerID: manager})
	}
	boss := add("boss", "")
	deputy := add("deputy", "")
	a, b, c, d := add("a", boss), add("b", boss), add("c", ""), add("d", boss)

	full, link, isFull := collect(t, e, "")
	if !isFull {
		t.Fatal("first read is not full")
	}
	for id, want := range map[string]string{boss: "", deputy: "", a: boss, b: boss, c: "", d: boss} {
		u := full[id]
		if !u.ManagerKnown || u.ManagerObjectID != want {
			t.Errorf("full read: %s manager %q known %v; want %q known", u.UPN(), u.ManagerObjectID, u.ManagerKnown, want)
		}
	}

	res, _ := run(t, ctx, e.c, []directory.Operation{
		{Key: 1, Kind: directory.OpRemoveManager, ObjectID: a},
		{Key: 2, Kind: directory.OpSetManager, ObjectID: b, RelatedID: deputy},
		{Key: 3, Kind: directory.OpSetManager, ObjectID: c, RelatedID: boss},
		{Key: 4, Kind: directory.OpUpdate, ObjectID: d, Fields: map[string]any{"department": "Moved"}},
	})
	for _, r := range res {
		if r.Outcome != directory.Succeeded {
			t.Fatalf("%+v", r)
		}
	}
	round, _, isFull := collect(t, e, link)
	if isFull {
		t.Fatal("incremental read fell back to a full one")
	}
	for id, want := range map[string]string{a: "", b: deputy, c: boss} {
		u, ok := round[id]
		if !ok || !u.ManagerKnown || u.ManagerObjectID != want {
			t.Errorf("incremental: %s present %v manager %q known %v; want %q known", id, ok, u.ManagerObjectID, u.ManagerKnown, want)
		}
	}
	if u, ok := round[d]; !ok || u.Get(profile.Department) != "Moved" || (u.ManagerKnown && u.ManagerObjectID != boss) {
		t.Errorf("incremental: d = %+v (present %v); want the department change, manager unknown or unchanged", u, ok)
	}
	if _, ok := round[boss]; ok {
		t.Errorf("incremental: an unchanged user was returned")
	}

	// A link stored before the manager was selected (no mark) would never
	// carry manager@delta: it is replaced by a full read.
	before, _, ok := strings.Cut(link, "#")
	if !ok {
		t.Fatalf("delta link %q carries no manager mark", link)
	}
	again, _, isFull := collect(t, e, before)
	if !isFull || !again[a].ManagerKnown || again[c].ManagerObjectID != boss {
		t.Fatalf("old-style link: full %v, a %+v, c %+v; want a full read knowing managers", isFull, again[a], again[c])
	}
}

// TestDeletedUsers: only ids in deleted items come back, marked removed
// "changed"; a purged id and a live one are left out.
func TestDeletedUsers(t *testing.T) {
	e := newEnv(t, graphsim.Options{}, nil)
	ctx := context.Background()
	var ids []string
	for i := range 3 {
		ids = append(ids, e.sim.AddUser(e.seeded.TenantID, graphsim.UserSeed{UserPrincipalName: fmt.Sprintf("x%d@%s", i, e.seeded.Domain),
			DisplayName: fmt.Sprintf("X%d", i), EmployeeID: fmt.Sprintf("X%d", i), AccountEnabled: true}))
	}
	res, _ := run(t, ctx, e.c, []directory.Operation{
		{Key: 1, Kind: directory.OpDelete, ObjectID: ids[0]},
		{Key: 2, Kind: directory.OpDelete, ObjectID: ids[1]},
	})
	for _, r := range res {
		if r.Outcome != directory.Succeeded {
			t.Fatalf("%+v", r)
		}
	}
	purge(t, e, ids[1])
	got, err := e.c.DeletedUsers(ctx, append(ids, "00000000-0000-0000-0000-000000000404"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ObjectID != ids[0] || !got[0].Deleted || got[0].Get(profile.EmployeeID) != "X0" ||
		got[0].UPN() != "x0@"+e.seeded.Domain {
		t.Fatalf("DeletedUsers = %+v; want only x0, removed changed, with its properties", got)
	}
	if got, err := e.c.DeletedUsers(ctx, nil); err != nil || len(got) != 0 {
		t.Fatalf("no ids: %v %v", got, err)
	}
}

// purge deletes a soft-deleted user for good, through the SDK.
func purge(t *testing.T, e *env, id string) {
	t.Helper()
	if err := e.c.SDK().Directory().DeletedItems().ByDirectoryObjectId(id).Delete(context.Background(), nil); err != nil {
		t.Fatalf("purge %s: %v", id, err)
	}
}
