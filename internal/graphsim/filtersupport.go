package graphsim

import "strings"

// support is what a $filter clause needs from the request.
type support int

const (
	supDefault  support = iota // works without the advanced parameters
	supAdvanced                // needs ConsistencyLevel: eventual and $count=true
	supNone                    // refused even with them
)

// filterOps are the columns of userFilterSupport, in order.
var filterOps = []string{"eq", "ne", "not", "ge", "le", "in", "startsWith", "null"}

// userFilterSupport is the documented table "Support for filter by
// properties of Microsoft Entra ID (directory) objects" for user
// (learn.microsoft.com/graph/aad-advanced-queries, from
// microsoft-graph-docs-contrib includes/filter-directory-objects.md): one
// letter per column of filterOps, D = default, A = advanced only, - = blank
// ("the query is not valid for that property"). Properties not listed "do
// not support $filter at all". Rules from the same page applied on top:
// `in` works by default wherever `eq` does; `ne` and `not` are advanced
// only, on every property that supports `eq`; `endsWith` is advanced only
// and only on mail, otherMails, userPrincipalName and proxyAddresses.
var userFilterSupport = map[string]string{
	"accountEnabled":                "DAAAAD--",
	"ageGroup":                      "DAA--D--",
	"assignedLicenses":              "D-A-----",
	"assignedPlans":                 "D-A-----",
	"businessPhones":                "D-A-----",
	"city":                          "DAAD-DDA",
	"companyName":                   "AAAAAAAA",
	"consentProvidedForMinor":       "DAA--D--",
	"country":                       "DAADDDDA",
	"createdDateTime":               "DAADDA--",
	"creationType":                  "DAA--D--",
	"deletedDateTime":               "DAADDA--",
	"department":                    "DAADDDDA",
	"displayName":                   "DAA--DDA",
	"employeeHireDate":              "AA-AAA--",
	"employeeLeaveDateTime":         "AA-AAA--", // see userFilterSupportUnlisted
	"employeeOrgData":               "AA-AAA--", // see userFilterSupportUnlisted
	"faxNumber":                     "AA-AAAAA", // see userFilterSupportUnlisted
	"employeeId":                    "DA--A-DA",
	"employeeType":                  "AA-AAAA-",
	"givenName":                     "DA-DDDDA",
	"id":                            "DAA-----",
	"identities":                    "D-------",
	"imAddresses":                   "DAADD-D-",
	"isResourceAccount":             "DA------",
	"jobTitle":                      "DA-DDD-A",
	"mail":                          "DA-DDDD-",
	"mailNickname":                  "DA-DDDDA",
	"mobilePhone":                   "AA-AAAAA",
	"officeLocation":                "AA-AAAAA",
	"onPremisesExtensionAttributes": "AA-AAA--",
	"onPremisesImmutableId":         "AA-AAA--",
	"onPremisesLastSyncDateTime":    "AA-AAA--",
	"onPremisesSamAccountName":      "AA-AAAA-",
	"onPremisesSecurityIdentifier":  "DA---D-A",
	"onPremisesSyncEnabled":         "DA-AAD--",
	"onPremisesUserPrincipalName":   "DA-DDDD-",
	"otherMails":                    "DA-DDDD-",
	"passwordPolicies":              "AA-----A",
	"postalCode":                    "AA-AAAAA",
	"preferredLanguage":             "AA-AAAAA",
	"proxyAddresses":                "DA-DD-DA",
	"showInAddressList":             "AA-AAA--",
	"state":                         "DA-DDDDA",
	"streetAddress":                 "AA-AAAAA",
	"surname":                       "DA-DDDDA",
	"usageLocation":                 "DA-DDDD-",
	"userPrincipalName":             "DA--DDD-",
	"userType":                      "DAA--D-A",
}

// userFilterSupportUnlisted: employeeLeaveDateTime, employeeOrgData and
// faxNumber are not rows of the table, but the user resource page says
// each "Supports $filter" (employeeLeaveDateTime and employeeOrgData: eq,
// ne, not, ge, le, in; faxNumber: also startsWith and eq on null). Which of
// those need the advanced parameters is not documented; the emulator
// requires them, like the table's rows of their siblings (employeeHireDate,
// streetAddress, postalCode: advanced only).

// extensionFilterSupport is what a clause on a directory extension needs:
// eq (and so in) works without the advanced parameters (observed:
// learn.microsoft.com/answers/questions/1103191, $filter=extension_… eq
// '…' on v1.0); ne and not follow the page's general rule (advanced);
// other operators are refused (docs silent).
var extensionFilterSupport = "DAA--D--"

// endsWithProps are the only user properties endsWith works on (advanced).
var endsWithProps = map[string]bool{"mail": true, "otherMails": true, "userPrincipalName": true, "proxyAddresses": true}

// filterSupport says what "prop op" needs; op is one of filterOps or
// "endsWith". prop is the canonical property name.
func filterSupport(prop, op string) support {
	row, ok := userFilterSupport[prop]
	if !ok && isExtensionName(prop) {
		row, ok = extensionFilterSupport, true
	}
	if !ok {
		return supNone
	}
	switch op {
	case "endsWith":
		if endsWithProps[prop] {
			return supAdvanced
		}
		return supNone
	case "ne", "not":
		if row[0] == '-' {
			return supNone
		}
		return supAdvanced
	}
	i := -1
	for j, o := range filterOps {
		if strings.EqualFold(o, op) {
			i = j
		}
	}
	if i < 0 {
		return supNone
	}
	c := row[i]
	if op == "in" && row[0] == 'D' {
		c = 'D'
	}
	switch c {
	case 'D':
		return supDefault
	case 'A':
		return supAdvanced
	}
	return supNone
}
