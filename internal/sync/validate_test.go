package sync

import (
	"strings"
	"testing"

	"github.com/entraprov/entraprov/internal/profile"
	"github.com/entraprov/entraprov/internal/store"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(r *store.SourceRow)
		want string // substring of the single problem; "" means valid
	}{
		{"valid_row_has_no_problem", func(r *store.SourceRow) {}, ""},
		{"missing_upn", func(r *store.SourceRow) { r.Desired.Set(profile.UserPrincipalName, "") }, "user_principal_name: missing"},
		{"upn_without_at", func(r *store.SourceRow) { r.Desired.Set(profile.UserPrincipalName, "alice.contoso.com") }, "not of the form alias@domain"},
		{"upn_with_two_ats", func(r *store.SourceRow) { r.Desired.Set(profile.UserPrincipalName, "a@b@contoso.com") }, "not of the form alias@domain"},
		{"upn_with_empty_alias", func(r *store.SourceRow) { r.Desired.Set(profile.UserPrincipalName, "@contoso.com") }, "the alias before @ is empty"},
		{"upn_with_accent", func(r *store.SourceRow) { r.Desired.Set(profile.UserPrincipalName, "josé@contoso.com") }, `character 'é' is not allowed in the alias`},
		{"upn_with_space", func(r *store.SourceRow) { r.Desired.Set(profile.UserPrincipalName, "jo se@contoso.com") }, `character ' ' is not allowed in the alias`},
		{"upn_alias_too_long", func(r *store.SourceRow) {
			r.Desired.Set(profile.UserPrincipalName, strings.Repeat("a", 65)+"@contoso.com")
		}, "the alias is 65 characters; at most 64"},
		{"upn_alias_dots", func(r *store.SourceRow) { r.Desired.Set(profile.UserPrincipalName, "alice..smith@contoso.com") }, "two dots in a row"},
		{"upn_bad_domain", func(r *store.SourceRow) { r.Desired.Set(profile.UserPrincipalName, "alice@contoso_com") }, `"contoso_com" is not a valid domain name`},
		{"upn_domain_not_allowed", func(r *store.SourceRow) { r.Desired.Set(profile.UserPrincipalName, "alice@fabrikam.com") }, `domain "fabrikam.com" is not allowed for job hr (allowed_domains: contoso.com)`},
		{"duplicate_upn", func(r *store.SourceRow) { r.DuplicateUPN = true }, "another source row of job hr wants the same UPN"},
		{"missing_display_name", func(r *store.SourceRow) { r.Desired.Set(profile.DisplayName, " ") }, "display_name: missing"},
		{"display_name_too_long", func(r *store.SourceRow) { r.Desired.Set(profile.DisplayName, strings.Repeat("x", 257)) }, "display_name: 257 characters; Graph allows at most 256"},
		{"mail_nickname_too_long", func(r *store.SourceRow) { r.Desired.Set(profile.MailNickname, strings.Repeat("m", 65)) }, "mail_nickname: 65 characters; Graph allows at most 64"},
		{"mail_nickname_bad_char", func(r *store.SourceRow) { r.Desired.Set(profile.MailNickname, "alice(x)") }, `mail_nickname "alice(x)": character '(' is not allowed`},
		{"given_name_too_long", func(r *store.SourceRow) { r.Desired.Set(profile.GivenName, strings.Repeat("g", 65)) }, "given_name: 65 characters; Graph allows at most 64"},
		{"job_title_too_long", func(r *store.SourceRow) { r.Desired.Set(profile.JobTitle, strings.Repeat("j", 129)) }, "job_title: 129 characters; Graph allows at most 128"},
		{"employee_id_too_long", func(r *store.SourceRow) { r.Desired.Set(profile.EmployeeID, strings.Repeat("1", 17)) }, "employee_id: 17 characters; Graph allows at most 16"},
		{"control_character", func(r *store.SourceRow) { r.Desired.Set(profile.Department, "R&D\nOps") }, "department: contains a control character"},
		{"usage_location_not_a_country", func(r *store.SourceRow) { r.Desired.Set(profile.UsageLocation, "XX") }, `usage_location "XX": not an ISO 3166-1 alpha-2 country code`},
		{"usage_location_three_letters", func(r *store.SourceRow) { r.Desired.Set(profile.UsageLocation, "DEU") }, `usage_location "DEU": not an ISO 3166-1 alpha-2`},
		{"own_manager_is_no_manager_not_a_problem", func(r *store.SourceRow) { r.Desired.ManagerExternalID = "E1" }, ""},
		{"group_not_a_guid", func(r *store.SourceRow) { r.Desired.Groups = []string{"sales-team"} }, `groups: "sales-team" is not a group object id`},
		{"external_id_with_spaces", func(r *store.SourceRow) { r.ExternalID = " E1" }, `external_id " E1": leading or trailing whitespace (trimmed: "E1")`},
		{"external_id_with_trailing_tab", func(r *store.SourceRow) { r.ExternalID = "E1\t" }, `external_id "E1\t": leading or trailing whitespace (trimmed: "E1")`},
		{"external_id_null_or_empty", func(r *store.SourceRow) { r.ExternalID = "" }, `external_id: NULL or empty (row with user_principal_name "alice@contoso.com")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			row := store.SourceRow{ExternalID: "E1", Desired: desired()}
			tt.edit(&row)
			_, problems := Validate(row, policy())
			if tt.want == "" {
				if len(problems) != 0 {
					t.Fatalf("problems = %q; want none", problems)
				}
				return
			}
			if len(problems) != 1 || !strings.Contains(problems[0], tt.want) {
				t.Fatalf("problems = %q; want exactly one containing %q", problems, tt.want)
			}
		})
	}
}

func TestNewPassword(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 200; i++ {
		pw, err := NewPassword(0)
		if err != nil {
			t.Fatal(err)
		}
		if len(pw) != DefaultPasswordLength {
			t.Fatalf("length %d; want %d", len(pw), DefaultPasswordLength)
		}
		for _, class := range []string{pwLower, pwUpper, pwDigits, pwSymbols} {
			if !strings.ContainsAny(pw, class) {
				t.Fatalf("password lacks a character of %q", class)
			}
		}
		if seen[pw] {
			t.Fatal("the same password was drawn twice")
		}
		seen[pw] = true
	}
	if pw, _ := NewPassword(4); len(pw) < 12 {
		t.Errorf("a length of 4 gave %d characters; want the floor of 12", len(pw))
	}
}
