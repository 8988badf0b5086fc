package sync

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/entraprov/entraprov/internal/store"
)

// attribute is one Graph user property the worker manages. The table drives
// validation (length), creates (non-empty values) and the minimal PATCH.
type attribute struct {
	json     string // Graph JSON property name
	max      int    // maximum length in characters (0: not checked here)
	required bool   // may not be cleared; create needs it
	desired  func(*store.DesiredUser) string
	current  func(*store.DirectoryUser) string
}

// attributes are in the order they appear in history rows and PATCH bodies.
// Lengths are Graph's documented limits for the user resource.
var attributes = []attribute{
	{"userPrincipalName", 113, true, func(d *store.DesiredUser) string { return d.UserPrincipalName }, func(c *store.DirectoryUser) string { return c.UserPrincipalName }},
	{"displayName", 256, true, func(d *store.DesiredUser) string { return d.DisplayName }, func(c *store.DirectoryUser) string { return c.DisplayName }},
	{"mailNickname", 64, true, func(d *store.DesiredUser) string { return d.MailNickname }, func(c *store.DirectoryUser) string { return c.MailNickname }},
	{"givenName", 64, false, func(d *store.DesiredUser) string { return d.GivenName }, func(c *store.DirectoryUser) string { return c.GivenName }},
	{"surname", 64, false, func(d *store.DesiredUser) string { return d.Surname }, func(c *store.DirectoryUser) string { return c.Surname }},
	{"jobTitle", 128, false, func(d *store.DesiredUser) string { return d.JobTitle }, func(c *store.DirectoryUser) string { return c.JobTitle }},
	{"department", 64, false, func(d *store.DesiredUser) string { return d.Department }, func(c *store.DirectoryUser) string { return c.Department }},
	{"officeLocation", 128, false, func(d *store.DesiredUser) string { return d.OfficeLocation }, func(c *store.DirectoryUser) string { return c.OfficeLocation }},
	{"companyName", 64, false, func(d *store.DesiredUser) string { return d.CompanyName }, func(c *store.DirectoryUser) string { return c.CompanyName }},
	{"employeeId", 16, false, func(d *store.DesiredUser) string { return d.EmployeeID }, func(c *store.DirectoryUser) string { return c.EmployeeID }},
	{"employeeType", 64, false, func(d *store.DesiredUser) string { return d.EmployeeType }, func(c *store.DirectoryUser) string { return c.EmployeeType }},
	{"usageLocation", 2, false, func(d *store.DesiredUser) string { return d.UsageLocation }, func(c *store.DirectoryUser) string { return c.UsageLocation }},
	{"mobilePhone", 64, false, func(d *store.DesiredUser) string { return d.MobilePhone }, func(c *store.DirectoryUser) string { return c.MobilePhone }},
}

const (
	maxUPNAlias  = 64
	maxUPNDomain = 48
)

// upnAliasChars are the characters Entra ID accepts in the alias part of a
// userPrincipalName (graph-facts.md, Users).
const upnAliasChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'.-_!#^~"

// mailNicknameForbidden are the ASCII characters Graph refuses in
// mailNickname; non-ASCII and control characters are refused too.
const mailNicknameForbidden = "@()\\[]\";:<>, "

