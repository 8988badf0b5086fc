package graphsim_test

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	msgraphsdk "github.com/microsoftgraph/msgraph-sdk-go"
	"github.com/microsoftgraph/msgraph-sdk-go/models"
	"github.com/microsoftgraph/msgraph-sdk-go/users"

	"github.com/entraprov/entraprov/internal/graphsim"
)

// The tests of this file hold graphsim's wider user profile (issue 15) to
// Microsoft's documents: the properties an HR feed maintains, their
// documented limits, the lifecycle permissions of employeeLeaveDateTime,
// and directory extensions.

// profileSelect are the properties of the wider profile, none of them in
// the default property set except businessPhones and preferredLanguage.
var profileSelect = []string{"id", "employeeHireDate", "employeeLeaveDateTime", "employeeOrgData", "streetAddress", "city",
	"state", "postalCode", "country", "businessPhones", "faxNumber", "otherMails", "preferredLanguage", "onPremisesExtensionAttributes"}

// fullProfile is a user with every property of the wider profile set.
func fullProfile(upn string) models.Userable {
	u := newUser(upn, "Profile "+upn)
	cet := time.FixedZone("CET", 3600)
	u.SetEmployeeHireDate(ptr(time.Date(2026, 1, 5, 9, 0, 0, 0, cet)))
	u.SetEmployeeLeaveDateTime(ptr(time.Date(2027, 6, 30, 23, 59, 59, 0, time.UTC)))
	org := models.NewEmployeeOrgData()
	org.SetDivision(ptr("Research"))
	org.SetCostCenter(ptr("CC-042"))
	u.SetEmployeeOrgData(org)
	u.SetStreetAddress(ptr("1 Main Street"))
	u.SetCity(ptr("Zürich"))
	u.SetState(ptr("ZH"))
	u.SetPostalCode(ptr("8001"))
	u.SetCountry(ptr("CH"))
	u.SetBusinessPhones([]string{"+41 44 000 00 00"})
	u.SetFaxNumber(ptr("+41 44 000 00 01"))
	u.SetOtherMails([]string{"adele@private.example"})
	u.SetPreferredLanguage(ptr("de-CH"))
	ea := models.NewOnPremisesExtensionAttributes()
	ea.SetExtensionAttribute1(ptr("badge-7"))
	ea.SetExtensionAttribute15(ptr("last"))
	u.SetOnPremisesExtensionAttributes(ea)
	return u
}

// TestProfileRoundTripSDK: every property of the wider profile is stored
// as written and returned with $select through msgraph-sdk-go;
// DateTimeOffsets come back in UTC ("always in UTC time"); without $select
// only the default set is returned (employeeHireDate, employeeOrgData,
// city, ... are "Returned only on $select").
func TestProfileRoundTripSDK(t *testing.T) {
	sim, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{})
	ctx := context.Background()
	client, _ := graphClient(t, srv, secretCredential(t, srv, seeded.TenantID, seeded.ClientID, seeded.ClientSecret))
	created, err := client.Users().Post(ctx, fullProfile("adele@"+seeded.Domain), nil)
	if err != nil {
		t.Fatalf("create with the full profile: %v", err)
	}
	id := *created.GetId()
	if created.GetCity() != nil || created.GetEmployeeOrgData() != nil {
		t.Fatalf("the 201 body carries properties outside the default set: city %v", created.GetCity())
	}
	st, _ := sim.User(seeded.TenantID, id)
	if st.Properties["employeeHireDate"] != "2026-01-05T08:00:00Z" {
		t.Fatalf("employeeHireDate stored as %v, want UTC 2026-01-05T08:00:00Z", st.Properties["employeeHireDate"])
	}

	u, err := client.Users().ByUserId(id).Get(ctx, &users.UserItemRequestBuilderGetRequestConfiguration{
		QueryParameters: &users.UserItemRequestBuilderGetQueryParameters{Select: profileSelect}})
	if err != nil {
		t.Fatalf("get with $select: %v", err)
	}
	got := fmt.Sprintf("%v|%v|%s/%s|%s|%s|%s|%s|%s|%v|%s|%v|%s|%s/%s",
		u.GetEmployeeHireDate().UTC().Format(time.RFC3339), u.GetEmployeeLeaveDateTime().UTC().Format(time.RFC3339),
		*u.GetEmployeeOrgData().GetDivision(), *u.GetEmployeeOrgData().GetCostCenter(),
		*u.GetStreetAddress(), *u.GetCity(), *u.GetState(), *u.GetPostalCode(), *u.GetCountry(), u.GetBusinessPhones(),
		*u.GetFaxNumber(), u.GetOtherMails(), *u.GetPreferredLanguage(),
		*u.GetOnPremisesExtensionAttributes().GetExtensionAttribute1(), *u.GetOnPremisesExtensionAttributes().GetExtensionAttribute15())
	want := "2026-01-05T08:00:00Z|2027-06-30T23:59:59Z|Research/CC-042|1 Main Street|Zürich|ZH|8001|CH|[+41 44 000 00 00]|+41 44 000 00 01|[adele@private.example]|de-CH|badge-7/last"
	if got != want {
		t.Fatalf("profile read back:\n got %s\nwant %s", got, want)
	}

	def, err := client.Users().ByUserId(id).Get(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if def.GetEmployeeHireDate() != nil || def.GetEmployeeLeaveDateTime() != nil || def.GetEmployeeOrgData() != nil ||
		def.GetCity() != nil || def.GetOnPremisesExtensionAttributes() != nil || def.GetFaxNumber() != nil {
		t.Fatal("GET without $select returned a property that is returned only on $select")
	}
	if len(def.GetBusinessPhones()) != 1 || def.GetPreferredLanguage() == nil {
		t.Fatalf("default set lacks businessPhones %v or preferredLanguage %v", def.GetBusinessPhones(), def.GetPreferredLanguage())
	}
}

