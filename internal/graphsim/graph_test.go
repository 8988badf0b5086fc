package graphsim_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/graphsim"
)

// TestCreateUserValidation: POST /users answers the documented 400s with
// Request_BadRequest and details, and never creates a user on error.
func TestCreateUserValidation(t *testing.T) {
	sim, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{})
	r := newRaw(t, srv, seeded)
	r.mustCreate("taken@" + seeded.Domain)
	with := func(k string, v any) map[string]any {
		b := userBody("new@" + seeded.Domain)
		if v == nil {
			delete(b, k)
		} else {
			b[k] = v
		}
		return b
	}
	cases := []struct {
		name          string
		body          map[string]any
		msg           string
		target, dcode string
	}{
		{"duplicate_upn_is_ObjectConflict", userBody("TAKEN@" + seeded.Domain), "Another object with the same value for property userPrincipalName already exists.", "userPrincipalName", "ObjectConflict"},
		{"unverified_domain", with("userPrincipalName", "new@elsewhere.example"), "The domain portion of the userPrincipalName property is invalid. You must use one of the verified domain names in your organization.", "userPrincipalName", "InvalidValue"},
		{"accent_in_upn", with("userPrincipalName", "josé@"+seeded.Domain), "Property userPrincipalName is invalid.", "userPrincipalName", "InvalidValue"},
		{"space_in_upn", with("userPrincipalName", "a b@"+seeded.Domain), "Property userPrincipalName is invalid.", "userPrincipalName", "InvalidValue"},
		{"no_password", with("passwordProfile", nil), "A password must be specified to create a new user.", "", ""},
		{"weak_password", with("passwordProfile", map[string]any{"password": "password"}), "The specified password does not comply with password complexity requirements. Please provide a different password.", "", ""},
		{"missing_mailNickname", with("mailNickname", nil), "Invalid value specified for property 'mailNickname' of resource 'User'.", "", ""},
		{"mailNickname_with_space", with("mailNickname", "a b"), "Invalid value specified for property 'mailNickname' of resource 'User'.", "", ""},
		{"mailNickname_too_long", with("mailNickname", strings.Repeat("a", 65)), "Invalid value specified for property 'mailNickname' of resource 'User'.", "", ""},
		{"missing_displayName", with("displayName", nil), "Invalid value specified for property 'displayName' of resource 'User'.", "", ""},
		{"missing_accountEnabled", with("accountEnabled", nil), "Invalid value specified for property 'accountEnabled' of resource 'User'.", "", ""},
		{"unknown_property", with("favouriteColour", "blue"), "Property 'favouriteColour' does not exist as a declared property or extension property.", "", ""},
		{"employeeId_over_16", with("employeeId", strings.Repeat("1", 17)), "Invalid value specified for property 'employeeId' of resource 'User'.", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := r.do("POST", "/users", tc.body)
			if a.status != 400 || a.code() != "Request_BadRequest" || a.message() != tc.msg {
				t.Fatalf("got %d %s %q", a.status, a.code(), a.message())
			}
			if tc.target != "" {
				d, _ := a.body["error"].(map[string]any)["details"].([]any)
				if len(d) != 1 || d[0].(map[string]any)["target"] != tc.target || d[0].(map[string]any)["code"] != tc.dcode {
					t.Fatalf("details %v", d)
				}
			}
			inner, _ := a.body["error"].(map[string]any)["innerError"].(map[string]any)
			if inner["request-id"] != a.header.Get("request-id") || inner["client-request-id"] == nil || inner["date"] == nil {
				t.Fatalf("innerError %v vs request-id %s", inner, a.header.Get("request-id"))
			}
		})
	}
	if n := len(sim.Users(seeded.TenantID)); n != 1 {
		t.Fatalf("%d users after failed creates, want 1", n)
	}
	t.Run("odata_type_and_allowed_punctuation_are_accepted", func(t *testing.T) {
		b := userBody("o'neil.x-y_z!#^~@" + seeded.Domain)
		b["@odata.type"] = "#microsoft.graph.user"
		if a := r.do("POST", "/users", b); a.status != 201 || a.header.Get("Location") == "" || a.body["passwordProfile"] != nil {
			t.Fatalf("%d %v", a.status, a.body)
		}
	})
}

