package store_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/profile"
	"github.com/entraprov/entraprov/internal/store"
	"github.com/entraprov/entraprov/internal/testdb"
)

// TestInspectSourceSchema: a job owns the attribute columns its source has,
// except one added in schema 7 (OwnedWhenFilled) that is NULL in every one
// of the job's rows (a template job's rows only); an optional column of the
// wrong type is named with the cast to fix.
func TestInspectSourceSchema(t *testing.T) {
	st := testdb.New(t)
	ctx := ctxT(t)
	exec(t, st, `CREATE SCHEMA hr`)
	exec(t, st, `CREATE VIEW hr.narrow AS
		SELECT external_id, user_principal_name, display_name, city, employee_hire_date, mobile_phone,
		       account_enabled, manager_external_id, groups
		  FROM entraprov.desired_users`)
	exec(t, st, `CREATE VIEW hr.bad_date AS
		SELECT external_id, user_principal_name, display_name, 'soon'::text AS employee_hire_date,
		       account_enabled, manager_external_id, groups
		  FROM entraprov.desired_users`)
	exec(t, st, `INSERT INTO entraprov.desired_users (external_id, user_principal_name, display_name, account_enabled, groups)
		VALUES ('E1', 'a@contoso.com', 'A', true, '{}')`)

	schema := func(relation string) *profile.Schema {
		t.Helper()
		facts, err := st.InspectSource(ctx, "hr", relation, profile.Default)
		if err != nil {
			t.Fatal(err)
		}
		return facts.Schema
	}
	// mobile_phone, one of the 13, is owned though NULL (its NULL clears);
	// city and employee_hire_date are present but empty: left to others.
	s := schema("hr.narrow")
	if got, want := s.ManagedColumns(), []string{"user_principal_name", "display_name", "mobile_phone"}; !slices.Equal(got, want) {
		t.Errorf("managed columns of hr.narrow = %v; want %v", got, want)
	}
	if got, want := s.Unfilled(), []string{"employee_hire_date", "city"}; !slices.Equal(got, want) {
		t.Errorf("unfilled columns of hr.narrow = %v; want %v", got, want)
	}
	exec(t, st, `UPDATE entraprov.desired_users SET city = 'Paris'`)
	if got, want := schema("hr.narrow").ManagedColumns(), []string{"user_principal_name", "display_name", "mobile_phone", "city"}; !slices.Equal(got, want) {
		t.Errorf("city filled: managed columns of hr.narrow = %v; want %v", got, want)
	}
	full := schema("entraprov.desired_users")
	if got, want := len(full.ManagedColumns()), 14; got != want {
		t.Errorf("desired_users with the 13 and city: manages %v; want %d columns", full.ManagedColumns(), want)
	}
	if got := len(full.Unfilled()); got != len(profile.Builtin)-14 {
		t.Errorf("desired_users: %d unfilled columns; want %d", got, len(profile.Builtin)-14)
	}

	// A template job's source: tenant a fills city, tenant b does not.
	exec(t, st, `CREATE TABLE hr.shared (LIKE entraprov.desired_users INCLUDING DEFAULTS)`)
	exec(t, st, `ALTER TABLE hr.shared ADD COLUMN tenant_scope text NOT NULL`)
	exec(t, st, `INSERT INTO hr.shared (external_id, user_principal_name, display_name, city, tenant_scope, groups) VALUES
		('A1', 'a1@a.example', 'A1', 'Lyon', 'a', '{}'), ('B1', 'b1@b.example', 'B1', NULL, 'b', '{}')`)
	for scope, want := range map[string]bool{"a": true, "b": false} {
		if got := schema(config.ScopedSource("hr.shared", scope)).Managed(profile.Index("city")); got != want {
			t.Errorf("tenant %s manages city: %v; want %v", scope, got, want)
		}
	}

	_, err := st.InspectSource(ctx, "hr", "hr.bad_date", profile.Default)
	if err == nil || !strings.Contains(err.Error(), "column employee_hire_date has type text; want timestamptz (cast it in the view") {
		t.Errorf("InspectSource(hr.bad_date) = %v; want the column, its type and the cast", err)
	}
}