// TestProfileDocumentedLimits: each documented limit of the user resource
// page is enforced with 400 "Invalid value specified for property 'X' of
// resource 'User'.", and a value at the limit is accepted (PATCH through
// msgraph-sdk-go).
func TestProfileDocumentedLimits(t *testing.T) {
	_, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{})
	ctx := context.Background()
	client, _ := graphClient(t, srv, secretCredential(t, srv, seeded.TenantID, seeded.ClientID, seeded.ClientSecret))
	u, err := client.Users().Post(ctx, newUser("limits@"+seeded.Domain, "Limits"), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := func(n int) *string { return ptr(strings.Repeat("x", n)) }
	list := func(items, each int) []string {
		l := make([]string, items)
		for i := range l {
			l[i] = fmt.Sprintf("%0*d", each, i)
		}
		return l
	}
	extAttr := func(n int) models.OnPremisesExtensionAttributesable {
		ea := models.NewOnPremisesExtensionAttributes()
		ea.SetExtensionAttribute7(s(n))
		return ea
	}
	cases := []struct {
		prop     string
		ok, over func(models.Userable)
	}{
		{"city", func(u models.Userable) { u.SetCity(s(128)) }, func(u models.Userable) { u.SetCity(s(129)) }},
		{"state", func(u models.Userable) { u.SetState(s(128)) }, func(u models.Userable) { u.SetState(s(129)) }},
		{"country", func(u models.Userable) { u.SetCountry(s(128)) }, func(u models.Userable) { u.SetCountry(s(129)) }},
		{"postalCode", func(u models.Userable) { u.SetPostalCode(s(40)) }, func(u models.Userable) { u.SetPostalCode(s(41)) }},
		{"streetAddress", func(u models.Userable) { u.SetStreetAddress(s(1024)) }, func(u models.Userable) { u.SetStreetAddress(s(1025)) }},
		{"jobTitle", func(u models.Userable) { u.SetJobTitle(s(128)) }, func(u models.Userable) { u.SetJobTitle(s(129)) }},
		{"department", func(u models.Userable) { u.SetDepartment(s(64)) }, func(u models.Userable) { u.SetDepartment(s(65)) }},
		{"companyName", func(u models.Userable) { u.SetCompanyName(s(64)) }, func(u models.Userable) { u.SetCompanyName(s(65)) }},
		{"mobilePhone", func(u models.Userable) { u.SetMobilePhone(s(64)) }, func(u models.Userable) { u.SetMobilePhone(s(65)) }},
		{"givenName", func(u models.Userable) { u.SetGivenName(s(64)) }, func(u models.Userable) { u.SetGivenName(s(65)) }},
		{"surname", func(u models.Userable) { u.SetSurname(s(64)) }, func(u models.Userable) { u.SetSurname(s(65)) }},
		{"employeeId", func(u models.Userable) { u.SetEmployeeId(s(16)) }, func(u models.Userable) { u.SetEmployeeId(s(17)) }},
		{"displayName", func(u models.Userable) { u.SetDisplayName(s(256)) }, func(u models.Userable) { u.SetDisplayName(s(257)) }},
		{"businessPhones", func(u models.Userable) { u.SetBusinessPhones([]string{"+1 555 0100"}) },
			func(u models.Userable) { u.SetBusinessPhones([]string{"+1 555 0100", "+1 555 0101"}) }},
		{"otherMails", func(u models.Userable) { u.SetOtherMails(list(250, 250)) }, func(u models.Userable) { u.SetOtherMails(list(251, 3)) }},
		{"otherMails", func(u models.Userable) { u.SetOtherMails(list(1, 250)) }, func(u models.Userable) { u.SetOtherMails(list(1, 251)) }},
		{"preferredLanguage", func(u models.Userable) { u.SetPreferredLanguage(ptr("fr-CA")) }, func(u models.Userable) { u.SetPreferredLanguage(ptr("french")) }},
		{"preferredLanguage", func(u models.Userable) { u.SetPreferredLanguage(ptr("en-GB")) }, func(u models.Userable) { u.SetPreferredLanguage(ptr("EN-gb")) }},
		{"onPremisesExtensionAttributes", func(u models.Userable) { u.SetOnPremisesExtensionAttributes(extAttr(1024)) },
			func(u models.Userable) { u.SetOnPremisesExtensionAttributes(extAttr(1025)) }},
	}
	for _, tc := range cases {
		t.Run(tc.prop, func(t *testing.T) {
			over := models.NewUser()
			tc.over(over)
			_, err := client.Users().ByUserId(*u.GetId()).Patch(ctx, over, nil)
			st, msg := odataStatus(err)
			if want := "Invalid value specified for property '" + tc.prop + "' of resource 'User'."; st != 400 || msg != want {
				t.Fatalf("over the limit: %d %q, want 400 %q", st, msg, want)
			}
			ok := models.NewUser()
			tc.ok(ok)
			if _, err := client.Users().ByUserId(*u.GetId()).Patch(ctx, ok, nil); err != nil {
				t.Fatalf("at the limit: %v", err)
			}
		})
	}
}