// TestUserReadsAndPatch: get by id or UPN, 404 shape, $select, $filter,
// $top bounds, $count rules, and PATCH changing only what was sent.
func TestUserReadsAndPatch(t *testing.T) {
	sim, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{})
	r := newRaw(t, srv, seeded)
	id := r.mustCreate("ann@" + seeded.Domain)
	if a := r.do("PATCH", "/users/"+id, map[string]any{"employeeId": "E1", "department": "Ops"}); a.status != 204 {
		t.Fatalf("patch: %d %v", a.status, a.body)
	}
	for i := 0; i < 5; i++ {
		r.mustCreate(fmt.Sprintf("p%d@%s", i, seeded.Domain))
	}
	t.Run("get_by_upn", func(t *testing.T) {
		if a := r.do("GET", "/users/ann@"+seeded.Domain, nil); a.status != 200 || a.body["id"] != id {
			t.Fatalf("%d %v", a.status, a.body)
		}
	})
	t.Run("unknown_id_is_404_Request_ResourceNotFound", func(t *testing.T) {
		if a := r.do("GET", "/users/00000000-0000-0000-0000-00000000dead", nil); a.status != 404 || a.code() != "Request_ResourceNotFound" {
			t.Fatalf("%d %v", a.status, a.body)
		}
	})
	t.Run("select_returns_only_selected", func(t *testing.T) {
		a := r.do("GET", "/users/"+id+"?$select=id,department,employeeId", nil)
		if a.body["department"] != "Ops" || a.body["employeeId"] != "E1" || a.body["displayName"] != nil {
			t.Fatalf("%v", a.body)
		}
		if a := r.do("GET", "/users/"+id+"?$select=nosuch", nil); a.status != 400 {
			t.Fatalf("unknown select: %d", a.status)
		}
	})
	t.Run("filter_eq_on_indexed_properties", func(t *testing.T) {
		for _, f := range []string{"employeeId eq 'E1'", "userPrincipalName eq 'ANN@" + seeded.Domain + "'", "id eq '" + id + "'", "mailNickname eq 'ann'", "startswith(displayName,'User ann')", "department eq 'Ops' and accountEnabled eq true"} {
			a := r.do("GET", "/users?$filter="+urlq(f), nil)
			v, _ := a.body["value"].([]any)
			if a.status != 200 || len(v) != 1 {
				t.Fatalf("%s: %d %v", f, a.status, a.body)
			}
		}
	})
	t.Run("advanced_filter_needs_eventual_and_count", func(t *testing.T) {
		f := urlq("endswith(userPrincipalName,'@" + seeded.Domain + "')")
		if a := r.do("GET", "/users?$filter="+f, nil); a.status != 400 {
			t.Fatalf("without ConsistencyLevel: %d", a.status)
		}
		a := r.do("GET", "/users?$count=true&$filter="+f, nil, "ConsistencyLevel", "eventual")
		if a.status != 200 || a.body["@odata.count"] != float64(6) {
			t.Fatalf("%d %v", a.status, a.body["@odata.count"])
		}
	})
	t.Run("count_without_ConsistencyLevel_is_ignored", func(t *testing.T) {
		if a := r.do("GET", "/users?$count=true", nil); a.status != 200 || a.body["@odata.count"] != nil {
			t.Fatalf("%d %v", a.status, a.body["@odata.count"])
		}
	})
	t.Run("top_1000_is_400_with_documented_message", func(t *testing.T) {
		a := r.do("GET", "/users?$top=1000", nil)
		if a.status != 400 || a.message() != "Invalid page size specified: '1000'. Must be between 1 and 999 inclusive." {
			t.Fatalf("%d %q", a.status, a.message())
		}
	})
	t.Run("paging_follows_nextLink_without_duplicates", func(t *testing.T) {
		seen := map[string]bool{}
		link := srv.GraphURL + "/users?$top=4&$select=id"
		for link != "" {
			a := r.do("GET", strings.TrimPrefix(link, srv.GraphURL), nil)
			for _, v := range a.body["value"].([]any) {
				id := v.(map[string]any)["id"].(string)
				if seen[id] {
					t.Fatalf("duplicate %s", id)
				}
				seen[id] = true
			}
			link, _ = a.body["@odata.nextLink"].(string)
		}
		if len(seen) != 6 {
			t.Fatalf("paged %d users, want 6", len(seen))
		}
	})
	t.Run("patch_changes_only_sent_properties", func(t *testing.T) {
		if a := r.do("PATCH", "/users/"+id, map[string]any{"jobTitle": "Lead"}); a.status != 204 {
			t.Fatalf("%d", a.status)
		}
		st, _ := sim.User(seeded.TenantID, id)
		if st.Properties["jobTitle"] != "Lead" || st.Properties["department"] != "Ops" || st.EmployeeID != "E1" {
			t.Fatalf("%v", st.Properties)
		}
		if a := r.do("PATCH", "/users/"+id, map[string]any{"department": nil}); a.status != 204 {
			t.Fatalf("clear: %d", a.status)
		}
		if st, _ := sim.User(seeded.TenantID, id); st.Properties["department"] != nil {
			t.Fatal("null did not clear department")
		}
	})
	t.Run("patch_unknown_or_readonly_property_is_400", func(t *testing.T) {
		for _, b := range []map[string]any{{"nosuch": 1}, {"id": "x"}, {"accountEnabled": "yes"}} {
			if a := r.do("PATCH", "/users/"+id, b); a.status != 400 || a.code() != "Request_BadRequest" {
				t.Fatalf("%v: %d %v", b, a.status, a.body)
			}
		}
	})
	t.Run("patch_upn_to_taken_one_is_conflict", func(t *testing.T) {
		a := r.do("PATCH", "/users/"+id, map[string]any{"userPrincipalName": "p0@" + seeded.Domain})
		if a.status != 400 || !strings.Contains(a.message(), "already exists") {
			t.Fatalf("%d %v", a.status, a.body)
		}
	})
	t.Run("gzipped_body_is_accepted", func(t *testing.T) {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_ = json.NewEncoder(zw).Encode(map[string]any{"city": "Oslo"})
		zw.Close()
		req, _ := http.NewRequest("PATCH", srv.GraphURL+"/users/"+id, &buf)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Content-Encoding", "gzip")
		req.Header.Set("Authorization", "Bearer "+r.token)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if st, _ := sim.User(seeded.TenantID, id); resp.StatusCode != 204 || st.Properties["city"] != "Oslo" {
			t.Fatalf("%d %v", resp.StatusCode, st.Properties["city"])
		}
	})
	t.Run("request_ids_echo_client_request_id", func(t *testing.T) {
		a := r.do("GET", "/users/"+id, nil, "client-request-id", "abc-123")
		if a.header.Get("client-request-id") != "abc-123" || a.header.Get("request-id") == "" || a.header.Get("x-ms-resource-unit") != "1" {
			t.Fatalf("%v", a.header)
		}
	})
}

