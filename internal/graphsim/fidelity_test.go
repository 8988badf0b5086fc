package graphsim_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	abs "github.com/microsoft/kiota-abstractions-go"
	msgraphcore "github.com/microsoftgraph/msgraph-sdk-go-core"
	"github.com/microsoftgraph/msgraph-sdk-go/models/odataerrors"
	"github.com/microsoftgraph/msgraph-sdk-go/users"

	"github.com/entraprov/entraprov/internal/graphsim"
)

// The tests of this file hold graphsim to Microsoft's documents where it
// used to be more lenient than Graph (issue 14), each through the real
// msgraph-sdk-go client: the refusal, then the documented success shape.

// odataStatus is the HTTP status and message of an SDK error.
func odataStatus(err error) (int, string) {
	var oe *odataerrors.ODataError
	if !errors.As(err, &oe) {
		return 0, ""
	}
	msg := ""
	if e := oe.GetErrorEscaped(); e != nil && e.GetMessage() != nil {
		msg = *e.GetMessage()
	}
	return oe.ResponseStatusCode, msg
}

// TestBatchWriteStepWithoutBodyRefusesTheBatch: a POST step without a body
// (the SDK's own restore request information has none) fails the whole
// batch with 400 "Write request id : N does not contain Content-Type
// header or body."; with body {} and Content-Type the same restore works.
func TestBatchWriteStepWithoutBodyRefusesTheBatch(t *testing.T) {
	sim, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{})
	ctx := context.Background()
	client, adapter := graphClient(t, srv, secretCredential(t, srv, seeded.TenantID, seeded.ClientID, seeded.ClientSecret))
	u, err := client.Users().Post(ctx, newUser("rehire@"+seeded.Domain, "Rehire"), nil)
	if err != nil {
		t.Fatal(err)
	}
	id := *u.GetId()
	if err := client.Users().ByUserId(id).Delete(ctx, nil); err != nil {
		t.Fatal(err)
	}
	restore := func(withBody bool) (msgraphcore.BatchResponse, string, error) {
		ri, err := client.Directory().DeletedItems().ByDirectoryObjectId(id).Restore().ToPostRequestInformation(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if withBody {
			ri.Content = []byte("{}")
			ri.Headers.TryAdd("Content-Type", "application/json")
		}
		batch := msgraphcore.NewBatchRequest(adapter)
		item, err := batch.AddBatchRequestStep(*ri)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := batch.Send(ctx, adapter)
		return resp, *item.GetId(), err
	}

	// msgraph-sdk-go-core registers no error factory for $batch, so the SDK
	// surfaces the status only; TestBatchBodyRulesPerMethod asserts the
	// message.
	_, _, err = restore(false)
	var ae *abs.ApiError
	if !errors.As(err, &ae) || ae.ResponseStatusCode != 400 {
		t.Fatalf("restore step without body: %v, want the whole batch refused with 400", err)
	}
	if st, _ := sim.User(seeded.TenantID, id); !st.Deleted {
		t.Fatal("a refused batch restored the user")
	}

	resp, stepID, err := restore(true)
	if err != nil {
		t.Fatalf("restore step with body {}: %v", err)
	}
	if st := resp.GetStatusCodes()[stepID]; st != 200 {
		t.Fatalf("restore step status %d, want 200", st)
	}
	if st, _ := sim.User(seeded.TenantID, id); st.Deleted {
		t.Fatal("user still deleted after the restore step")
	}
}

// TestBatchBodyRulesPerMethod: POST, PATCH and PUT steps need a body and a
// Content-Type (either missing refuses the batch); DELETE and GET need
// neither.
func TestBatchBodyRulesPerMethod(t *testing.T) {
	_, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{})
	r := newRaw(t, srv, seeded)
	id := r.mustCreate("m@" + seeded.Domain)
	ct := map[string]string{"Content-Type": "application/json"}
	refused := []step{
		{"id": "p", "method": "POST", "url": "/directory/deletedItems/" + id + "/restore"},
		{"id": "p", "method": "POST", "url": "/directory/deletedItems/" + id + "/restore", "headers": ct},
		{"id": "p", "method": "PATCH", "url": "/users/" + id, "body": step{"city": "x"}},
		{"id": "p", "method": "PUT", "url": "/users/" + id + "/manager/$ref"},
	}
	for _, st := range refused {
		a := r.do("POST", "/$batch", batchOf(step{"id": "g", "method": "GET", "url": "/users/" + id}, st))
		if a.status != 400 || a.code() != "BadRequest" || a.message() != "Write request id : p does not contain Content-Type header or body." {
			t.Errorf("%v: %d %s %q, want the whole batch refused", st, a.status, a.code(), a.message())
		}
	}
	a := r.do("POST", "/$batch", batchOf(
		step{"id": "1", "method": "PATCH", "url": "/users/" + id, "body": step{"city": "x"}, "headers": ct},
		step{"id": "2", "method": "GET", "url": "/users/" + id},
		step{"id": "3", "method": "DELETE", "url": "/users/" + id, "dependsOn": []string{"1", "2"}},
	))
	s := stepResponses(t, a)
	if a.status != 200 || s["1"]["status"] != float64(204) || s["2"]["status"] != float64(200) || s["3"]["status"] != float64(204) {
		t.Fatalf("%d %v", a.status, s)
	}
}

