package graphsim_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/entraprov/entraprov/internal/graphsim"
)

// deltaRound reads one delta round from link to its deltaLink and returns
// the items by id and the next deltaLink (both relative to the Graph URL).
func deltaRound(t *testing.T, r *raw, srv *graphsim.Server, link string) (map[string]map[string]any, string) {
	t.Helper()
	got := map[string]map[string]any{}
	for {
		a := r.do("GET", link, nil)
		if a.status != 200 {
			t.Fatalf("GET %s: %d %v", link, a.status, a.body)
		}
		for _, v := range a.body["value"].([]any) {
			m := v.(map[string]any)
			got[m["id"].(string)] = m
		}
		if dl, ok := a.body["@odata.deltaLink"].(string); ok {
			return got, strings.TrimPrefix(dl, srv.GraphURL)
		}
		link = strings.TrimPrefix(a.body["@odata.nextLink"].(string), srv.GraphURL)
	}
}

// managerDelta renders an item's manager@delta as "id" or "-id" (removed),
// "" when the item has none.
func managerDelta(item map[string]any) string {
	md, ok := item["manager@delta"].([]any)
	if !ok {
		return ""
	}
	var parts []string
	for _, e := range md {
		m := e.(map[string]any)
		if m["@odata.type"] != "#microsoft.graph.user" {
			return fmt.Sprintf("bad @odata.type %v", m["@odata.type"])
		}
		s := m["id"].(string)
		if _, removed := m["@removed"]; removed {
			s = "-" + s
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ",")
}

// TestDeltaTracksManagerWhenSelected: with manager in $select, the full
// read carries manager@delta for users that have one; a manager set,
// changed or removed later makes the user appear in the next round with
// the new manager or the removal; a soft-deleted manager counts as none;
// without manager in $select, nothing of it is returned.
func TestDeltaTracksManagerWhenSelected(t *testing.T) {
	_, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{})
	r := newRaw(t, srv, seeded)
	var ids []string
	for i := range 6 {
		ids = append(ids, r.mustCreate(fmt.Sprintf("m%d@%s", i, seeded.Domain)))
	}
	boss, other, a, b, c, gone := ids[0], ids[1], ids[2], ids[3], ids[4], ids[5]
	setManager := func(user, manager string) {
		t.Helper()
		if ans := r.do("PUT", "/users/"+user+"/manager/$ref", map[string]any{"@odata.id": srv.GraphURL + "/users/" + manager}); ans.status != 204 {
			t.Fatalf("set manager: %d %v", ans.status, ans.body)
		}
	}
	setManager(a, boss)
	setManager(b, boss)
	setManager(c, gone)
	if ans := r.do("DELETE", "/users/"+gone, nil); ans.status != 204 {
		t.Fatalf("delete: %d", ans.status)
	}

	full, link := deltaRound(t, r, srv, "/users/delta?$select=displayName,manager")
	want := map[string]string{boss: "", other: "", a: boss, b: boss, c: ""}
	for id, w := range want {
		if got := managerDelta(full[id]); got != w {
			t.Errorf("full read: manager@delta of %s = %q; want %q", id, got, w)
		}
	}
	if _, ok := full[gone]; ok {
		t.Errorf("full read returned the soft-deleted user")
	}

	// Quiet: nothing.
	quiet, link := deltaRound(t, r, srv, link)
	if len(quiet) != 0 {
		t.Fatalf("no change, yet %v", quiet)
	}

	r.do("DELETE", "/users/"+a+"/manager/$ref", nil) // removed
	setManager(b, other)                             // changed
	setManager(other, boss)                          // set
	round, _ := deltaRound(t, r, srv, link)
	want = map[string]string{a: "-" + boss, b: other, other: boss}
	if len(round) != len(want) {
		t.Errorf("round after manager changes has %d users; want %d: %v", len(round), len(want), round)
	}
	for id, w := range want {
		if got := managerDelta(round[id]); got != w {
			t.Errorf("after the changes: manager@delta of %s = %q; want %q (item %v)", id, got, w, round[id])
		}
	}

	plain, _ := deltaRound(t, r, srv, "/users/delta?$select=displayName")
	for id, item := range plain {
		if _, ok := item["manager@delta"]; ok {
			t.Fatalf("manager not selected, yet %s has manager@delta", id)
		}
	}
}