// Validate checks one desired user against Graph's rules and the job's
// policy. It returns the user normalised for comparison and sending
// (derived mailNickname, upper-case usageLocation, lower-case deduplicated
// group ids, trimmed strings) and every problem found, each a sentence that
// names the column and says what to fix. row supplies the cross-row facts
// (duplicate UPN).
func Validate(row store.SourceRow, p Policy) (store.DesiredUser, []string) {
	d := normalise(*row.Desired)
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	problems = append(problems, validateExternalID(row)...)
	problems = append(problems, validateUPN(d.UserPrincipalName, p)...)
	if row.DuplicateUPN {
		add("user_principal_name %q: another source row of job %s wants the same UPN; UPNs must be unique (case-insensitive)", d.UserPrincipalName, p.Job)
	}
	if d.DisplayName == "" {
		add("display_name: missing; every user needs a display name")
	}
	if row.Desired.MailNickname != "" {
		for _, r := range d.MailNickname {
			if r > unicode.MaxASCII || unicode.IsControl(r) || strings.ContainsRune(mailNicknameForbidden, r) {
				add("mail_nickname %q: character %q is not allowed (no spaces, accents or any of @()\\[]\";:<>,)", d.MailNickname, r)
				break
			}
		}
	}
	for _, a := range attributes {
		v := a.desired(&d)
		if a.json == "mailNickname" && row.Desired.MailNickname == "" {
			continue // derived from the UPN, whose checks already speak
		}
		if n := utf8.RuneCountInString(v); a.max > 0 && n > a.max && a.json != "userPrincipalName" && a.json != "usageLocation" {
			add("%s: %d characters; Graph allows at most %d", column(a.json), n, a.max)
		}
		if strings.IndexFunc(v, unicode.IsControl) >= 0 {
			add("%s: contains a control character (tab, newline, …); remove it", column(a.json))
		}
	}
	if d.UsageLocation != "" && !isCountryCode(d.UsageLocation) {
		add("usage_location %q: not an ISO 3166-1 alpha-2 country code (e.g. US, DE, FR)", row.Desired.UsageLocation)
	}
	if selfManaged(row) {
		// Common for the CEO: treated as "no manager" (Plan notes it), so
		// the user's other changes still go through.
		d.ManagerExternalID = ""
	}
	for _, g := range row.Desired.Groups {
		if g = strings.TrimSpace(g); g != "" && !isGUID(g) {
			add("groups: %q is not a group object id (a GUID such as 3f2a0c1e-5b6d-4e7f-8a9b-0c1d2e3f4a5b)", g)
		}
	}
	problems = append(problems, p.groupProblems(d.Groups)...)
	return d, problems
}

