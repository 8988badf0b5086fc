// Package profile is the one model of the user attributes entraprov
// manages: for each, the source column that feeds it, the Graph property
// it maps to, its type, Graph's documented limits, whether it may be
// cleared and how two values compare. The store builds its column lists
// and scan targets from the table, the directory client its $select and
// decoding, the planner its validation and minimal PATCH, the audit its
// comparison. Adding an attribute is one row in Builtin (plus a column in
// the desired_users migration).
//
// It imports nothing of entraprov's: every other package may use it.
package profile

import (
	"fmt"
	"strings"
	"unicode"
)

// Kind is the type of an attribute: how the source column is read, how the
// value is sent to Graph and how two values compare.
type Kind int

// Kinds. Every value travels as text in its canonical form (Canonical).
const (
	String  Kind = iota // text
	List                // text[]: a set of strings (order and duplicates ignored)
	Time                // timestamptz: compared at second precision, UTC
	Bool                // boolean (schema extensions)
	Integer             // integer (schema extensions)
)

// SQLType is the PostgreSQL contract type of a source column of the kind.
func (k Kind) SQLType() string {
	switch k {
	case List:
		return "text[]"
	case Time:
		return "timestamptz"
	case Bool:
		return "boolean"
	case Integer:
		return "bigint"
	}
	return "text"
}

// Attr is one managed user attribute.
type Attr struct {
	// Column is the source column, the Graph name in snake_case.
	Column string
	// Graph is the Graph property; "parent.member" for a member of a
	// complex property (employeeOrgData.division).
	Graph string
	Kind  Kind
	// Max is the most characters Graph documents for a value (each entry of
	// a List); 0 when Graph documents none.
	Max int
	// MaxItems is the most entries of a List Graph accepts (0: no limit).
	MaxItems int
	// Required attributes are never cleared: every user needs a value.
	Required bool
	// Fold compares values case-insensitively (Graph keeps the case it was
	// given but matches regardless, e.g. otherMails).
	Fold bool
	// Permission is the application permission writing the attribute needs
	// beyond User.ReadWrite.All ("" none).
	Permission string
	// Mirror is the entraprov.directory_users column holding the value;
	// "" keeps it in the mirror's profile jsonb under Graph (no migration
	// needed for the mirror when an attribute is added).
	Mirror string
	// LowCardinality marks values shared by many users (departments,
	// cities): the store interns them.
	LowCardinality bool
	// Check validates a normalised, non-empty value: "" when fine, else the
	// problem and its fix (the column is prefixed by Validate).
	Check func(v string) string
	// Upper normalises the value to upper case (country codes).
	Upper bool
	// Limits says Graph's documented rule in words, for `worker check` and
	// the attribute reference.
	Limits string
	// OwnedWhenFilled marks the attributes added in schema 7 (issue 15).
	// Their migration added the columns to the default source table
	// entraprov.desired_users, so a job reading it (or a SELECT * view over
	// it) has them without having chosen to feed them. Such a column makes
	// the job own the attribute only once at least one of its source rows
	// holds a value: NULL in every row, it is left to others (not
	// selected, written or cleared), and an upgrade neither clears what
	// someone else set nor selects employeeLeaveDateTime (which needs
	// User-LifeCycleInfo.Read.All). The 13 attributes of earlier schemas
	// keep the plain rule: a present column is owned, its NULL clears.
	OwnedWhenFilled bool
}