// TestDateTimeOffsetFormat: employeeHireDate and employeeLeaveDateTime are
// DateTimeOffset, ISO 8601 with a time and a zone; other shapes are 400
// (raw HTTP: the SDK cannot send them). An offset is stored in UTC.
func TestDateTimeOffsetFormat(t *testing.T) {
	sim, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{})
	r := newRaw(t, srv, seeded)
	id := r.mustCreate("dates@" + seeded.Domain)
	for _, prop := range []string{"employeeHireDate", "employeeLeaveDateTime"} {
		for _, bad := range []any{"2026-01-15", "15/01/2026", "2026-13-01T00:00:00Z", "2026-01-15T09:00:00", 20260115, true} {
			a := r.do("PATCH", "/users/"+id, map[string]any{prop: bad})
			if want := "Invalid value specified for property '" + prop + "' of resource 'User'."; a.status != 400 || a.message() != want {
				t.Errorf("%s = %v: %d %q, want 400 %q", prop, bad, a.status, a.message(), want)
			}
		}
		if a := r.do("PATCH", "/users/"+id, map[string]any{prop: "2026-01-15T09:30:00.5-05:00"}); a.status != 204 {
			t.Fatalf("%s with an offset: %d %v", prop, a.status, a.body)
		}
		if st, _ := sim.User(seeded.TenantID, id); st.Properties[prop] != "2026-01-15T14:30:00Z" {
			t.Errorf("%s stored as %v, want 2026-01-15T14:30:00Z", prop, st.Properties[prop])
		}
		if a := r.do("PATCH", "/users/"+id, map[string]any{prop: nil}); a.status != 204 {
			t.Fatalf("%s cleared: %d", prop, a.status)
		}
		if st, _ := sim.User(seeded.TenantID, id); st.Properties[prop] != nil {
			t.Errorf("%s after null: %v", prop, st.Properties[prop])
		}
	}
}

// TestComplexPropertiesMergeAndUnknownFields: employeeOrgData and
// onPremisesExtensionAttributes are merged field by field on PATCH (a
// null field clears it, a null value clears all), and a field the type
// does not declare is refused with the OData reader's message.
func TestComplexPropertiesMergeAndUnknownFields(t *testing.T) {
	sim, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{})
	r := newRaw(t, srv, seeded)
	id := r.mustCreate("org@" + seeded.Domain)
	steps := []struct {
		body map[string]any
		want string // employeeOrgData|onPremisesExtensionAttributes as stored
	}{
		{map[string]any{"employeeOrgData": map[string]any{"division": "R&D"}}, "map[division:R&D]|<nil>"},
		{map[string]any{"employeeOrgData": map[string]any{"CostCenter": "CC1"}}, "map[costCenter:CC1 division:R&D]|<nil>"},
		{map[string]any{"employeeOrgData": map[string]any{"division": nil}, "onPremisesExtensionAttributes": map[string]any{"extensionAttribute3": "a"}},
			"map[costCenter:CC1]|map[extensionAttribute3:a]"},
		{map[string]any{"onPremisesExtensionAttributes": map[string]any{"extensionAttribute4": "b"}}, "map[costCenter:CC1]|map[extensionAttribute3:a extensionAttribute4:b]"},
		{map[string]any{"employeeOrgData": nil, "onPremisesExtensionAttributes": map[string]any{"extensionAttribute3": nil}}, "<nil>|map[extensionAttribute4:b]"},
	}
	for i, s := range steps {
		if a := r.do("PATCH", "/users/"+id, s.body); a.status != 204 {
			t.Fatalf("step %d: %d %v", i, a.status, a.body)
		}
		st, _ := sim.User(seeded.TenantID, id)
		if got := fmt.Sprint(st.Properties["employeeOrgData"]) + "|" + fmt.Sprint(st.Properties["onPremisesExtensionAttributes"]); got != s.want {
			t.Fatalf("step %d: stored %s, want %s", i, got, s.want)
		}
	}
	for prop, typ := range map[string]string{"employeeOrgData": "employeeOrgData", "onPremisesExtensionAttributes": "onPremisesExtensionAttributes"} {
		a := r.do("PATCH", "/users/"+id, map[string]any{prop: map[string]any{"extensionAttribute16": "x"}})
		want := "The property 'extensionAttribute16' does not exist on type 'microsoft.graph." + typ + "'. Make sure to only use property names that are defined by the type."
		if a.status != 400 || a.message() != want {
			t.Errorf("%s with an undeclared field: %d %q, want 400 %q", prop, a.status, a.message(), want)
		}
	}
}

