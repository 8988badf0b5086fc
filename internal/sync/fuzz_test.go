package sync

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/entraprov/entraprov/internal/profile"
	"github.com/entraprov/entraprov/internal/store"
)

// FuzzValidate feeds arbitrary source rows to the row validator. Whatever
// the row, Validate must not panic, must name every problem in a sentence,
// and a row it accepts must be one Graph accepts: a UPN in an allowed
// domain, every attribute within Graph's length, no control character, a
// two-letter upper-case usage location, GUID groups; and accepting is
// stable (the normalised user validates again to itself).
func FuzzValidate(f *testing.F) {
	f.Add("E1", "alice@contoso.com", "Alice", "", "Engineer", "de", "E1", "", "3f2a0c1e-5b6d-4e7f-8a9b-0c1d2e3f4a5b")
	f.Add("E2", "josé@contoso.com", " Bob ", "bob(x)", "R&D\nOps", "DEU", "", "E2", "sales-team")
	f.Add(" E3", "a..b@contoso_com", "", strings.Repeat("m", 65), strings.Repeat("j", 129), "XX", strings.Repeat("1", 17), "", "")
	f.Add("E4", "carol@CONTOSO.com", "Carol", "carol", "", "us", "", "E1", " 3F2A0C1E-5B6D-4E7F-8A9B-0C1D2E3F4A5B , 3f2a0c1e-5b6d-4e7f-8a9b-0c1d2e3f4a5b")
	f.Add("E5", "@contoso.com", "\x00", "ü", "", "", "", "", "")
	f.Fuzz(func(t *testing.T, extID, upn, display, nick, title, usage, empID, manager, groups string) {
		p := Policy{Job: "hr", AllowedDomains: []string{"contoso.com"}, LeaverAction: LeaverDisable, AdoptBy: AdoptNone}
		var gs []string
		if groups != "" {
			gs = strings.Split(groups, ",")
		}
		row := store.SourceRow{ExternalID: extID, Desired: &store.DesiredUser{Attrs: profile.Of(profile.UserPrincipalName, upn, profile.DisplayName, display, profile.MailNickname, nick, profile.JobTitle, title, profile.UsageLocation, usage, profile.EmployeeID, empID), ExternalID: extID,
			ManagerExternalID: manager, Groups: gs, AccountEnabled: true,
		}}
		d, problems := Validate(row, p)
		for _, pr := range problems {
			if strings.TrimSpace(pr) == "" {
				t.Fatalf("empty problem in %q", problems)
			}
		}
		if len(problems) > 0 {
			return
		}
		at := strings.LastIndexByte(d.UPN(), '@')
		if at <= 0 || !strings.EqualFold(d.UPN()[at+1:], "contoso.com") {
			t.Fatalf("accepted UPN %q outside the allowed domain", d.UPN())
		}
		if d.Get(profile.DisplayName) == "" || d.Get(profile.MailNickname) == "" {
			t.Fatalf("accepted a user without displayName or mailNickname: %+v", d)
		}
		for i, a := range profile.Builtin {
			v := d.Get(i)
			if a.Max > 0 && utf8.RuneCountInString(v) > a.Max {
				t.Fatalf("accepted %s of %d characters (max %d)", a.Column, utf8.RuneCountInString(v), a.Max)
			}
			if strings.IndexFunc(v, unicode.IsControl) >= 0 {
				t.Fatalf("accepted %s %q with a control character", a.Column, v)
			}
		}
		if d.Get(profile.UsageLocation) != "" && (len(d.Get(profile.UsageLocation)) != 2 || strings.ToUpper(d.Get(profile.UsageLocation)) != d.Get(profile.UsageLocation)) {
			t.Fatalf("accepted usageLocation %q", d.Get(profile.UsageLocation))
		}
		for _, g := range d.Groups {
			if !isGUID(g) || g != strings.ToLower(g) {
				t.Fatalf("accepted group %q", g)
			}
		}
		again, problems := Validate(store.SourceRow{ExternalID: extID, Desired: &d}, p)
		if len(problems) > 0 {
			t.Fatalf("the normalised user %+v fails validation: %q", d, problems)
		}
		if AppliedHash(&again) != AppliedHash(&d) {
			t.Fatalf("normalising twice changed the user: %+v → %+v", d, again)
		}
	})
}