// TestSoftDeleteAndRestore: DELETE moves a user to deletedItems, restore
// brings it back, and a restore is refused when its UPN was reused.
func TestSoftDeleteAndRestore(t *testing.T) {
	sim, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{})
	r := newRaw(t, srv, seeded)
	id := r.mustCreate("leaver@" + seeded.Domain)
	if a := r.do("DELETE", "/users/"+id, nil); a.status != 204 {
		t.Fatalf("delete: %d", a.status)
	}
	if a := r.do("GET", "/users/"+id, nil); a.status != 404 {
		t.Fatalf("get deleted: %d", a.status)
	}
	if a := r.do("GET", "/directory/deletedItems/"+id, nil); a.status != 200 || a.body["deletedDateTime"] == nil {
		t.Fatalf("deletedItems: %d %v", a.status, a.body)
	}
	a := r.do("GET", "/directory/deletedItems/microsoft.graph.user", nil)
	if v, _ := a.body["value"].([]any); len(v) != 1 {
		t.Fatalf("deleted list: %v", a.body)
	}
	if st, _ := sim.User(seeded.TenantID, id); !st.Deleted {
		t.Fatal("state not deleted")
	}
	if a := r.do("POST", "/directory/deletedItems/"+id+"/restore", nil); a.status != 200 || a.body["id"] != id {
		t.Fatalf("restore: %d %v", a.status, a.body)
	}
	if a := r.do("GET", "/users/"+id, nil); a.status != 200 {
		t.Fatalf("get restored: %d", a.status)
	}
	// Delete again, reuse the UPN, and the restore conflicts.
	r.do("DELETE", "/users/"+id, nil)
	r.mustCreate("leaver@" + seeded.Domain)
	if a := r.do("POST", "/directory/deletedItems/"+id+"/restore", nil); a.status != 400 || !strings.Contains(a.message(), "already exists") {
		t.Fatalf("restore over reused UPN: %d %v", a.status, a.body)
	}
	if a := r.do("DELETE", "/directory/deletedItems/"+id, nil); a.status != 204 {
		t.Fatalf("purge: %d", a.status)
	}
	if a := r.do("GET", "/directory/deletedItems/"+id, nil); a.status != 404 {
		t.Fatalf("purged still listed: %d", a.status)
	}
}