// TestSyncedUserOnPremisesProperties: for a user with onPremisesSyncEnabled
// true, onPremisesExtensionAttributes, businessPhones and mobilePhone are
// read-only (400 "Unable to update the specified properties for on-premises
// mastered Directory Sync objects or objects currently undergoing
// migration."); a cloud-only user (null or false) may set them.
func TestSyncedUserOnPremisesProperties(t *testing.T) {
	sim, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{})
	ctx := context.Background()
	client, _ := graphClient(t, srv, secretCredential(t, srv, seeded.TenantID, seeded.ClientID, seeded.ClientSecret))
	synced := sim.AddUser(seeded.TenantID, graphsim.UserSeed{UserPrincipalName: "synced@" + seeded.Domain, DisplayName: "Synced",
		AccountEnabled: true, Properties: map[string]any{"onPremisesSyncEnabled": true}})
	converted := sim.AddUser(seeded.TenantID, graphsim.UserSeed{UserPrincipalName: "converted@" + seeded.Domain, DisplayName: "Converted",
		AccountEnabled: true, Properties: map[string]any{"onPremisesSyncEnabled": false}})
	cloud, err := client.Users().Post(ctx, newUser("cloud@"+seeded.Domain, "Cloud"), nil)
	if err != nil {
		t.Fatal(err)
	}
	writes := map[string]func(models.Userable){
		"onPremisesExtensionAttributes": func(u models.Userable) {
			ea := models.NewOnPremisesExtensionAttributes()
			ea.SetExtensionAttribute2(ptr("x"))
			u.SetOnPremisesExtensionAttributes(ea)
		},
		"businessPhones": func(u models.Userable) { u.SetBusinessPhones([]string{"+1 555 0100"}) },
		"mobilePhone":    func(u models.Userable) { u.SetMobilePhone(ptr("+1 555 0199")) },
	}
	for prop, set := range writes {
		body := models.NewUser()
		set(body)
		_, err := client.Users().ByUserId(synced).Patch(ctx, body, nil)
		if st, msg := odataStatus(err); st != 400 || !strings.HasPrefix(msg, "Unable to update the specified properties for on-premises mastered Directory Sync objects") {
			t.Errorf("%s on a synced user: %d %q", prop, st, msg)
		}
		for _, id := range []string{converted, *cloud.GetId()} {
			if _, err := client.Users().ByUserId(id).Patch(ctx, body, nil); err != nil {
				t.Errorf("%s on cloud-only user %s: %v", prop, id, err)
			}
		}
	}
	other := models.NewUser()
	other.SetCity(ptr("Oslo"))
	if _, err := client.Users().ByUserId(synced).Patch(ctx, other, nil); err != nil {
		t.Errorf("city on a synced user (not listed read-only): %v", err)
	}
}

// appWithRoles registers another app in the default tenant through a seed
// file (the way `worker check` tests seed an app without the lifecycle
// role) and returns an SDK client and a raw client signed in as it.
func appWithRoles(t *testing.T, sim *graphsim.Sim, srv *graphsim.Server, seeded graphsim.Seeded, roles ...string) (*msgraphsdk.GraphServiceClient, *raw) {
	t.Helper()
	clientID := uuid.NewString()
	res, err := sim.ApplySeed(&graphsim.SeedFile{Tenants: []graphsim.SeedTenant{{ID: seeded.TenantID, Domains: []string{seeded.Domain},
		Apps: []graphsim.SeedApp{{ClientID: clientID, DisplayName: "narrow", Roles: roles}}}}}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	secret := res.Tenants[0].Apps[0].ClientSecret
	client, _ := graphClient(t, srv, secretCredential(t, srv, seeded.TenantID, clientID, secret))
	r := newRaw(t, srv, graphsim.Seeded{TenantID: seeded.TenantID, ClientID: clientID, ClientSecret: secret})
	return client, r
}

// TestLeaveDateTimePermissions: reading employeeLeaveDateTime needs
// User-LifeCycleInfo.Read.All (or ReadWrite.All), writing it needs
// User-LifeCycleInfo.ReadWrite.All with a user read permission; without,
// 403 Authorization_RequestDenied. The default seeded app has the role.
func TestLeaveDateTimePermissions(t *testing.T) {
	sim, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{})
	ctx := context.Background()
	admin, _ := graphClient(t, srv, secretCredential(t, srv, seeded.TenantID, seeded.ClientID, seeded.ClientSecret))
	u, err := admin.Users().Post(ctx, fullProfile("leaver@"+seeded.Domain), nil)
	if err != nil {
		t.Fatalf("default app writes employeeLeaveDateTime: %v", err)
	}
	id := *u.GetId()
	leave := func(d time.Time) models.Userable {
		b := models.NewUser()
		b.SetEmployeeLeaveDateTime(&d)
		return b
	}
	sel := func(props ...string) *users.UserItemRequestBuilderGetRequestConfiguration {
		return &users.UserItemRequestBuilderGetRequestConfiguration{QueryParameters: &users.UserItemRequestBuilderGetQueryParameters{Select: props}}
	}
	denied := func(what string, err error) {
		t.Helper()
		if st, msg := odataStatus(err); st != 403 || odataCode(err) != "Authorization_RequestDenied" || msg != "Insufficient privileges to complete the operation." {
			t.Errorf("%s: %d %s %q, want 403 Authorization_RequestDenied", what, st, odataCode(err), msg)
		}
	}

	// User.ReadWrite.All alone: everything but employeeLeaveDateTime.
	plain, plainRaw := appWithRoles(t, sim, srv, seeded, "User.ReadWrite.All")
	_, err = plain.Users().ByUserId(id).Patch(ctx, leave(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)), nil)
	denied("PATCH employeeLeaveDateTime with User.ReadWrite.All", err)
	_, err = plain.Users().ByUserId(id).Get(ctx, sel("id", "employeeLeaveDateTime"))
	denied("GET $select=employeeLeaveDateTime with User.ReadWrite.All", err)
	if a := plainRaw.do("GET", "/users?$select=id&$count=true&$filter="+url.QueryEscape("employeeLeaveDateTime eq 2027-06-30T23:59:59Z"), nil, "ConsistencyLevel", "eventual"); a.status != 403 {
		t.Errorf("$filter on employeeLeaveDateTime without the role: %d %v", a.status, a.body)
	}
	if a := plainRaw.do("GET", "/users/delta?$select=id,employeeLeaveDateTime", nil); a.status != 403 {
		t.Errorf("delta $select=employeeLeaveDateTime without the role: %d", a.status)
	}
	if got, err := plain.Users().ByUserId(id).Get(ctx, sel("id", "employeeHireDate", "city")); err != nil || *got.GetCity() != "Zürich" {
		t.Errorf("other profile properties with User.ReadWrite.All: %v", err)
	}

	// Read.All of the lifecycle: may read, not write.
	reader, _ := appWithRoles(t, sim, srv, seeded, "User.Read.All", "User-LifeCycleInfo.Read.All")
	got, err := reader.Users().ByUserId(id).Get(ctx, sel("id", "employeeLeaveDateTime"))
	if err != nil || got.GetEmployeeLeaveDateTime().UTC() != time.Date(2027, 6, 30, 23, 59, 59, 0, time.UTC) {
		t.Fatalf("read with User-LifeCycleInfo.Read.All: %v", err)
	}
	_, err = reader.Users().ByUserId(id).Patch(ctx, leave(time.Date(2027, 2, 1, 0, 0, 0, 0, time.UTC)), nil)
	denied("PATCH with User-LifeCycleInfo.Read.All", err)

	// The tutorial's least privilege: User.Read.All and
	// User-LifeCycleInfo.ReadWrite.All write employeeLeaveDateTime, and
	// nothing else.
	writer, _ := appWithRoles(t, sim, srv, seeded, "User.Read.All", "User-LifeCycleInfo.ReadWrite.All")
	if _, err := writer.Users().ByUserId(id).Patch(ctx, leave(time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC)), nil); err != nil {
		t.Fatalf("PATCH with User.Read.All and User-LifeCycleInfo.ReadWrite.All: %v", err)
	}
	both := leave(time.Date(2027, 4, 1, 0, 0, 0, 0, time.UTC))
	both.SetCity(ptr("Bern"))
	_, err = writer.Users().ByUserId(id).Patch(ctx, both, nil)
	denied("PATCH employeeLeaveDateTime and city without User.ReadWrite.All", err)
	if st, _ := sim.User(seeded.TenantID, id); st.Properties["employeeLeaveDateTime"] != "2027-03-01T00:00:00Z" || st.Properties["city"] != "Zürich" {
		t.Fatalf("after the refusals: leave %v city %v", st.Properties["employeeLeaveDateTime"], st.Properties["city"])
	}
}

