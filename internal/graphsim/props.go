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
)

type propDef struct {
	name     string
	kind     propKind
	readOnly bool
	maxLen   int
}

// userProps are the v1.0 user properties the emulator knows. Writing any
// other property is a 400, as on the service.
var userProps = map[string]propDef{}

// defaultUserSelect is what GET /users returns without $select (v1.0).
var defaultUserSelect = []string{"businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone", "officeLocation", "preferredLanguage", "surname", "userPrincipalName", "id"}

func init() {
	def := func(kind propKind, ro bool, maxLen int, names ...string) {
		for _, n := range names {
			userProps[strings.ToLower(n)] = propDef{name: n, kind: kind, readOnly: ro, maxLen: maxLen}
		}
	}
	def(kString, false, 0, "ageGroup", "city", "consentProvidedForMinor", "country", "employeeHireDate",
		"employeeLeaveDateTime", "employeeType", "faxNumber", "givenName", "jobTitle", "mail",
		"mobilePhone", "officeLocation", "onPremisesImmutableId", "passwordPolicies", "postalCode",
		"preferredDataLocation", "preferredLanguage", "state", "streetAddress", "surname", "userType",
		"companyName", "department", "usageLocation", "aboutMe", "mySite", "preferredName")
	def(kString, false, 256, "displayName")
	def(kString, false, 64, "mailNickname")
	def(kString, false, 16, "employeeId")
	def(kString, false, 113, "userPrincipalName")
	def(kBool, false, 0, "accountEnabled", "showInAddressList")
	def(kStringList, false, 0, "businessPhones", "otherMails", "interests", "skills", "schools", "responsibilities", "pastProjects")
	def(kObject, false, 0, "passwordProfile", "employeeOrgData", "onPremisesExtensionAttributes")
	def(kObjectList, false, 0, "identities")
	def(kString, true, 0, "id", "createdDateTime", "deletedDateTime", "creationType", "externalUserState",
		"externalUserStateChangeDateTime", "lastPasswordChangeDateTime", "securityIdentifier",
		"signInSessionsValidFromDateTime", "onPremisesDistinguishedName", "onPremisesDomainName",
		"onPremisesSamAccountName", "onPremisesSecurityIdentifier", "onPremisesUserPrincipalName",
		"onPremisesLastSyncDateTime", "onPremisesSyncEnabled")
	def(kStringList, true, 0, "imAddresses", "proxyAddresses")
	def(kObjectList, true, 0, "assignedLicenses", "assignedPlans", "provisionedPlans")
}

// checkPropValue validates the JSON type of a written property.
func checkPropValue(d propDef, v any) *response {
	if v == nil {
		return nil
	}
	bad := badRequest(fmt.Sprintf("Invalid value specified for property '%s' of resource 'User'.", d.name))
	switch d.kind {
	case kString:
		s, ok := v.(string)
		if !ok {
			return bad
		}
		if d.maxLen > 0 && utf8.RuneCountInString(s) > d.maxLen {
			return bad
		}
	case kBool:
		if _, ok := v.(bool); !ok {
			return bad
		}
	case kStringList:
		l, ok := v.([]any)
		if !ok {
			return bad
		}
		for _, x := range l {
			if _, ok := x.(string); !ok {
				return bad
			}
		}
	case kObject:
		if _, ok := v.(map[string]any); !ok {
			return bad
		}
	case kObjectList:
		if _, ok := v.([]any); !ok {
			return bad
		}
	}
	return nil
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
