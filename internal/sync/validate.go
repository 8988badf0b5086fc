package sync

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/entraprov/entraprov/internal/profile"
	"github.com/entraprov/entraprov/internal/store"
)

const (
	maxUPNAlias  = 64
	maxUPNDomain = 48
)

// upnAliasChars are the characters Entra ID accepts in the alias part of a
// userPrincipalName (graph-facts.md, Users).
const upnAliasChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'.-_!#^~"

// Validate checks one desired user against Graph's rules (the attribute
// table's limits and formats, for the attributes the job manages) and the
// job's policy. It returns the user normalised for comparison and sending
// (derived mailNickname, canonical values, lower-case deduplicated group
// ids) and every problem found, each a sentence that names the column and
// says what to fix. row supplies the cross-row facts (duplicate UPN).
func Validate(row store.SourceRow, p Policy) (store.DesiredUser, []string) {
	schema := p.schema()
	d := normalise(*row.Desired, schema)
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	problems = append(problems, validateExternalID(row)...)
	upn := d.UPN()
	problems = append(problems, validateUPN(upn, p)...)
	if row.DuplicateUPN {
		add("user_principal_name %q: another source row of job %s wants the same UPN; UPNs must be unique (case-insensitive)", upn, p.Job)
	}
	if d.Get(profile.DisplayName) == "" {
		add("display_name: missing; every user needs a display name")
	}
	givenNickname := row.Desired.Get(profile.MailNickname) != ""
	var buf [expandBuf]string
	vals := d.Attrs.Expand(buf[:0], schema.Len())
	for i, a := range schema.Attrs {
		switch {
		case !schema.Managed(i), i == profile.UserPrincipalName: // validateUPN speaks for the UPN
		case i == profile.MailNickname && !givenNickname: // derived from the UPN, whose checks already speak
		default:
			if msg := a.Problem(vals[i]); msg != "" {
				problems = append(problems, msg)
			}
		}
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

// normalise puts every managed value in its canonical form (attributes the
// job does not manage are emptied: they are never compared or sent) and
// derives mailNickname from the UPN when the source leaves it NULL, since
// a create needs one.
func normalise(d store.DesiredUser, schema *profile.Schema) store.DesiredUser {
	var buf [expandBuf]string
	vals := d.Attrs.Expand(buf[:0], schema.Len())
	changed := false
	for i, a := range schema.Attrs {
		v := ""
		if schema.Managed(i) {
			v = a.Normalize(vals[i])
		}
		changed = changed || v != vals[i]
		vals[i] = v
	}
	if vals[profile.MailNickname] == "" {
		if at := strings.IndexByte(vals[profile.UserPrincipalName], '@'); at > 0 {
			vals[profile.MailNickname] = vals[profile.UserPrincipalName][:at]
			changed = true
		}
	}
	if changed { // most rows arrive canonical already: no copy then
		d.Attrs = profile.Pack(vals)
	}
	d.ManagerExternalID = strings.TrimSpace(d.ManagerExternalID)
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
			"the row is refused, and an account linked with this UPN is kept as is", row.Desired.UPN())}
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
