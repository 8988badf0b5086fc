package store_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/entraprov/entraprov/internal/profile"
	"github.com/entraprov/entraprov/internal/store"
	"github.com/entraprov/entraprov/internal/testdb"
)

// TestSourceSchema: a job manages exactly the attribute columns its source
// has; an optional column of the wrong type is named with the cast to fix.
func TestSourceSchema(t *testing.T) {
	st := testdb.New(t)
	ctx := ctxT(t)
	exec(t, st, `CREATE SCHEMA hr`)
	exec(t, st, `CREATE VIEW hr.narrow AS
		SELECT external_id, user_principal_name, display_name, city, employee_hire_date,
		       account_enabled, manager_external_id, groups
		  FROM entraprov.desired_users`)
	exec(t, st, `CREATE VIEW hr.bad_date AS
		SELECT external_id, user_principal_name, display_name, 'soon'::text AS employee_hire_date,
		       account_enabled, manager_external_id, groups
		  FROM entraprov.desired_users`)

	s, err := st.SourceSchema(ctx, "hr.narrow", profile.Default)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"user_principal_name", "display_name", "employee_hire_date", "city"}
	if got := s.ManagedColumns(); !slices.Equal(got, want) {
		t.Errorf("managed columns of hr.narrow = %v; want %v", got, want)
	}
	full, err := st.SourceSchema(ctx, "entraprov.desired_users", profile.Default)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(full.ManagedColumns()); got != len(profile.Builtin) {
		t.Errorf("desired_users manages %d attributes; want all %d", got, len(profile.Builtin))
	}
	_, err = st.SourceSchema(ctx, "hr.bad_date", profile.Default)
	if err == nil || !strings.Contains(err.Error(), "column employee_hire_date has type text; want timestamptz (cast it in the view") {
		t.Errorf("SourceSchema(hr.bad_date) = %v; want the column, its type and the cast", err)
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
