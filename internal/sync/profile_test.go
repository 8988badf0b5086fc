package sync

import (
	"fmt"
	"strings"
	"testing"

	"github.com/entraprov/entraprov/internal/profile"
	"github.com/entraprov/entraprov/internal/store"
)

// badValues derives, from the attribute table alone, values Graph refuses
// for attribute a, each with the part of the message that must name it.
func badValues(a profile.Attr) map[string]string {
	bad := map[string]string{}
	if a.Max > 0 {
		bad[strings.Repeat("x", a.Max+1)] = fmt.Sprintf("%s: %d characters; Graph allows at most %d (shorten it)", a.Column, a.Max+1, a.Max)
	}
	if a.MaxItems > 0 {
		bad[strings.Repeat("+1 555 0100"+profile.ListSep, a.MaxItems)+"+1 555 0199"] = fmt.Sprintf("%s: %d entries; Graph accepts at most %d", a.Column, a.MaxItems+1, a.MaxItems)
	}
	switch {
	case a.Kind == profile.Time:
		bad["next monday"] = a.Column + ` "next monday": not a timestamp`
	case a.Check != nil:
		// The format check speaks, on the value normalised (upper-cased
		// where the attribute wants it).
		bad["zz 9"] = a.Column + ` "zz 9": `
		if a.Upper {
			bad["zz 9"] = a.Column + ` "ZZ 9": `
		}
	}
	if a.Kind == profile.String || a.Kind == profile.List {
		bad["a\x07b"] = a.Column + ": contains a control character (tab, newline, …); remove it"
	}
	return bad
}

// TestValidateEveryAttribute: each attribute's bad value fails the user
// with a message of its own, naming the column and the fix; the table
// drives the cases, so an attribute added to it is covered too.
func TestValidateEveryAttribute(t *testing.T) {
	ext, err := profile.Extension("6731de76-14a6-49ae-97bc-6eba6914391e", "costCode", "String")
	if err != nil {
		t.Fatal(err)
	}
	schema := profile.NewSchema([]profile.Attr{ext})
	p := policy()
	p.Schema = schema
	for i, a := range schema.Attrs {
		if i == profile.UserPrincipalName {
			continue // validateUPN has its own table (TestValidate)
		}
		cases := badValues(a)
		if len(cases) == 0 {
			t.Errorf("attribute %s: the table gives no way to refuse a value", a.Column)
		}
		for v, want := range cases {
			t.Run(fmt.Sprintf("%s/%q", a.Column, v), func(t *testing.T) {
				d := desired()
				d.Attrs = d.Attrs.With(i, v)
				_, problems := Validate(store.SourceRow{ExternalID: "E1", Desired: d}, p)
				if len(problems) != 1 || !strings.Contains(problems[0], want) {
					t.Fatalf("problems = %q; want exactly one containing %q", problems, want)
				}
			})
		}
	}
}

// schemaWithout is every built-in attribute but the columns named.
func schemaWithout(columns ...string) *profile.Schema {
	return profile.Default.Restrict(func(c string) bool {
		for _, x := range columns {
			if c == x {
				return false
			}
		}
		return true
	})
}