// TestStreamProfile: every kind of attribute streams in its canonical form
// (timestamps in UTC at second precision, lists), from the source and from
// the mirror's profile jsonb, and an attribute the source lacks is not read.
func TestStreamProfile(t *testing.T) {
	st := testdb.New(t)
	ctx := ctxT(t)
	exec(t, st, `INSERT INTO entraprov.desired_users (external_id, user_principal_name, display_name,
		employee_hire_date, business_phones, other_mails, division, city, extension_attribute_3, account_enabled, groups)
		VALUES ('E1', 'a@contoso.com', 'A', '2026-03-01 09:30:15.75+02', '{"+33 1 23"}', '{x@example.com,y@example.com}',
		        'Retail', 'Paris', 'badge-7', true, '{}')`)
	exec(t, st, `INSERT INTO entraprov.directory_links (job, external_id, object_id, user_principal_name, state, groups)
		VALUES ('j', 'E1', 'o1', 'a@contoso.com', 'active', '{}')`)
	m := store.DirectoryUser{ObjectID: "o1", AccountEnabled: true,
		Attrs: profile.Of(profile.UserPrincipalName, "a@contoso.com", profile.DisplayName, "A",
			profile.Index("employee_hire_date"), "2026-03-01T07:30:15Z", profile.Index("city"), "Lyon",
			profile.Index("other_mails"), "x@example.com"+profile.ListSep+"y@example.com")}
	if err := st.UpsertDirectoryUsers(ctx, "j", []store.DirectoryUser{m}); err != nil {
		t.Fatal(err)
	}
	got := streamOne(t, ctx, st, "entraprov.desired_users")
	wantDesired := map[string]string{
		"employee_hire_date": "2026-03-01T07:30:15Z", "business_phones": "+33 1 23",
		"other_mails": "x@example.com" + profile.ListSep + "y@example.com", "division": "Retail", "city": "Paris",
		"extension_attribute_3": "badge-7", "display_name": "A",
	}
	for col, want := range wantDesired {
		if v := got.Desired.Get(profile.Index(col)); v != want {
			t.Errorf("desired %s = %q; want %q", col, v, want)
		}
	}
	for col, want := range map[string]string{"employee_hire_date": "2026-03-01T07:30:15Z", "city": "Lyon", "division": "",
		"other_mails": "x@example.com" + profile.ListSep + "y@example.com"} {
		if v := got.Current.Get(profile.Index(col)); v != want {
			t.Errorf("mirror %s = %q; want %q", col, v, want)
		}
	}

	// A view without city: the stream never reads it (empty on both sides).
	exec(t, st, `CREATE VIEW no_city AS SELECT external_id, user_principal_name, display_name, employee_hire_date,
		account_enabled, manager_external_id, groups FROM entraprov.desired_users`)
	got = streamOne(t, ctx, st, "no_city")
	if v := got.Desired.Get(profile.Index("city")) + got.Current.Get(profile.Index("city")); v != "" {
		t.Errorf("city read from a source without the column: %q", v)
	}
	if v := got.Desired.Get(profile.Index("employee_hire_date")); v != "2026-03-01T07:30:15Z" {
		t.Errorf("employee_hire_date through no_city = %q", v)
	}
}

func streamOne(t *testing.T, ctx context.Context, st *store.Store, rel string) store.SourceRow {
	t.Helper()
	var rows []store.SourceRow
	if err := st.StreamSource(ctx, "j", rel, func(r store.SourceRow) error { rows = append(rows, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].Desired == nil || rows[0].Current == nil {
		t.Fatalf("streamed %+v; want one row with both sides", rows)
	}
	return rows[0]
}