// additional reads a property msgraph-sdk-go has no field for (a
// directory extension) from a model's AdditionalData.
func additional(m map[string]any, k string) any {
	switch v := m[k].(type) {
	case *string:
		return *v
	case *float64:
		return *v
	case *bool:
		return *v
	case *int64:
		return *v
	case *int32:
		return *v
	default:
		return v
	}
}

// TestDirectoryExtensionsSDK: POST /applications/{id}/extensionProperties
// registers extension_{appIdWithoutDashes}_{name} (201, the definition),
// GET lists it; a user then takes a value for it, returned only when
// $select-ed, filterable with eq, and carried by delta when selected. An
// unregistered extension is refused, and a String over 256 characters too.
func TestDirectoryExtensionsSDK(t *testing.T) {
	sim, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{})
	ctx := context.Background()
	sim.Consent(seeded.TenantID, seeded.ClientID, "Application.ReadWrite.OwnedBy")
	client, _ := graphClient(t, srv, secretCredential(t, srv, seeded.TenantID, seeded.ClientID, seeded.ClientSecret))
	app, err := client.ApplicationsWithAppId(ptr(seeded.ClientID)).Get(ctx, nil)
	if err != nil {
		t.Fatalf("own application: %v", err)
	}
	def := models.NewExtensionProperty()
	def.SetName(ptr("costCode"))
	def.SetDataType(ptr("String"))
	def.SetTargetObjects([]string{"User"})
	ext, err := client.Applications().ByApplicationId(*app.GetId()).ExtensionProperties().Post(ctx, def, nil)
	if err != nil {
		t.Fatalf("create extensionProperty: %v", err)
	}
	name := "extension_" + strings.ReplaceAll(seeded.ClientID, "-", "") + "_costCode"
	if *ext.GetName() != name || *ext.GetDataType() != "String" || !slices.Equal(ext.GetTargetObjects(), []string{"User"}) || ext.GetId() == nil {
		t.Fatalf("created definition: name %v dataType %v targets %v", *ext.GetName(), *ext.GetDataType(), ext.GetTargetObjects())
	}
	list, err := client.Applications().ByApplicationId(*app.GetId()).ExtensionProperties().Get(ctx, nil)
	if err != nil || len(list.GetValue()) != 1 || *list.GetValue()[0].GetName() != name {
		t.Fatalf("list extensionProperties: %v", err)
	}

	u, err := client.Users().Post(ctx, newUser("ext@"+seeded.Domain, "Ext"), nil)
	if err != nil {
		t.Fatal(err)
	}
	id := *u.GetId()
	body := models.NewUser()
	body.SetAdditionalData(map[string]any{name: "CC-7"})
	if _, err := client.Users().ByUserId(id).Patch(ctx, body, nil); err != nil {
		t.Fatalf("PATCH the extension: %v", err)
	}
	got, err := client.Users().ByUserId(id).Get(ctx, &users.UserItemRequestBuilderGetRequestConfiguration{
		QueryParameters: &users.UserItemRequestBuilderGetQueryParameters{Select: []string{"id", name}}})
	if err != nil || additional(got.GetAdditionalData(), name) != "CC-7" {
		t.Fatalf("GET $select=%s: %v %v", name, err, got.GetAdditionalData())
	}
	plain, err := client.Users().ByUserId(id).Get(ctx, nil)
	if err != nil || plain.GetAdditionalData()[name] != nil {
		t.Fatalf("extension returned without $select: %v", err)
	}
	found, err := client.Users().Get(ctx, &users.UsersRequestBuilderGetRequestConfiguration{
		QueryParameters: &users.UsersRequestBuilderGetQueryParameters{Filter: ptr(name + " eq 'CC-7'"), Select: []string{"id"}}})
	if err != nil || len(found.GetValue()) != 1 || *found.GetValue()[0].GetId() != id {
		t.Fatalf("$filter %s eq: %v", name, err)
	}
	delta, err := client.Users().Delta().GetAsDeltaGetResponse(ctx, &users.DeltaRequestBuilderGetRequestConfiguration{
		QueryParameters: &users.DeltaRequestBuilderGetQueryParameters{Select: []string{"id", "city", name}}})
	if err != nil || len(delta.GetValue()) != 1 || additional(delta.GetValue()[0].GetAdditionalData(), name) != "CC-7" {
		t.Fatalf("delta with the extension selected: %v", err)
	}

	for what, bad := range map[string]map[string]any{
		"unregistered": {"extension_" + strings.Repeat("0", 32) + "_costCode": "x"},
		"over 256":     {name: strings.Repeat("x", 257)},
	} {
		b := models.NewUser()
		b.SetAdditionalData(bad)
		_, err := client.Users().ByUserId(id).Patch(ctx, b, nil)
		st, msg := odataStatus(err)
		want := "Invalid value specified for property '" + name + "' of resource 'User'."
		if what == "unregistered" {
			want = "Property 'extension_" + strings.Repeat("0", 32) + "_costCode' does not exist as a declared property or extension property."
		}
		if st != 400 || msg != want {
			t.Errorf("%s: %d %q, want 400 %q", what, st, msg, want)
		}
	}
}