// TestDeltaRemovedReasonsAndExpiry: soft delete → @removed changed,
// permanent delete → deleted, $deltatoken=latest, and an expired token
// answered 400 syncStateNotFound.
func TestDeltaRemovedReasonsAndExpiry(t *testing.T) {
	sim, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{})
	r := newRaw(t, srv, seeded)
	var ids []string
	for i := 0; i < 7; i++ {
		ids = append(ids, r.mustCreate(fmt.Sprintf("d%d@%s", i, seeded.Domain)))
	}
	// Initial read in pages of 3.
	link, pages, n := "/users/delta?$select=displayName,manager", 0, 0
	var deltaLink string
	for link != "" {
		a := r.do("GET", link, nil, "Prefer", "odata.maxpagesize=3")
		if a.status != 200 {
			t.Fatalf("delta: %d %v", a.status, a.body)
		}
		pages++
		n += len(a.body["value"].([]any))
		link = ""
		if nl, ok := a.body["@odata.nextLink"].(string); ok {
			link = strings.TrimPrefix(nl, srv.GraphURL)
		}
		if dl, ok := a.body["@odata.deltaLink"].(string); ok {
			deltaLink = strings.TrimPrefix(dl, srv.GraphURL)
		}
	}
	if n != 7 || pages != 3 || deltaLink == "" {
		t.Fatalf("initial: %d users in %d pages, deltaLink %q", n, pages, deltaLink)
	}
	r.do("DELETE", "/users/"+ids[0], nil)
	r.do("DELETE", "/users/"+ids[1], nil)
	r.do("DELETE", "/directory/deletedItems/"+ids[1], nil)
	r.do("PUT", "/users/"+ids[2]+"/manager/$ref", map[string]any{"@odata.id": srv.GraphURL + "/users/" + ids[3]})
	a := r.do("GET", deltaLink, nil)
	got := map[string]map[string]any{}
	for _, v := range a.body["value"].([]any) {
		m := v.(map[string]any)
		got[m["id"].(string)] = m
	}
	if len(got) != 3 {
		t.Fatalf("changes %v", got)
	}
	if rm, _ := got[ids[0]]["@removed"].(map[string]any); rm["reason"] != "changed" {
		t.Fatalf("soft-deleted: %v", got[ids[0]])
	}
	if rm, _ := got[ids[1]]["@removed"].(map[string]any); rm["reason"] != "deleted" {
		t.Fatalf("purged: %v", got[ids[1]])
	}
	if md, _ := got[ids[2]]["manager@delta"].([]any); len(md) != 1 || md[0].(map[string]any)["id"] != ids[3] {
		t.Fatalf("manager change: %v", got[ids[2]])
	}
	next := strings.TrimPrefix(a.body["@odata.deltaLink"].(string), srv.GraphURL)
	if a := r.do("GET", next, nil); len(a.body["value"].([]any)) != 0 {
		t.Fatalf("no changes expected: %v", a.body["value"])
	}
	t.Run("latest_returns_no_data_and_a_deltaLink", func(t *testing.T) {
		a := r.do("GET", "/users/delta?$deltatoken=latest", nil)
		if len(a.body["value"].([]any)) != 0 || a.body["@odata.deltaLink"] == nil {
			t.Fatalf("%v", a.body)
		}
	})
	t.Run("expired_token_is_400_syncStateNotFound", func(t *testing.T) {
		sim.ExpireDeltaTokens(seeded.TenantID)
		a := r.do("GET", next, nil)
		if a.status != 400 || a.code() != "syncStateNotFound" {
			t.Fatalf("%d %v", a.status, a.body)
		}
		if a := r.do("GET", "/users/delta?$deltatoken=garbage", nil); a.status != 400 || a.code() != "syncStateNotFound" {
			t.Fatalf("garbage token: %d", a.status)
		}
	})
}

