package profile

import (
	"slices"
	"strings"
	"testing"
)

func TestValuesPackGetWith(t *testing.T) {
	v := Pack([]string{"a", "", "c\x00d", "", ""})
	if v.String() != "a\x00\x00c\uFFFDd" {
		t.Fatalf("packed %q; want trailing empties dropped and NUL replaced", v.String())
	}
	for i, want := range []string{"a", "", "c\uFFFDd", "", "", ""} {
		if got := v.Get(i); got != want {
			t.Errorf("Get(%d) = %q; want %q", i, got, want)
		}
	}
	w := v.With(4, "e")
	if got := w.Expand(nil, 6); strings.Join(got, "|") != "a||c\uFFFDd||e|" {
		t.Errorf("With(4, e) expands to %q", got)
	}
	if (Values{}).Get(3) != "" || Of(City(), "Paris").Get(City()) != "Paris" {
		t.Error("zero Values or Of")
	}
}

func City() int { return Index("city") }

func TestEqualFollowsTheTable(t *testing.T) {
	tests := []struct {
		column string
		x, y   string
		equal  bool
	}{
		{"display_name", "Ada", "ada", false},
		{"other_mails", "A@x.com" + ListSep + "b@x.com", "b@x.com" + ListSep + "a@x.com", true},
		{"business_phones", "+1 2" + ListSep + "+1 3", "+1 3" + ListSep + "+1 2", true},
		{"business_phones", "+1 2", "+1 3", false},
		{"city", "Paris", "Paris", true},
	}
	for _, tt := range tests {
		if got := Builtin[Index(tt.column)].Equal(tt.x, tt.y); got != tt.equal {
			t.Errorf("%s: Equal(%q, %q) = %v; want %v", tt.column, tt.x, tt.y, got, tt.equal)
		}
	}
	hire := Builtin[Index("employee_hire_date")]
	if a, b := hire.Normalize("2026-03-01T09:30:15.75+02:00"), hire.Normalize("2026-03-01T07:30:15Z"); a != b {
		t.Errorf("timestamps at second precision: %q != %q", a, b)
	}
}

func TestExtension(t *testing.T) {
	a, err := Extension("6731DE76-14a6-49ae-97bc-6eba6914391e", "costCode", "Integer")
	if err != nil {
		t.Fatal(err)
	}
	if a.Graph != "extension_6731de7614a649ae97bc6eba6914391e_costCode" || a.Column != "cost_code" || a.Kind != Integer {
		t.Errorf("extension = %+v", a)
	}
	if a.GraphValue("42") != int64(42) || a.Problem("4x2") == "" {
		t.Error("integer extension values")
	}
	for _, bad := range [][2]string{{"cost-code", "String"}, {"costCode", "Float"}} {
		if _, err := Extension("x", bad[0], bad[1]); err == nil {
			t.Errorf("Extension(%q, %q) accepted", bad[0], bad[1])
		}
	}
}

func TestSchemaSelectAndFields(t *testing.T) {
	s := Default.Restrict(func(c string) bool {
		return c == "user_principal_name" || c == "display_name" || c == "division" || c == "cost_center"
	})
	if got := strings.Join(s.Select(), ","); got != "userPrincipalName,displayName,employeeOrgData" {
		t.Errorf("Select = %s", got)
	}
	f := map[string]any{}
	s.SetField(f, Index("division"), "Retail")
	s.SetField(f, Index("cost_center"), "")
	org, _ := f["employeeOrgData"].(map[string]any)
	if org["division"] != "Retail" || org["costCenter"] != nil || len(org) != 2 {
		t.Errorf("fields = %v", f)
	}
	u := s.Decode(map[string]any{"displayName": "A", "employeeOrgData": map[string]any{"division": "Ops"}, "city": "Lyon"})
	if u.Get(DisplayName) != "A" || u.Get(Index("division")) != "Ops" || u.Get(Index("city")) != "" {
		t.Errorf("decoded %q; want unmanaged city left out", u.String())
	}
}

// TestOwnedWhenFilled: the attributes issue 15 added (schema 7) are owned
// only when a source row fills their column; the original 13 and declared
// schema extensions are owned whenever the column is present, so their
// NULL still clears.
func TestOwnedWhenFilled(t *testing.T) {
	classic := []string{"user_principal_name", "display_name", "mail_nickname", "given_name", "surname", "job_title",
		"department", "office_location", "company_name", "employee_id", "employee_type", "usage_location", "mobile_phone"}
	for _, a := range Builtin {
		if got, want := a.OwnedWhenFilled, !slices.Contains(classic, a.Column); got != want {
			t.Errorf("%s: OwnedWhenFilled = %v; want %v", a.Column, got, want)
		}
	}
	if n := len(Builtin) - len(classic); n != 28 {
		t.Errorf("%d attributes beyond the 13; want the 28 of migration 007", n)
	}

	ext, err := Extension("app", "costCode", "String")
	if err != nil {
		t.Fatal(err)
	}
	// A SELECT * view over desired_users without city (and with an
	// extension column), every profile column NULL but division.
	present := NewSchema([]Attr{ext}).Restrict(func(c string) bool { return c != "city" })
	if got, want := present.WhenFilled(), 27; len(got) != want || slices.Contains(got, "city") {
		t.Fatalf("WhenFilled = %v; want the %d present columns beyond the 13", got, want)
	}
	s := present.Fill(func(c string) bool { return c == "division" })
	for _, c := range append(slices.Clone(classic), "division", "cost_code") {
		if !s.Managed(slices.IndexFunc(s.Attrs, func(a Attr) bool { return a.Column == c })) {
			t.Errorf("%s not managed; want it owned", c)
		}
	}
	for _, c := range []string{"city", "state", "employee_leave_date_time", "extension_attribute_1"} {
		if s.Managed(Index(c)) {
			t.Errorf("%s managed; want it left to others", c)
		}
	}
	unfilled := s.Unfilled()
	if len(unfilled) != 26 || unfilled[0] != "employee_hire_date" || slices.Contains(unfilled, "city") || slices.Contains(unfilled, "division") {
		t.Errorf("Unfilled = %v; want the 26 present, empty columns in table order", unfilled)
	}
	if p := s.Permissions(); len(p) != 0 {
		t.Errorf("Permissions = %v; an empty employee_leave_date_time needs none", p)
	}
	if sel := strings.Join(s.Select(), ","); strings.Contains(sel, "employeeLeaveDateTime") || strings.Contains(sel, "city") ||
		!strings.Contains(sel, "employeeOrgData") {
		t.Errorf("Select = %s; want neither employeeLeaveDateTime nor city, and employeeOrgData", sel)
	}
	if got := Default.Fill(func(string) bool { return true }).ManagedColumns(); len(got) != len(Builtin) {
		t.Errorf("every column filled: manages %d; want all %d", len(got), len(Builtin))
	}
}
