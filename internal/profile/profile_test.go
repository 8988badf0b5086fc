package profile

import (
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