// TestExpandCapsUserPageAt100: with $expand a user list page holds at most
// 100 users whatever $top asks, and the nextLink carries on; without
// $expand $top=999 is honoured.
func TestExpandCapsUserPageAt100(t *testing.T) {
	sim, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{})
	for i := range 150 {
		sim.AddUser(seeded.TenantID, graphsim.UserSeed{UserPrincipalName: fmt.Sprintf("x%03d@%s", i, seeded.Domain), DisplayName: "X", AccountEnabled: true})
	}
	ctx := context.Background()
	client, _ := graphClient(t, srv, secretCredential(t, srv, seeded.TenantID, seeded.ClientID, seeded.ClientSecret))
	page, err := client.Users().Get(ctx, &users.UsersRequestBuilderGetRequestConfiguration{
		QueryParameters: &users.UsersRequestBuilderGetQueryParameters{Top: ptr(int32(999)), Select: []string{"id"}, Expand: []string{"manager($select=id)"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(page.GetValue()); n != 100 || page.GetOdataNextLink() == nil {
		t.Fatalf("$expand page: %d users, nextLink %v; want 100 and a nextLink", n, page.GetOdataNextLink())
	}
	rest, err := client.Users().WithUrl(*page.GetOdataNextLink()).Get(ctx, nil)
	if err != nil || len(rest.GetValue()) != 50 || rest.GetOdataNextLink() != nil {
		t.Fatalf("second $expand page: %v users, err %v", len(rest.GetValue()), err)
	}
	plain, err := client.Users().Get(ctx, &users.UsersRequestBuilderGetRequestConfiguration{
		QueryParameters: &users.UsersRequestBuilderGetQueryParameters{Top: ptr(int32(999)), Select: []string{"id"}},
	})
	if err != nil || len(plain.GetValue()) != 150 {
		t.Fatalf("without $expand: %d users, err %v; want 150 on one page", len(plain.GetValue()), err)
	}
}

// TestAdvancedQueryParameters: clauses the documented table marks
// advanced-only are refused without ConsistencyLevel: eventual +
// $count=true and work with them; $count=true alone is ignored (200, no
// @odata.count).
func TestAdvancedQueryParameters(t *testing.T) {
	sim, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{})
	sim.AddUser(seeded.TenantID, graphsim.UserSeed{UserPrincipalName: "a@" + seeded.Domain, DisplayName: "A", AccountEnabled: true, EmployeeID: "E1"})
	bID := sim.AddUser(seeded.TenantID, graphsim.UserSeed{UserPrincipalName: "b@" + seeded.Domain, DisplayName: "B", AccountEnabled: true})
	r := newRaw(t, srv, seeded)
	if a := r.do("PATCH", "/users/"+bID, map[string]any{"companyName": "Contoso", "mobilePhone": "+1 555 0100", "officeLocation": "18/2111"}); a.status != 204 {
		t.Fatalf("patch: %d %v", a.status, a.body)
	}
	ctx := context.Background()
	client, _ := graphClient(t, srv, secretCredential(t, srv, seeded.TenantID, seeded.ClientID, seeded.ClientSecret))
	list := func(filter string, advanced bool) (int, *int64, error) {
		q := &users.UsersRequestBuilderGetQueryParameters{Filter: ptr(filter), Select: []string{"id"}}
		h := abs.NewRequestHeaders()
		if advanced {
			q.Count = ptr(true)
			h.Add("ConsistencyLevel", "eventual")
		}
		resp, err := client.Users().Get(ctx, &users.UsersRequestBuilderGetRequestConfiguration{QueryParameters: q, Headers: h})
		if err != nil {
			return 0, nil, err
		}
		return len(resp.GetValue()), resp.GetOdataCount(), nil
	}
	for _, tc := range []struct {
		filter string
		want   int
	}{
		{"employeeId eq null", 1},
		{"companyName eq 'Contoso'", 1},
		{"mobilePhone eq '+1 555 0100'", 1},
		{"officeLocation eq '18/2111'", 1},
		{"employeeId ne 'E1'", 1},
		{"endswith(userPrincipalName,'@" + seeded.Domain + "')", 2},
	} {
		_, _, err := list(tc.filter, false)
		if odataCode(err) != "Request_UnsupportedQuery" {
			t.Errorf("%s without advanced parameters: %v, want Request_UnsupportedQuery", tc.filter, err)
		}
		n, count, err := list(tc.filter, true)
		if err != nil || n != tc.want || count == nil || *count != int64(tc.want) {
			t.Errorf("%s with advanced parameters: %d users, count %v, err %v; want %d", tc.filter, n, count, err, tc.want)
		}
	}
	// Default clauses work without them (employeeId eq, userPrincipalName
	// eq, or across both: what the worker sends).
	if n, _, err := list("userPrincipalName eq 'a@"+seeded.Domain+"' or employeeId eq 'E1'", false); err != nil || n != 1 {
		t.Errorf("default filter: %d users, %v", n, err)
	}
	// A clause the table leaves blank is refused even in an advanced query.
	if _, _, err := list("mail eq null", true); odataCode(err) != "Request_UnsupportedQuery" {
		t.Errorf("mail eq null: %v, want Request_UnsupportedQuery", err)
	}
	// $count=true without ConsistencyLevel: ignored, not refused.
	resp, err := client.Users().Get(ctx, &users.UsersRequestBuilderGetRequestConfiguration{
		QueryParameters: &users.UsersRequestBuilderGetQueryParameters{Count: ptr(true)},
	})
	if err != nil || len(resp.GetValue()) != 2 || resp.GetOdataCount() != nil {
		t.Fatalf("$count=true alone: err %v, %d users, count %v; want 200, 2 users, no @odata.count", err, len(resp.GetValue()), resp.GetOdataCount())
	}
	// The documented refusal: the message names the operator.
	a := r.do("GET", "/users?$filter="+urlq("endswith(mail,'@x.test')"), nil)
	if a.status != 400 || !strings.HasPrefix(a.message(), "Operator 'endsWith' is not supported because the required parameters might be missing.") {
		t.Errorf("endsWith refusal: %d %q", a.status, a.message())
	}
}

// TestExpiredDeltaTokenIs400SyncStateNotFound: an expired users delta link
// answers 400 BadRequest with code syncStateNotFound, as documented for
// identity resources.
func TestExpiredDeltaTokenIs400SyncStateNotFound(t *testing.T) {
	sim, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{})
	ctx := context.Background()
	client, _ := graphClient(t, srv, secretCredential(t, srv, seeded.TenantID, seeded.ClientID, seeded.ClientSecret))
	first, err := client.Users().Delta().GetAsDeltaGetResponse(ctx, nil)
	if err != nil || first.GetOdataDeltaLink() == nil {
		t.Fatalf("delta: %v", err)
	}
	sim.ExpireDeltaTokens(seeded.TenantID)
	_, err = client.Users().Delta().WithUrl(*first.GetOdataDeltaLink()).GetAsDeltaGetResponse(ctx, nil)
	status, msg := odataStatus(err)
	if status != 400 || odataCode(err) != "syncStateNotFound" || !strings.HasPrefix(msg, "The sync state generation is not found.") {
		t.Fatalf("expired delta link: %d %s %q", status, odataCode(err), msg)
	}
	if _, err := client.Users().Delta().GetAsDeltaGetResponse(ctx, nil); err != nil {
		t.Fatalf("a fresh full read after the reset: %v", err)
	}
}

// TestCreateUserAnswersDefaultPropertySet: the 201 body is the default
// property set with unset properties null and businessPhones [], nothing
// else (user-post-users example 1).
func TestCreateUserAnswersDefaultPropertySet(t *testing.T) {
	_, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{})
	ctx := context.Background()
	client, _ := graphClient(t, srv, secretCredential(t, srv, seeded.TenantID, seeded.ClientID, seeded.ClientSecret))
	u, err := client.Users().Post(ctx, newUser("adele@"+seeded.Domain, "Adele Vance"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if u.GetId() == nil || *u.GetDisplayName() != "Adele Vance" || u.GetBusinessPhones() == nil || len(u.GetBusinessPhones()) != 0 ||
		u.GetGivenName() != nil || u.GetAccountEnabled() != nil || u.GetMailNickname() != nil {
		t.Fatalf("SDK view of the 201 body: id %v displayName %v businessPhones %v givenName %v accountEnabled %v mailNickname %v",
			u.GetId(), u.GetDisplayName(), u.GetBusinessPhones(), u.GetGivenName(), u.GetAccountEnabled(), u.GetMailNickname())
	}
	r := newRaw(t, srv, seeded)
	a := r.do("POST", "/users", userBody("megan@"+seeded.Domain))
	var keys []string
	for k := range a.body {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	want := []string{"@odata.context", "businessPhones", "displayName", "givenName", "id", "jobTitle", "mail", "mobilePhone", "officeLocation", "preferredLanguage", "surname", "userPrincipalName"}
	if a.status != 201 || !slices.Equal(keys, want) {
		t.Fatalf("201 body keys %v, want %v", keys, want)
	}
	if a.body["givenName"] != nil || a.body["userPrincipalName"] != "megan@"+seeded.Domain {
		t.Fatalf("201 body %v", a.body)
	}
	if bp, ok := a.body["businessPhones"].([]any); !ok || len(bp) != 0 {
		t.Fatalf("businessPhones = %#v, want []", a.body["businessPhones"])
	}
}