// TestPlanProfile: the minimal PATCH follows the attribute table and the
// attributes the job manages (pure: no I/O).
func TestPlanProfile(t *testing.T) {
	city, division, costCenter := profile.Index("city"), profile.Index("division"), profile.Index("cost_center")
	phones, mails, hire := profile.Index("business_phones"), profile.Index("other_mails"), profile.Index("employee_hire_date")
	tests := []struct {
		name       string
		schema     *profile.Schema
		desired    func(*store.DesiredUser)
		current    func(*store.DirectoryUser)
		wantFields map[string]any // nil: no step
		wantClears bool
	}{
		{name: "unmanaged_attribute_changed_by_hand_is_left_alone", schema: schemaWithout("city"),
			current: func(c *store.DirectoryUser) { c.Set(city, "Lyon") }},
		{name: "column_null_in_every_row_is_left_alone", schema: profile.Default.Fill(func(c string) bool { return c != "city" }),
			current: func(c *store.DirectoryUser) { c.Set(city, "Lyon") }},
		{name: "classic_null_in_every_row_still_clears", schema: profile.Default.Fill(func(string) bool { return false }),
			current:    func(c *store.DirectoryUser) { c.Set(profile.MobilePhone, "+49 1") },
			wantFields: map[string]any{"mobilePhone": nil}, wantClears: true},
		{name: "managed_null_clears_and_counts", schema: profile.Default,
			current:    func(c *store.DirectoryUser) { c.Set(city, "Lyon") },
			wantFields: map[string]any{"city": nil}, wantClears: true},
		{name: "managed_value_is_set", schema: profile.Default,
			desired:    func(d *store.DesiredUser) { d.Set(city, " Paris ") },
			wantFields: map[string]any{"city": "Paris"}},
		{name: "complex_member_sends_its_siblings", schema: profile.Default,
			desired:    func(d *store.DesiredUser) { d.Set(division, "Retail"); d.Set(costCenter, "CC1") },
			current:    func(c *store.DirectoryUser) { c.Set(division, "Ops"); c.Set(costCenter, "CC1") },
			wantFields: map[string]any{"employeeOrgData": map[string]any{"division": "Retail", "costCenter": "CC1"}}},
		{name: "unmanaged_sibling_keeps_the_directory_value", schema: schemaWithout("cost_center"),
			desired:    func(d *store.DesiredUser) { d.Set(division, "Retail") },
			current:    func(c *store.DirectoryUser) { c.Set(costCenter, "CC9") },
			wantFields: map[string]any{"employeeOrgData": map[string]any{"division": "Retail", "costCenter": "CC9"}}},
		{name: "lists_compare_as_sets_case_insensitively_for_mail", schema: profile.Default,
			desired: func(d *store.DesiredUser) { d.Set(mails, "B@x.com"+profile.ListSep+"a@x.com") },
			current: func(c *store.DirectoryUser) { c.Set(mails, "a@x.com"+profile.ListSep+"b@x.com") }},
		{name: "list_cleared_with_an_empty_array", schema: profile.Default,
			current:    func(c *store.DirectoryUser) { c.Set(phones, "+33 1 23") },
			wantFields: map[string]any{"businessPhones": []string{}}, wantClears: true},
		{name: "timestamps_compare_at_second_precision", schema: profile.Default,
			desired: func(d *store.DesiredUser) { d.Set(hire, "2026-03-01T09:30:15.75+02:00") },
			current: func(c *store.DirectoryUser) { c.Set(hire, "2026-03-01T07:30:15Z") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := policy()
			p.Schema = tt.schema
			d, c := desired(), current()
			if tt.desired != nil {
				tt.desired(d)
			}
			if tt.current != nil {
				tt.current(c)
			}
			dec := Plan(store.SourceRow{ExternalID: "E1", Desired: d, Link: link(store.LinkActive), Current: c, SourceRows: 1}, p, now)
			if tt.wantFields == nil {
				if !dec.Unchanged() {
					t.Fatalf("steps = %+v; want none", dec.Steps)
				}
				return
			}
			if len(dec.Steps) != 1 || dec.Steps[0].Action != ActUpdate {
				t.Fatalf("steps = %+v; want one update", dec.Steps)
			}
			st := dec.Steps[0]
			if got, want := fmt.Sprint(st.Fields), fmt.Sprint(tt.wantFields); got != want {
				t.Errorf("fields = %s; want %s", got, want)
			}
			clears := false
			for _, k := range DestructiveKinds(st.Action, st.Changes) {
				clears = clears || k == KindAttributeClear
			}
			if clears != tt.wantClears {
				t.Errorf("counted as an attribute clear: %v; want %v (changes %v)", clears, tt.wantClears, st.Changes)
			}
		})
	}
}