// TestAddExtensionPropertyTypes: the Go seeding API returns the full name
// and refuses unknown apps, undocumented data types and duplicates; each
// dataType validates its values as documented (Integer 32-bit,
// LargeInteger 64-bit, Boolean, DateTime ISO 8601 stored in UTC, Binary
// 256 bytes).
func TestAddExtensionPropertyTypes(t *testing.T) {
	sim, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{})
	r := newRaw(t, srv, seeded)
	if _, err := sim.AddExtensionProperty(uuid.NewString(), "x", "String"); err == nil {
		t.Error("an unknown app was accepted")
	}
	if _, err := sim.AddExtensionProperty(seeded.ClientID, "x", "Float"); err == nil {
		t.Error("dataType Float was accepted")
	}
	names := map[string]string{}
	for _, dt := range []string{"Integer", "LargeInteger", "Boolean", "DateTime", "Binary", "String"} {
		n, err := sim.AddExtensionProperty(seeded.ClientID, "x"+dt, dt)
		if err != nil || n != "extension_"+strings.ReplaceAll(seeded.ClientID, "-", "")+"_x"+dt {
			t.Fatalf("%s: %q %v", dt, n, err)
		}
		names[dt] = n
	}
	if _, err := sim.AddExtensionProperty(seeded.ClientID, "xString", "String"); err == nil {
		t.Error("a duplicate name was accepted")
	}
	id := r.mustCreate("types@" + seeded.Domain)
	cases := []struct {
		dt     string
		good   any
		stored any
		bad    []any
	}{
		{"Integer", 2147483647, int64(2147483647), []any{2147483648, 1.5, "7"}},
		{"LargeInteger", 9007199254740991, int64(9007199254740991), []any{1.5, "7", true}},
		{"Boolean", true, true, []any{"true", 1}},
		{"DateTime", "2026-03-01T10:00:00+02:00", "2026-03-01T08:00:00Z", []any{"2026-03-01", "yesterday", 5}},
		{"Binary", "AAEC", "AAEC", []any{"not base64!", 3}},
		{"String", strings.Repeat("é", 256), strings.Repeat("é", 256), []any{strings.Repeat("é", 257), 3}},
	}
	for _, tc := range cases {
		n := names[tc.dt]
		if a := r.do("PATCH", "/users/"+id, map[string]any{n: tc.good}); a.status != 204 {
			t.Errorf("%s good value: %d %v", tc.dt, a.status, a.body)
		}
		if st, _ := sim.User(seeded.TenantID, id); st.Properties[n] != tc.stored {
			t.Errorf("%s stored %#v, want %#v", tc.dt, st.Properties[n], tc.stored)
		}
		for _, bad := range tc.bad {
			if a := r.do("PATCH", "/users/"+id, map[string]any{n: bad}); a.status != 400 || a.message() != "Invalid value specified for property '"+n+"' of resource 'User'." {
				t.Errorf("%s bad value %v: %d %q", tc.dt, bad, a.status, a.message())
			}
		}
	}
	if a := r.do("PATCH", "/users/"+id, map[string]any{names["Binary"]: strings.Repeat("A", 344)}); a.status != 400 {
		t.Errorf("Binary of 258 bytes: %d", a.status)
	}
}