// TestManagerAndGroups: manager $ref set/get/remove, and group member
// add/duplicate/remove with the documented answers.
func TestManagerAndGroups(t *testing.T) {
	sim, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{})
	r := newRaw(t, srv, seeded)
	boss, emp := r.mustCreate("boss@"+seeded.Domain), r.mustCreate("emp@"+seeded.Domain)
	if a := r.do("GET", "/users/"+emp+"/manager", nil); a.status != 404 {
		t.Fatalf("no manager: %d", a.status)
	}
	if a := r.do("PUT", "/users/"+emp+"/manager/$ref", map[string]any{"@odata.id": "https://graph.microsoft.com/v1.0/users/" + boss}); a.status != 204 {
		t.Fatalf("set manager: %d %v", a.status, a.body)
	}
	if a := r.do("GET", "/users/"+emp+"/manager", nil); a.status != 200 || a.body["id"] != boss {
		t.Fatalf("get manager: %d %v", a.status, a.body)
	}
	if st, _ := sim.User(seeded.TenantID, emp); st.ManagerID != boss {
		t.Fatalf("state manager %q", st.ManagerID)
	}
	if a := r.do("PUT", "/users/"+emp+"/manager/$ref", map[string]any{"@odata.id": "https://graph.microsoft.com/v1.0/users/00000000-0000-0000-0000-000000000404"}); a.status != 404 {
		t.Fatalf("unknown manager: %d", a.status)
	}
	if a := r.do("DELETE", "/users/"+emp+"/manager/$ref", nil); a.status != 204 {
		t.Fatalf("remove manager: %d", a.status)
	}
	g := seeded.GroupIDs["Engineering"]
	ref := map[string]any{"@odata.id": "https://graph.microsoft.com/v1.0/directoryObjects/" + emp}
	if a := r.do("POST", "/groups/"+g+"/members/$ref", ref); a.status != 204 {
		t.Fatalf("add member: %d %v", a.status, a.body)
	}
	a := r.do("POST", "/groups/"+g+"/members/$ref", ref)
	if a.status != 400 || !strings.HasPrefix(a.message(), "One or more added object references already exist") {
		t.Fatalf("duplicate member: %d %v", a.status, a.body)
	}
	if m := sim.GroupMembers(seeded.TenantID, g); len(m) != 1 || m[0] != emp {
		t.Fatalf("members %v", m)
	}
	if a := r.do("GET", "/groups/"+g+"/members", nil); len(a.body["value"].([]any)) != 1 || a.header.Get("x-ms-resource-unit") != "3" {
		t.Fatalf("list members: %v %v", a.body, a.header.Get("x-ms-resource-unit"))
	}
	if a := r.do("DELETE", "/groups/"+g+"/members/"+emp+"/$ref", nil); a.status != 204 {
		t.Fatalf("remove member: %d", a.status)
	}
	if a := r.do("DELETE", "/groups/"+g+"/members/"+emp+"/$ref", nil); a.status != 404 {
		t.Fatalf("remove non-member: %d", a.status)
	}
	if st, _ := sim.User(seeded.TenantID, emp); len(st.Groups) != 0 {
		t.Fatalf("groups %v", st.Groups)
	}
}

// TestEventualConsistency: a new user is invisible to reads and reference
// writes for ConsistencyDelay, then appears.
func TestEventualConsistency(t *testing.T) {
	// The emulator's clock stands still until the test moves it: "right
	// after create" holds however slow the machine is.
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	_, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{ConsistencyDelay: time.Second,
		Now: func() time.Time { return time.Unix(0, clock.Load()) }})
	r := newRaw(t, srv, seeded)
	id := r.mustCreate("fresh@" + seeded.Domain)
	if a := r.do("GET", "/users/"+id, nil); a.status != 404 {
		t.Fatalf("read right after create: %d", a.status)
	}
	ref := map[string]any{"@odata.id": "https://graph.microsoft.com/v1.0/directoryObjects/" + id}
	if a := r.do("POST", "/groups/"+seeded.GroupIDs["Sales"]+"/members/$ref", ref); a.status != 404 {
		t.Fatalf("ref write right after create: %d", a.status)
	}
	if a := r.do("POST", "/users", userBody("fresh@"+seeded.Domain)); a.status != 400 {
		t.Fatalf("duplicate must be seen at once: %d", a.status)
	}
	clock.Add(int64(999 * time.Millisecond))
	if a := r.do("GET", "/users/"+id, nil); a.status != 404 {
		t.Fatalf("read just before the delay ends: %d", a.status)
	}
	clock.Add(int64(time.Millisecond))
	if a := r.do("GET", "/users/"+id, nil); a.status != 200 {
		t.Fatalf("read after delay: %d", a.status)
	}
}

// TestFaults: injected 503/504 carry Retry-After; commit-before-fault
// writes happen although the client sees a 5xx; dropped connections
// surface as transport errors.
func TestFaults(t *testing.T) {
	sim, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{Seed: 7})
	r := newRaw(t, srv, seeded)
	sim.SetFaults(graphsim.Faults{Rate5xx: 1})
	a := r.do("GET", "/users", nil)
	if (a.status != 503 && a.status != 504) || a.header.Get("Retry-After") == "" {
		t.Fatalf("%d %v", a.status, a.header)
	}
	sim.SetFaults(graphsim.Faults{Rate5xx: 1, CommitBeforeFault: 1})
	if a := r.do("POST", "/users", userBody("ghost@"+seeded.Domain)); a.status < 500 {
		t.Fatalf("want 5xx, got %d", a.status)
	}
	if _, ok := sim.User(seeded.TenantID, "ghost@"+seeded.Domain); !ok {
		t.Fatal("commit-before-fault did not commit")
	}
	a = r.do("POST", "/$batch", batchOf(createStep("1", "batchghost@"+seeded.Domain)))
	if a.status < 500 {
		t.Fatalf("batch envelope: want 5xx, got %d", a.status)
	}
	if _, ok := sim.User(seeded.TenantID, "batchghost@"+seeded.Domain); !ok {
		t.Fatal("steps of a commit-before-fault batch did not run")
	}
	sim.SetFaults(graphsim.Faults{DropRate: 1})
	req, _ := http.NewRequest("GET", srv.GraphURL+"/users", nil)
	req.Header.Set("Authorization", "Bearer "+r.token)
	if resp, err := srv.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("dropped request answered %d", resp.StatusCode)
	}
	sim.SetFaults(graphsim.Faults{})
	if c := sim.Counters(); c.Faults < 3 || c.Dropped < 1 {
		t.Fatalf("faults %d dropped %d", c.Faults, c.Dropped)
	}
}

