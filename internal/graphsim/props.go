package graphsim

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

type propKind int

const (
	kString propKind = iota
	kBool
	kStringList
	kObject
	kObjectList
	kDateTime // Edm.DateTimeOffset: ISO 8601, stored and answered in UTC
)

type propDef struct {
	name     string
	kind     propKind
	readOnly bool
	// maxLen is the documented maximum in characters of a string, or of
	// each item of a string collection or each field of a complex value.
	maxLen int
	// maxItems is the documented maximum number of items of a collection.
	maxItems int
	// fields are the properties of a complex type the emulator knows the
	// shape of, by lower-case name → canonical name.
	fields map[string]string
	// typeName is the OData type of a complex value, for error messages.
	typeName string
	// syncedRO: read-only for a user synced from on-premises
	// (onPremisesSyncEnabled true).
	syncedRO bool
}

// userProps are the v1.0 user properties the emulator knows. Writing any
// other property is a 400, as on the service.
var userProps = map[string]propDef{}

// defaultUserSelect is what GET /users returns without $select (v1.0).
var defaultUserSelect = []string{"businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone", "officeLocation", "preferredLanguage", "surname", "userPrincipalName", "id"}

const (
	// propLeaveDate needs the lifecycle permissions to be read or written.
	propLeaveDate = "employeeLeaveDateTime"
	// propExtAttrs is the 15 Exchange custom attributes.
	propExtAttrs = "onPremisesExtensionAttributes"
)

func init() {
	def := func(kind propKind, ro bool, maxLen int, names ...string) {
		for _, n := range names {
			userProps[strings.ToLower(n)] = propDef{name: n, kind: kind, readOnly: ro, maxLen: maxLen}
		}
	}
	set := func(name string, f func(*propDef)) {
		d := userProps[strings.ToLower(name)]
		f(&d)
		userProps[strings.ToLower(name)] = d
	}
	// Strings without a documented maximum length (faxNumber,
	// officeLocation, employeeType, ... : the user resource page gives
	// none).
	def(kString, false, 0, "ageGroup", "consentProvidedForMinor", "employeeType", "faxNumber", "mail",
		"officeLocation", "onPremisesImmutableId", "passwordPolicies",
		"preferredDataLocation", "preferredLanguage", "userType",
		"usageLocation", "aboutMe", "mySite", "preferredName")
	// Documented maximum lengths (user resource type, v1.0).
	def(kString, false, 1024, "streetAddress")
	def(kString, false, 256, "displayName")
	def(kString, false, 128, "city", "state", "country", "jobTitle")
	def(kString, false, 113, "userPrincipalName")
	def(kString, false, 64, "mailNickname", "givenName", "surname", "department", "companyName", "mobilePhone")
	def(kString, false, 40, "postalCode")
	def(kString, false, 16, "employeeId")
	def(kDateTime, false, 0, "employeeHireDate", propLeaveDate)
	def(kBool, false, 0, "accountEnabled", "showInAddressList")
	def(kStringList, false, 0, "businessPhones", "otherMails", "interests", "skills", "schools", "responsibilities", "pastProjects")
	def(kObject, false, 0, "passwordProfile", "employeeOrgData", propExtAttrs)
	def(kObjectList, false, 0, "identities")
	def(kString, true, 0, "id", "createdDateTime", "deletedDateTime", "creationType", "externalUserState",
		"externalUserStateChangeDateTime", "lastPasswordChangeDateTime", "securityIdentifier",
		"signInSessionsValidFromDateTime", "onPremisesDistinguishedName", "onPremisesDomainName",
		"onPremisesSamAccountName", "onPremisesSecurityIdentifier", "onPremisesUserPrincipalName",
		"onPremisesLastSyncDateTime", "onPremisesSyncEnabled")
	def(kStringList, true, 0, "imAddresses", "proxyAddresses")
	def(kObjectList, true, 0, "assignedLicenses", "assignedPlans", "provisionedPlans")

	// businessPhones: "Although it's a string collection, only one number
	// can be set"; read-only for synced users, like mobilePhone.
	set("businessPhones", func(d *propDef) { d.maxItems, d.syncedRO = 1, true })
	set("mobilePhone", func(d *propDef) { d.syncedRO = true })
	// otherMails: "Can store up to 250 values, each with a limit of 250
	// characters."
	set("otherMails", func(d *propDef) { d.maxItems, d.maxLen = 250, 250 })
	// employeeOrgData {division, costCenter}; no documented lengths.
	set("employeeOrgData", func(d *propDef) {
		d.fields = map[string]string{"division": "division", "costcenter": "costCenter"}
		d.typeName = "microsoft.graph.employeeOrgData"
	})
	// onPremisesExtensionAttributes: extensionAttribute1..15, "Each
	// attribute can store up to 1024 characters", read-only for synced
	// users.
	set(propExtAttrs, func(d *propDef) {
		d.fields = map[string]string{}
		for i := 1; i <= 15; i++ {
			n := fmt.Sprintf("extensionAttribute%d", i)
			d.fields[strings.ToLower(n)] = n
		}
		d.maxLen, d.syncedRO = 1024, true
		d.typeName = "microsoft.graph.onPremisesExtensionAttributes"
	})
}