// TestFilterWiderProfile: the wider profile's filters need the advanced
// query parameters (employeeHireDate per the documented table; its
// unlisted siblings likewise) and match with them, nested paths included.
func TestFilterWiderProfile(t *testing.T) {
	_, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{})
	r := newRaw(t, srv, seeded)
	id := r.mustCreate("filter@" + seeded.Domain)
	if a := r.do("PATCH", "/users/"+id, map[string]any{"employeeHireDate": "2026-02-02T00:00:00Z", "faxNumber": "+1 555 0111",
		"employeeOrgData": map[string]any{"costCenter": "CC9"}, "onPremisesExtensionAttributes": map[string]any{"extensionAttribute5": "E5"}}); a.status != 204 {
		t.Fatalf("patch: %d %v", a.status, a.body)
	}
	other := r.mustCreate("other@" + seeded.Domain)
	if a := r.do("PATCH", "/users/"+other, map[string]any{"employeeHireDate": "2025-11-30T12:00:00+01:00", "city": "Aarau"}); a.status != 204 {
		t.Fatalf("patch: %d %v", a.status, a.body)
	}
	for _, f := range []string{
		"employeeHireDate ge 2026-01-01T00:00:00Z",
		"employeeHireDate le 2025-11-30T11:00:00Z and employeeHireDate ge 2025-11-30T11:00:00Z",
		"employeeHireDate eq 2026-02-02T00:00:00Z",
		"employeeOrgData/costCenter eq 'CC9'",
		"onPremisesExtensionAttributes/extensionAttribute5 eq 'E5'",
		"faxNumber eq '+1 555 0111'",
	} {
		q := "/users?$select=id&$filter=" + url.QueryEscape(f)
		if a := r.do("GET", q, nil); a.status != 400 || a.code() != "Request_UnsupportedQuery" {
			t.Errorf("%s without the advanced parameters: %d %s", f, a.status, a.code())
		}
		a := r.do("GET", q+"&$count=true", nil, "ConsistencyLevel", "eventual")
		vals, _ := a.body["value"].([]any)
		want := id
		if strings.Contains(f, "le ") {
			want = other // 12:00+01:00 is 11:00Z: ge and le both hold
		}
		if a.status != 200 || len(vals) != 1 || vals[0].(map[string]any)["id"] != want {
			t.Errorf("%s with them: %d %v", f, a.status, a.body)
		}
	}
	// city: ge by default, le not at all (the table's blank cell).
	if a := r.do("GET", "/users?$select=id&$filter="+url.QueryEscape("city ge 'A'"), nil); a.status != 200 || len(a.body["value"].([]any)) != 1 {
		t.Errorf("city ge 'A' by default: %d %v", a.status, a.body)
	}
	if a := r.do("GET", "/users?$select=id&$count=true&$filter="+url.QueryEscape("city le 'Z'"), nil, "ConsistencyLevel", "eventual"); a.status != 400 {
		t.Errorf("city le: %d, want 400 (not supported even as an advanced query)", a.status)
	}
}

// TestExtensionPropertyRoutes: the extensionProperties routes need an
// Application write permission, answer 404 for an app not in the tenant,
// 400 for an undocumented dataType, missing targetObjects or a duplicate;
// a multi-valued extension takes a collection with the limit per value; an
// extension is usable where its app is (home tenant, or a tenant where the
// multi-tenant app was consented), not elsewhere.
func TestExtensionPropertyRoutes(t *testing.T) {
	sim, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{})
	r := newRaw(t, srv, seeded)
	post := func(path string, body map[string]any) answer { return r.do("POST", path, body) }
	def := map[string]any{"name": "skills", "dataType": "String", "isMultiValued": true, "targetObjects": []any{"User"}}
	byAppID := "/applications(appId='" + seeded.ClientID + "')/extensionProperties"
	if a := post(byAppID, def); a.status != 403 || a.code() != "Authorization_RequestDenied" {
		t.Fatalf("without an Application permission: %d %s", a.status, a.code())
	}
	sim.Consent(seeded.TenantID, seeded.ClientID, "Application.ReadWrite.All")
	r = newRaw(t, srv, seeded)
	if a := post("/applications/"+uuid.NewString()+"/extensionProperties", def); a.status != 404 {
		t.Errorf("unknown application: %d", a.status)
	}
	for what, bad := range map[string]map[string]any{
		"dataType Float":    {"name": "a", "dataType": "Float", "targetObjects": []any{"User"}},
		"no targetObjects":  {"name": "a", "dataType": "String"},
		"targetObjects bad": {"name": "a", "dataType": "String", "targetObjects": []any{"user"}},
		"no name":           {"dataType": "String", "targetObjects": []any{"User"}},
	} {
		if a := post(byAppID, bad); a.status != 400 {
			t.Errorf("%s: %d, want 400", what, a.status)
		}
	}
	a := post(byAppID, def)
	name, _ := a.body["name"].(string)
	if a.status != 201 || a.body["isMultiValued"] != true || a.body["dataType"] != "String" || !strings.HasSuffix(name, "_skills") {
		t.Fatalf("create multi-valued: %d %v", a.status, a.body)
	}
	if a := post(byAppID, def); a.status != 400 {
		t.Errorf("duplicate: %d, want 400", a.status)
	}
	if a := r.do("GET", byAppID, nil); a.status != 200 || len(a.body["value"].([]any)) != 1 {
		t.Errorf("list by appId: %d %v", a.status, a.body)
	}

	id := r.mustCreate("multi@" + seeded.Domain)
	if a := r.do("PATCH", "/users/"+id, map[string]any{name: []any{"go", "sql"}}); a.status != 204 {
		t.Fatalf("multi-valued write: %d %v", a.status, a.body)
	}
	for _, bad := range []any{"go", []any{"go", strings.Repeat("x", 257)}, []any{1}} {
		if a := r.do("PATCH", "/users/"+id, map[string]any{name: bad}); a.status != 400 {
			t.Errorf("multi-valued %v: %d, want 400", bad, a.status)
		}
	}
	if st, _ := sim.User(seeded.TenantID, id); fmt.Sprint(st.Properties[name]) != "[go sql]" {
		t.Errorf("stored %v", st.Properties[name])
	}

	// Another tenant: the default app is multi-tenant; once consented there
	// its extensions are usable. A single-tenant app's are not.
	const other = "22222222-2222-2222-2222-222222222222"
	sim.AddTenant(other, "fabrikam.example")
	sim.Consent(other, seeded.ClientID, "User.ReadWrite.All")
	single := uuid.NewString()
	sim.AddApp(graphsim.App{ClientID: single, HomeTenant: seeded.TenantID, DisplayName: "single"})
	singleExt, err := sim.AddExtensionProperty(single, "badge", "String")
	if err != nil {
		t.Fatal(err)
	}
	r2 := newRaw(t, srv, graphsim.Seeded{TenantID: other, ClientID: seeded.ClientID, ClientSecret: seeded.ClientSecret})
	id2 := r2.mustCreate("x@fabrikam.example")
	if a := r2.do("PATCH", "/users/"+id2, map[string]any{name: []any{"ok"}}); a.status != 204 {
		t.Errorf("consented multi-tenant app's extension in another tenant: %d %v", a.status, a.body)
	}
	if a := r2.do("PATCH", "/users/"+id2, map[string]any{singleExt: "b"}); a.status != 400 || !strings.HasSuffix(a.message(), "does not exist as a declared property or extension property.") {
		t.Errorf("single-tenant app's extension in another tenant: %d %q", a.status, a.message())
	}
	if a := r2.do("GET", "/users/"+id2+"?$select=id,"+singleExt, nil); a.status != 400 || a.code() != "Request_UnsupportedQuery" {
		t.Errorf("$select of an extension the tenant lacks: %d %s", a.status, a.code())
	}
	if a := r.do("PATCH", "/users/"+id, map[string]any{singleExt: "b"}); a.status != 204 {
		t.Errorf("single-tenant app's extension in its home tenant: %d %v", a.status, a.body)
	}
}