// TestLatencyScales: latency is applied and shrunk by TimeScale.
func TestLatencyScales(t *testing.T) {
	// 20 s unscaled: the upper bound tells scaled from unscaled with room
	// for a loaded machine.
	_, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{Latency: graphsim.Latency{Read: 20 * time.Second}, TimeScale: 100})
	r := newRaw(t, srv, seeded)
	start := time.Now()
	r.do("GET", "/users", nil)
	if d := time.Since(start); d < 195*time.Millisecond || d > 10*time.Second {
		t.Fatalf("read took %v, want about 200ms (20s / 100)", d)
	}
}

func TestParseFlags(t *testing.T) {
	l, err := graphsim.ParseLatency("read=10ms,write=30ms,jitter=0.2")
	if err != nil || l.Read != 10*time.Millisecond || l.Write != 30*time.Millisecond || l.Jitter != 0.2 {
		t.Fatalf("%+v %v", l, err)
	}
	if _, err := graphsim.ParseLatency("read=fast"); err == nil {
		t.Fatal("bad latency accepted")
	}
	f, err := graphsim.ParseFaults("5xx=0.01,drop=0.001,commit=0.5")
	if err != nil || f.Rate5xx != 0.01 || f.DropRate != 0.001 || f.CommitBeforeFault != 0.5 {
		t.Fatalf("%+v %v", f, err)
	}
	if _, err := graphsim.ParseFaults("5xx=2"); err == nil {
		t.Fatal("probability 2 accepted")
	}
}

func urlq(s string) string {
	return strings.NewReplacer(" ", "%20", "'", "%27", "@", "%40", "(", "%28", ")", "%29", ",", "%2C").Replace(s)
}

// TestExpandManagerAndBulkMembers: $expand=manager on get and list, and
// PATCH /groups/{id} with members@odata.bind (all or nothing).
func TestExpandManagerAndBulkMembers(t *testing.T) {
	sim, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{})
	r := newRaw(t, srv, seeded)
	boss, a1, a2 := r.mustCreate("boss@"+seeded.Domain), r.mustCreate("a1@"+seeded.Domain), r.mustCreate("a2@"+seeded.Domain)
	r.do("PUT", "/users/"+a1+"/manager/$ref", map[string]any{"@odata.id": srv.GraphURL + "/users/" + boss})
	a := r.do("GET", "/users/"+a1+"?$select=id&$expand=manager($select=id)", nil)
	if m, _ := a.body["manager"].(map[string]any); m["id"] != boss {
		t.Fatalf("expand on get: %v", a.body)
	}
	a = r.do("GET", "/users?$select=id&$expand=manager", nil)
	withManager := 0
	for _, v := range a.body["value"].([]any) {
		if _, ok := v.(map[string]any)["manager"]; ok {
			withManager++
		}
	}
	if withManager != 1 {
		t.Fatalf("expand on list: %v", a.body)
	}
	if a := r.do("GET", "/users?$expand=memberOf", nil); a.status != 400 {
		t.Fatalf("unsupported expand: %d", a.status)
	}
	g := seeded.GroupIDs["Sales"]
	bind := func(ids ...string) map[string]any {
		var refs []string
		for _, id := range ids {
			refs = append(refs, "https://graph.microsoft.com/v1.0/directoryObjects/"+id)
		}
		return map[string]any{"members@odata.bind": refs}
	}
	if a := r.do("PATCH", "/groups/"+g, bind(a1, a2)); a.status != 204 {
		t.Fatalf("bulk add: %d %v", a.status, a.body)
	}
	if a := r.do("PATCH", "/groups/"+g, bind(boss, a1)); a.status != 400 {
		t.Fatalf("bulk add with an existing member: %d", a.status)
	}
	if m := sim.GroupMembers(seeded.TenantID, g); len(m) != 2 {
		t.Fatalf("members %v (a failed bulk add must add nobody)", m)
	}
}