// checkPropValue validates a written property's value and returns it as
// stored: a DateTimeOffset in UTC, a complex value with canonical field
// names.
func checkPropValue(d propDef, v any) (any, *response) {
	if v == nil {
		return nil, nil
	}
	bad := invalidValue(d.name)
	switch d.kind {
	case kString:
		s, ok := v.(string)
		if !ok || (d.maxLen > 0 && utf8.RuneCountInString(s) > d.maxLen) {
			return nil, bad
		}
		if d.name == "preferredLanguage" && !languageTagOK(s) {
			return nil, bad
		}
	case kDateTime:
		ts, ok := dateTimeValue(v)
		if !ok {
			return nil, bad
		}
		return ts, nil
	case kBool:
		if _, ok := v.(bool); !ok {
			return nil, bad
		}
	case kStringList:
		l, ok := v.([]any)
		if !ok || (d.maxItems > 0 && len(l) > d.maxItems) {
			return nil, bad
		}
		for _, x := range l {
			s, ok := x.(string)
			if !ok || (d.maxLen > 0 && utf8.RuneCountInString(s) > d.maxLen) {
				return nil, bad
			}
		}
	case kObject:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, bad
		}
		if d.fields != nil {
			return checkComplex(d, m)
		}
	case kObjectList:
		if _, ok := v.([]any); !ok {
			return nil, bad
		}
	}
	return v, nil
}

// checkComplex validates the fields of a complex value of a known shape:
// each a string (or null) within d.maxLen. An unknown field is refused with
// the OData reader's message for a property the type does not declare.
func checkComplex(d propDef, m map[string]any) (any, *response) {
	out := make(map[string]any, len(m))
	for k, x := range m {
		if strings.Contains(k, "@") {
			continue
		}
		f, ok := d.fields[strings.ToLower(k)]
		if !ok {
			return nil, badRequest(fmt.Sprintf("The property '%s' does not exist on type '%s'. Make sure to only use property names that are defined by the type.", k, d.typeName))
		}
		if x == nil {
			out[f] = nil
			continue
		}
		s, ok := x.(string)
		if !ok || (d.maxLen > 0 && utf8.RuneCountInString(s) > d.maxLen) {
			return nil, invalidValue(d.name)
		}
		out[f] = s
	}
	return out, nil
}

// languageTagOK: "an ISO 639 two-letter lowercase culture code associated
// with the language, and an ISO 3166 two-letter uppercase subculture code
// associated with the country or region. Example: 'en-US'" (user
// resource, preferredLanguage).
func languageTagOK(s string) bool {
	if len(s) != 5 || s[2] != '-' {
		return false
	}
	for i, c := range []byte(s) {
		switch {
		case i < 2 && c >= 'a' && c <= 'z', i > 2 && c >= 'A' && c <= 'Z', i == 2:
		default:
			return false
		}
	}
	return true
}

// upnAliasOK reports whether the local part of a UPN uses only the
// characters Entra ID allows: A-Z a-z 0-9 ' . - _ ! # ^ ~, no dot right
// before the @, at most 64 characters (Entra "password policies and
// account restrictions", username policies).
func upnAliasOK(alias string) bool {
	if alias == "" || len(alias) > 64 || alias[len(alias)-1] == '.' {
		return false
	}
	for i := 0; i < len(alias); i++ {
		c := alias[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("'.-_!#^~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// mailNicknameOK: ASCII printable without spaces, @, and the characters
// Exchange rejects in an alias.
func mailNicknameOK(n string) bool {
	if n == "" || len(n) > 64 || n[0] == '.' || n[len(n)-1] == '.' {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`@()\[]";:<>,`, c) >= 0 {
			return false
		}
	}
	return true
}

// passwordOK applies the Entra ID cloud password policy: 8–256 characters,
// three of lower case, upper case, digits and symbols.
func passwordOK(p string) bool {
	n := utf8.RuneCountInString(p)
	if n < 8 || n > 256 {
		return false
	}
	var lo, up, dg, sy int
	for _, r := range p {
		switch {
		case r >= 'a' && r <= 'z':
			lo = 1
		case r >= 'A' && r <= 'Z':
			up = 1
		case r >= '0' && r <= '9':
			dg = 1
		case r >= ' ' && r < 0x7f:
			sy = 1
		default:
			return false
		}
	}
	return lo+up+dg+sy >= 3
}