// TestSeedFileExtensions: a seed file app's "extensions" are registered
// and their full names reported, as cmd/graphsim prints them.
func TestSeedFileExtensions(t *testing.T) {
	sf, err := graphsim.LoadSeedFile(strings.NewReader(`{"tenants":[{"id":"11111111-1111-1111-1111-111111111111","domains":["contoso.example"],
	  "apps":[{"client_id":"33333333-3333-3333-3333-333333333333","roles":["User.ReadWrite.All"],
	           "extensions":[{"name":"costCode","data_type":"String"},{"name":"grade","data_type":"Integer"}]}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	sim := graphsim.New(graphsim.Options{})
	res, err := sim.ApplySeed(sf, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"extension_33333333333333333333333333333333_costCode", "extension_33333333333333333333333333333333_grade"}
	if got := res.Tenants[0].Apps[0].Extensions; !slices.Equal(got, want) {
		t.Fatalf("seeded extensions %v, want %v", got, want)
	}
	sf.Tenants[0].Apps[0].Extensions[0].DataType = "Decimal"
	if _, err := graphsim.New(graphsim.Options{}).ApplySeed(sf, t.TempDir()); err == nil || !strings.Contains(err.Error(), "costCode") {
		t.Fatalf("an undocumented data type in a seed file: %v", err)
	}
}

// TestDeltaSelectsWiderProfile: /users/delta with $select of the wider
// profile returns those properties in the full read, and a change of
// employeeOrgData brings the user back in the next round with the new
// value (msgraph-sdk-go's delta function).
func TestDeltaSelectsWiderProfile(t *testing.T) {
	_, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{})
	ctx := context.Background()
	client, _ := graphClient(t, srv, secretCredential(t, srv, seeded.TenantID, seeded.ClientID, seeded.ClientSecret))
	u, err := client.Users().Post(ctx, fullProfile("delta@"+seeded.Domain), nil)
	if err != nil {
		t.Fatal(err)
	}
	first, err := client.Users().Delta().GetAsDeltaGetResponse(ctx, &users.DeltaRequestBuilderGetRequestConfiguration{
		QueryParameters: &users.DeltaRequestBuilderGetQueryParameters{Select: profileSelect}})
	if err != nil || len(first.GetValue()) != 1 {
		t.Fatalf("delta: %v", err)
	}
	d := first.GetValue()[0]
	if *d.GetEmployeeOrgData().GetCostCenter() != "CC-042" || *d.GetOnPremisesExtensionAttributes().GetExtensionAttribute1() != "badge-7" ||
		d.GetEmployeeLeaveDateTime() == nil || *d.GetCity() != "Zürich" || len(d.GetOtherMails()) != 1 {
		t.Fatalf("delta item lacks the selected profile: %+v", d.GetBackingStore().Enumerate())
	}
	org := models.NewEmployeeOrgData()
	org.SetCostCenter(ptr("CC-043"))
	body := models.NewUser()
	body.SetEmployeeOrgData(org)
	if _, err := client.Users().ByUserId(*u.GetId()).Patch(ctx, body, nil); err != nil {
		t.Fatal(err)
	}
	next, err := client.Users().Delta().WithUrl(*first.GetOdataDeltaLink()).GetAsDeltaGetResponse(ctx, nil)
	if err != nil || len(next.GetValue()) != 1 {
		t.Fatalf("next round: %v", err)
	}
	if o := next.GetValue()[0].GetEmployeeOrgData(); *o.GetCostCenter() != "CC-043" || *o.GetDivision() != "Research" {
		t.Fatalf("changed employeeOrgData: %v/%v, want Research/CC-043 (merged)", o.GetDivision(), o.GetCostCenter())
	}
}