// TestFilterInUsesIndexAndMatchesScan: "in" over indexed properties gives
// the same answer as the scan would, including case-insensitive UPNs.
func TestFilterIn(t *testing.T) {
	sim, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{})
	r := newRaw(t, srv, seeded)
	for i := 0; i < 30; i++ {
		sim.AddUser(seeded.TenantID, graphsim.UserSeed{UserPrincipalName: fmt.Sprintf("f%02d@%s", i, seeded.Domain), DisplayName: "F", EmployeeID: fmt.Sprintf("E%02d", i%10), AccountEnabled: true})
	}
	cases := map[string]int{
		"employeeId in ('E01','E02')":                                                6,
		"userPrincipalName in ('F01@" + seeded.Domain + "','nobody')":                1,
		"employeeId in ('E01') and userPrincipalName eq 'f11@" + seeded.Domain + "'": 1,
		"displayName in ('F')":                                                       30,
	}
	for f, want := range cases {
		a := r.do("GET", "/users?$top=999&$filter="+urlq(f), nil)
		if v, _ := a.body["value"].([]any); a.status != 200 || len(v) != want {
			t.Fatalf("%s: %d users (status %d), want %d", f, len(v), a.status, want)
		}
	}
}

// TestDeltaReturnMinimal: with Prefer: return=minimal a changed user
// carries only what changed (a cleared property as null), plus id.
func TestDeltaReturnMinimal(t *testing.T) {
	_, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{})
	r := newRaw(t, srv, seeded)
	id := r.mustCreate("min@" + seeded.Domain)
	r.do("PATCH", "/users/"+id, map[string]any{"department": "Ops"})
	a := r.do("GET", "/users/delta?$select=displayName,jobTitle,department", nil)
	link := strings.TrimPrefix(a.body["@odata.deltaLink"].(string), srv.GraphURL)
	r.do("PATCH", "/users/"+id, map[string]any{"jobTitle": "Lead", "department": nil})
	a = r.do("GET", link, nil, "Prefer", "return=minimal")
	v := a.body["value"].([]any)
	if len(v) != 1 {
		t.Fatalf("%v", v)
	}
	u := v[0].(map[string]any)
	dep, hasDep := u["department"]
	if u["jobTitle"] != "Lead" || !hasDep || dep != nil || u["displayName"] != nil || len(u) != 3 {
		t.Fatalf("minimal item %v", u)
	}
	// Without the header the same round returns every selected property.
	a = r.do("GET", link, nil)
	if u := a.body["value"].([]any)[0].(map[string]any); u["displayName"] == nil {
		t.Fatalf("full item %v", u)
	}
}

// TestCountOrganizationAndRoutes: /users/$count needs eventual
// consistency, /organization needs an organization permission, and unknown
// segments or methods answer like the service.
func TestCountOrganizationAndRoutes(t *testing.T) {
	sim, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{})
	r := newRaw(t, srv, seeded)
	r.mustCreate("c1@" + seeded.Domain)
	req := newRequest("GET", srv.GraphURL+"/users/$count", nil, r.token)
	req.Header.Set("ConsistencyLevel", "eventual")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	fmt.Fscan(resp.Body, &n)
	resp.Body.Close()
	if resp.StatusCode != 200 || n != 1 {
		t.Fatalf("$count: %d %d", resp.StatusCode, n)
	}
	if a := r.do("GET", "/users/$count", nil); a.status != 400 {
		t.Fatalf("$count without eventual: %d", a.status)
	}
	if a := r.do("GET", "/organization", nil); a.status != 403 {
		t.Fatalf("organization without permission: %d", a.status)
	}
	sim.Consent(seeded.TenantID, seeded.ClientID, "Organization.Read.All")
	r = newRaw(t, srv, seeded)
	a := r.do("GET", "/organization", nil)
	org := a.body["value"].([]any)[0].(map[string]any)
	if org["id"] != seeded.TenantID || len(org["verifiedDomains"].([]any)) != 2 {
		t.Fatalf("organization %v", org)
	}
	if a := r.do("GET", "/nosuch", nil); a.status != 400 || a.message() != "Resource not found for the segment 'nosuch'." {
		t.Fatalf("unknown segment: %d %q", a.status, a.message())
	}
	if a := r.do("PUT", "/users", map[string]any{}); a.status != 405 {
		t.Fatalf("wrong method: %d", a.status)
	}
}