// column maps a Graph property to the source column that feeds it, so
// messages name what the operator edits.
func column(jsonName string) string {
	var b strings.Builder
	for _, r := range jsonName {
		if unicode.IsUpper(r) {
			b.WriteByte('_')
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

func normalise(d store.DesiredUser) store.DesiredUser {
	trim := func(s *string) { *s = strings.TrimSpace(*s) }
	for _, s := range []*string{&d.UserPrincipalName, &d.DisplayName, &d.MailNickname, &d.GivenName, &d.Surname,
		&d.JobTitle, &d.Department, &d.OfficeLocation, &d.CompanyName, &d.EmployeeID, &d.EmployeeType,
		&d.UsageLocation, &d.MobilePhone, &d.ManagerExternalID} {
		trim(s)
	}
	d.UsageLocation = strings.ToUpper(d.UsageLocation)
	if d.MailNickname == "" {
		if at := strings.IndexByte(d.UserPrincipalName, '@'); at > 0 {
			d.MailNickname = d.UserPrincipalName[:at]
		}
	}
	if len(d.Groups) > 0 {
		seen := make(map[string]bool, len(d.Groups))
		groups := make([]string, 0, len(d.Groups))
		for _, g := range d.Groups {
			g = strings.ToLower(strings.TrimSpace(g))
			if g != "" && !seen[g] {
				seen[g] = true
				groups = append(groups, g)
			}
		}
		d.Groups = groups
	}
	return d
}

func validateUPN(upn string, p Policy) []string {
	if upn == "" {
		return []string{"user_principal_name: missing; every user needs alias@domain"}
	}
	at := strings.IndexByte(upn, '@')
	if at < 0 || strings.Count(upn, "@") != 1 {
		return []string{fmt.Sprintf("user_principal_name %q: not of the form alias@domain (exactly one @)", upn)}
	}
	alias, domain := upn[:at], upn[at+1:]
	var problems []string
	switch {
	case alias == "":
		problems = append(problems, fmt.Sprintf("user_principal_name %q: the alias before @ is empty", upn))
	case utf8.RuneCountInString(alias) > maxUPNAlias:
		problems = append(problems, fmt.Sprintf("user_principal_name %q: the alias is %d characters; at most %d", upn, utf8.RuneCountInString(alias), maxUPNAlias))
	}
	for _, r := range alias {
		if !strings.ContainsRune(upnAliasChars, r) {
			problems = append(problems, fmt.Sprintf("user_principal_name %q: character %q is not allowed in the alias (only A-Z a-z 0-9 ' . - _ ! # ^ ~; no spaces or accents)", upn, r))
			break
		}
	}
	if alias != "" && (strings.HasPrefix(alias, ".") || strings.HasSuffix(alias, ".") || strings.Contains(alias, "..")) {
		problems = append(problems, fmt.Sprintf("user_principal_name %q: the alias may not start or end with a dot or contain two dots in a row", upn))
	}
	if !isDomainName(domain) {
		problems = append(problems, fmt.Sprintf("user_principal_name %q: %q is not a valid domain name", upn, domain))
	} else if len(domain) > maxUPNDomain {
		problems = append(problems, fmt.Sprintf("user_principal_name %q: the domain is %d characters; at most %d", upn, len(domain), maxUPNDomain))
	} else if !p.domainAllowed(domain) {
		allowed := strings.Join(p.AllowedDomains, ", ")
		if allowed == "" {
			allowed = "none configured"
		}
		problems = append(problems, fmt.Sprintf("user_principal_name %q: domain %q is not allowed for job %s (allowed_domains: %s); fix the row or add the domain to the job", upn, domain, p.Job, allowed))
	}
	return problems
}

func isDomainName(s string) bool {
	if s == "" || len(s) > 253 || !strings.Contains(s, ".") {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// isGUID accepts the 8-4-4-4-12 hex form Graph uses for object ids.
func isGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, r := range s {
		switch i {
		case 8, 13, 18, 23:
			if r != '-' {
				return false
			}
		default:
			if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f' || r >= 'A' && r <= 'F') {
				return false
			}
		}
	}
	return true
}

// countryCodes are the ISO 3166-1 alpha-2 codes (249, as assigned), the
// values Graph accepts for usageLocation.
const countryCodes = "" +
	"AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ " +
	"BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ " +
	"CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ " +
	"DE DJ DK DM DO DZ " +
	"EC EE EG EH ER ES ET " +
	"FI FJ FK FM FO FR " +
	"GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY " +
	"HK HM HN HR HT HU " +
	"ID IE IL IM IN IO IQ IR IS IT " +
	"JE JM JO JP " +
	"KE KG KH KI KM KN KP KR KW KY KZ " +
	"LA LB LC LI LK LR LS LT LU LV LY " +
	"MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ " +
	"NA NC NE NF NG NI NL NO NP NR NU NZ " +
	"OM " +
	"PA PE PF PG PH PK PL PM PN PR PS PT PW PY " +
	"QA " +
	"RE RO RS RU RW " +
	"SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ " +
	"TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ " +
	"UA UG UM US UY UZ " +
	"VA VC VE VG VI VN VU " +
	"WF WS " +
	"YE YT " +
	"ZA ZM ZW"

func isCountryCode(s string) bool {
	if len(s) != 2 || s[0] < 'A' || s[0] > 'Z' || s[1] < 'A' || s[1] > 'Z' {
		return false
	}
	return strings.Contains(countryCodes, s)
}

// validateExternalID refuses a row whose external_id is NULL, empty or
// padded with whitespace: the id is the link's key, so a padded id would be
// a different user (and the old one a leaver). The account linked under the
// trimmed id, or holding the row's UPN, is kept as is meanwhile (the
// stream marks it ClaimedByInvalid, and planLeaver leaves it alone).
func validateExternalID(row store.SourceRow) []string {
	id := row.ExternalID
	switch trimmed := strings.TrimSpace(id); {
	case id == "":
		return []string{fmt.Sprintf("external_id: NULL or empty (row with user_principal_name %q); every row needs an external_id: "+
			"the row is refused, and an account linked with this UPN is kept as is", row.Desired.UserPrincipalName)}
	case trimmed != id:
		return []string{fmt.Sprintf("external_id %q: leading or trailing whitespace (trimmed: %q); fix the source (e.g. btrim(external_id) in the view): "+
			"the row is refused, and a user linked as %q or with this UPN is kept as is, not treated as a leaver", id, trimmed, trimmed)}
	}
	return nil
}

// selfManaged says whether a row names the user as their own manager.
func selfManaged(row store.SourceRow) bool {
	return row.Desired != nil && row.ExternalID != "" && strings.TrimSpace(row.Desired.ManagerExternalID) == row.ExternalID
}