// Builtin is the table of attributes, in the order history rows and PATCH
// bodies list them. Lengths and rules are Graph's documented ones for the
// user resource (graph-facts.md); where Graph documents no length, none is
// invented.
// An attribute added later, whose column a migration adds to
// entraprov.desired_users, is OwnedWhenFilled (see the field).
var Builtin = []Attr{
	{Column: "user_principal_name", Graph: "userPrincipalName", Required: true, Fold: true, Mirror: "user_principal_name", Limits: "alias@domain, alias ≤ 64, domain ≤ 48, a verified domain"},
	{Column: "display_name", Graph: "displayName", Max: 256, Required: true, Mirror: "display_name", Limits: "≤ 256 characters; required"},
	{Column: "mail_nickname", Graph: "mailNickname", Max: 64, Required: true, Mirror: "mail_nickname", Check: checkMailNickname, Limits: "≤ 64 ASCII characters, none of @()\\[]\";:<>, or space; derived from the UPN when NULL"},
	{Column: "given_name", Graph: "givenName", Max: 64, Mirror: "given_name", Limits: "≤ 64 characters"},
	{Column: "surname", Graph: "surname", Max: 64, Mirror: "surname", Limits: "≤ 64 characters"},
	{Column: "job_title", Graph: "jobTitle", Max: 128, Mirror: "job_title", LowCardinality: true, Limits: "≤ 128 characters"},
	{Column: "department", Graph: "department", Max: 64, Mirror: "department", LowCardinality: true, Limits: "≤ 64 characters"},
	{Column: "office_location", Graph: "officeLocation", Max: 128, Mirror: "office_location", LowCardinality: true, Limits: "≤ 128 characters"},
	{Column: "company_name", Graph: "companyName", Max: 64, Mirror: "company_name", LowCardinality: true, Limits: "≤ 64 characters"},
	{Column: "employee_id", Graph: "employeeId", Max: 16, Mirror: "employee_id", Limits: "≤ 16 characters"},
	{Column: "employee_type", Graph: "employeeType", Max: 64, Mirror: "employee_type", LowCardinality: true, Limits: "≤ 64 characters"},
	{Column: "usage_location", Graph: "usageLocation", Upper: true, Mirror: "usage_location", LowCardinality: true, Check: checkCountryCode, Limits: "ISO 3166-1 alpha-2 code (US, DE)"},
	{Column: "mobile_phone", Graph: "mobilePhone", Max: 64, Mirror: "mobile_phone", Limits: "≤ 64 characters"},
	{OwnedWhenFilled: true, Column: "employee_hire_date", Graph: "employeeHireDate", Kind: Time, Limits: "timestamp; drives Lifecycle Workflows joiner tasks"},
	{OwnedWhenFilled: true, Column: "employee_leave_date_time", Graph: "employeeLeaveDateTime", Kind: Time, Permission: "User-LifeCycleInfo.ReadWrite.All", Limits: "timestamp; drives Lifecycle Workflows leaver tasks"},
	{OwnedWhenFilled: true, Column: "division", Graph: "employeeOrgData.division", LowCardinality: true, Limits: "no documented length"},
	{OwnedWhenFilled: true, Column: "cost_center", Graph: "employeeOrgData.costCenter", LowCardinality: true, Limits: "no documented length"},
	{OwnedWhenFilled: true, Column: "street_address", Graph: "streetAddress", Max: 1024, Limits: "≤ 1024 characters"},
	{OwnedWhenFilled: true, Column: "city", Graph: "city", Max: 128, LowCardinality: true, Limits: "≤ 128 characters"},
	{OwnedWhenFilled: true, Column: "state", Graph: "state", Max: 128, LowCardinality: true, Limits: "≤ 128 characters"},
	{OwnedWhenFilled: true, Column: "postal_code", Graph: "postalCode", Max: 40, Limits: "≤ 40 characters"},
	{OwnedWhenFilled: true, Column: "country", Graph: "country", Max: 128, LowCardinality: true, Limits: "≤ 128 characters"},
	{OwnedWhenFilled: true, Column: "business_phones", Graph: "businessPhones", Kind: List, MaxItems: 1, Limits: "one number (Graph accepts only one on write)"},
	{OwnedWhenFilled: true, Column: "fax_number", Graph: "faxNumber", Limits: "no documented length"},
	{OwnedWhenFilled: true, Column: "other_mails", Graph: "otherMails", Kind: List, Fold: true, Check: checkMail, Limits: "e-mail addresses; compared case-insensitively"},
	{OwnedWhenFilled: true, Column: "preferred_language", Graph: "preferredLanguage", LowCardinality: true, Check: checkLanguage, Limits: "ISO 639-1 language-country, ll-CC (en-US)"},
	extensionAttribute(1), extensionAttribute(2), extensionAttribute(3), extensionAttribute(4), extensionAttribute(5),
	extensionAttribute(6), extensionAttribute(7), extensionAttribute(8), extensionAttribute(9), extensionAttribute(10),
	extensionAttribute(11), extensionAttribute(12), extensionAttribute(13), extensionAttribute(14),
	extensionAttribute(15),
}

// extensionAttribute is onPremisesExtensionAttributes.extensionAttributeN:
// writable through Graph for cloud-only users only (synced users get them
// from on-premises AD), 1024 characters each.
func extensionAttribute(n int) Attr {
	return Attr{Column: fmt.Sprintf("extension_attribute_%d", n),
		Graph: fmt.Sprintf("onPremisesExtensionAttributes.extensionAttribute%d", n), Max: 1024,
		Limits: "≤ 1024 characters; cloud-only users only", OwnedWhenFilled: true}
}

// Indexes of the attributes the code refers to by name; the rest are only
// ever handled through the table.
var (
	UserPrincipalName = Index("user_principal_name")
	DisplayName       = Index("display_name")
	MailNickname      = Index("mail_nickname")
	GivenName         = Index("given_name")
	Surname           = Index("surname")
	JobTitle          = Index("job_title")
	Department        = Index("department")
	OfficeLocation    = Index("office_location")
	CompanyName       = Index("company_name")
	EmployeeID        = Index("employee_id")
	EmployeeType      = Index("employee_type")
	UsageLocation     = Index("usage_location")
	MobilePhone       = Index("mobile_phone")
)

// Index is the position of a built-in attribute by its column; it panics on
// an unknown one (a typo in this package's own variables).
func Index(column string) int {
	for i, a := range Builtin {
		if a.Column == column {
			return i
		}
	}
	panic("profile: no attribute " + column)
}

// Parent and Member split a Graph path: ("employeeOrgData", "division"),
// or (property, "") for a top-level property.
func (a Attr) Parent() string {
	p, _, _ := strings.Cut(a.Graph, ".")
	return p
}

// Member is the member name within Parent ("" for a top-level property).
func (a Attr) Member() string {
	_, m, _ := strings.Cut(a.Graph, ".")
	return m
}

// SnakeCase is the column name of a Graph name: costCode → cost_code.
func SnakeCase(name string) string {
	var b strings.Builder
	for i, r := range name {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}