// TestAdminEndpoints: /_sim/ reads state and counters, changes faults and
// resets; nothing of it is reachable under /v1.0.
func TestAdminEndpoints(t *testing.T) {
	sim, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{})
	r := newRaw(t, srv, seeded)
	r.mustCreate("adm@" + seeded.Domain)
	hc := srv.Client()
	get := func(path string, v any) int {
		resp, err := hc.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		_ = json.NewDecoder(resp.Body).Decode(v)
		return resp.StatusCode
	}
	var state struct {
		Tenants []graphsim.TenantInfo `json:"tenants"`
	}
	if st := get("/_sim/state", &state); st != 200 || len(state.Tenants) != 1 || state.Tenants[0].Users != 1 {
		t.Fatalf("state %d %+v", st, state)
	}
	var users []graphsim.UserState
	if get("/_sim/users?tenant="+seeded.TenantID, &users); len(users) != 1 {
		t.Fatalf("users %v", users)
	}
	resp, err := hc.Post(srv.URL+"/_sim/faults", "application/json", strings.NewReader(`{"rate_5xx":0.25}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if sim.CurrentFaults().Rate5xx != 0.25 {
		t.Fatalf("faults %+v", sim.CurrentFaults())
	}
	resp, _ = hc.Post(srv.URL+"/_sim/reset", "application/json", nil)
	resp.Body.Close()
	var c graphsim.Counters
	if get("/_sim/counters", &c); c.Writes != 0 || len(c.Requests) > 1 {
		t.Fatalf("after reset %+v", c)
	}
	if a := r.do("GET", "/_sim/state", nil); a.status != 400 {
		t.Fatalf("/v1.0/_sim/state answered %d", a.status)
	}
}

// TestGroupListsPage: /groups and /groups/{id}/members hand out $top items
// and a nextLink whose $skiptoken resumes after them; a token the emulator
// did not issue is a 400, checked after the group exists (404 first).
func TestGroupListsPage(t *testing.T) {
	_, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{})
	r := newRaw(t, srv, seeded)
	skiptoken := func(a answer) string {
		t.Helper()
		next, _ := a.body["@odata.nextLink"].(string)
		u, err := url.Parse(next)
		if err != nil || next == "" {
			t.Fatalf("nextLink %q: %v", next, err)
		}
		return u.Query().Get("$skiptoken")
	}
	count := func(a answer) int {
		v, _ := a.body["value"].([]any)
		return len(v)
	}

	first := r.do("GET", "/groups?$top=2", nil)
	if first.status != 200 || count(first) != 2 {
		t.Fatalf("first page of groups: %d %v", first.status, first.body)
	}
	rest := r.do("GET", "/groups?$top=2&$skiptoken="+url.QueryEscape(skiptoken(first)), nil)
	if rest.status != 200 || count(rest) != len(graphsim.DefaultGroups)-2 || rest.body["@odata.nextLink"] != nil {
		t.Fatalf("second page of groups: %d %v", rest.status, rest.body)
	}
	if a := r.do("GET", "/groups?$skiptoken=bogus", nil); a.status != 400 || a.message() != "Invalid skip token." {
		t.Fatalf("groups with a bogus token: %d %v", a.status, a.body)
	}

	g := seeded.GroupIDs["Engineering"]
	for _, upn := range []string{"m1@", "m2@", "m3@"} {
		id := r.mustCreate(upn + seeded.Domain)
		ref := map[string]any{"@odata.id": "https://graph.microsoft.com/v1.0/directoryObjects/" + id}
		if a := r.do("POST", "/groups/"+g+"/members/$ref", ref); a.status != 204 {
			t.Fatalf("add member: %d %v", a.status, a.body)
		}
	}
	first = r.do("GET", "/groups/"+g+"/members?$top=2", nil)
	if first.status != 200 || count(first) != 2 {
		t.Fatalf("first page of members: %d %v", first.status, first.body)
	}
	rest = r.do("GET", "/groups/"+g+"/members?$top=2&$skiptoken="+url.QueryEscape(skiptoken(first)), nil)
	if rest.status != 200 || count(rest) != 1 || rest.body["@odata.nextLink"] != nil {
		t.Fatalf("second page of members: %d %v", rest.status, rest.body)
	}
	if a := r.do("GET", "/groups/"+g+"/members?$skiptoken=bogus", nil); a.status != 400 || a.message() != "Invalid skip token." {
		t.Fatalf("members with a bogus token: %d %v", a.status, a.body)
	}
	if a := r.do("GET", "/groups/00000000-0000-0000-0000-000000000404/members?$skiptoken=bogus", nil); a.status != 404 {
		t.Fatalf("members of an unknown group with a bogus token: %d %v", a.status, a.body)
	}
}
