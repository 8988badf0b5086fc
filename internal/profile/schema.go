package profile

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Schema is the attribute set of one job: the built-in table followed by
// the job's directory schema extensions, each managed or not. A job
// manages the attributes its source relation has a column for (Restrict),
// except an OwnedWhenFilled one whose column is NULL in every source row
// (Fill): an attribute not managed is never read, written or cleared
// (another system may own it).
type Schema struct {
	Attrs   []Attr
	managed []bool
	// unfilled are the OwnedWhenFilled columns the source has but leaves
	// NULL in every row (Fill), in table order.
	unfilled []string
}

// Default manages every built-in attribute (a source with every column).
var Default = NewSchema(nil)

// NewSchema is the built-in table plus extensions, all managed.
func NewSchema(extensions []Attr) *Schema {
	s := &Schema{Attrs: append(slices.Clone(Builtin), extensions...)}
	s.managed = make([]bool, len(s.Attrs))
	for i := range s.managed {
		s.managed[i] = true
	}
	return s
}

// Restrict returns the schema managing only the attributes has says the
// source has a column for.
func (s *Schema) Restrict(has func(column string) bool) *Schema {
	out := &Schema{Attrs: s.Attrs, managed: make([]bool, len(s.Attrs))}
	for i, a := range s.Attrs {
		out.managed[i] = s.managed[i] && has(a.Column)
	}
	for _, c := range s.unfilled {
		if has(c) {
			out.unfilled = append(out.unfilled, c)
		}
	}
	return out
}

// WhenFilled lists the managed OwnedWhenFilled attributes' columns: those
// the job owns only if a source row fills them (the store asks which do).
func (s *Schema) WhenFilled() []string {
	var out []string
	for i, a := range s.Attrs {
		if s.managed[i] && a.OwnedWhenFilled {
			out = append(out, a.Column)
		}
	}
	return out
}

// Fill returns the schema no longer managing the OwnedWhenFilled
// attributes whose column filled says no source row holds a value; they
// are listed by Unfilled. The other attributes are unchanged: a present
// column of the original 13 (or of a declared schema extension) is owned
// even when NULL in every row, its NULL clearing the property.
func (s *Schema) Fill(filled func(column string) bool) *Schema {
	out := &Schema{Attrs: s.Attrs, managed: slices.Clone(s.managed), unfilled: slices.Clone(s.unfilled)}
	for i, a := range s.Attrs {
		if out.managed[i] && a.OwnedWhenFilled && !filled(a.Column) {
			out.managed[i] = false
			out.unfilled = append(out.unfilled, a.Column)
		}
	}
	return out
}

// Unfilled lists the columns the source has but Fill left unmanaged
// because they are NULL in every row, in table order.
func (s *Schema) Unfilled() []string { return slices.Clone(s.unfilled) }

// Len is the number of attributes (managed or not).
func (s *Schema) Len() int { return len(s.Attrs) }

// Managed says whether the job manages attribute i.
func (s *Schema) Managed(i int) bool { return i < len(s.managed) && s.managed[i] }

// ManagedColumns lists the managed attributes' columns, in table order.
func (s *Schema) ManagedColumns() []string {
	var out []string
	for i, a := range s.Attrs {
		if s.managed[i] {
			out = append(out, a.Column)
		}
	}
	return out
}

// Permissions lists the application permissions, beyond
// User.ReadWrite.All, that writing the managed attributes needs, each with
// the columns needing it.
func (s *Schema) Permissions() map[string][]string {
	out := map[string][]string{}
	for i, a := range s.Attrs {
		if s.managed[i] && a.Permission != "" {
			out[a.Permission] = append(out[a.Permission], a.Column)
		}
	}
	return out
}

// Select lists the top-level Graph properties of the managed attributes,
// for $select (a complex property once).
func (s *Schema) Select() []string {
	var out []string
	seen := map[string]bool{}
	for i, a := range s.Attrs {
		if p := a.Parent(); s.managed[i] && !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// Decode reads the managed attributes out of a Graph user's properties
// (decoded JSON, by property name).
func (s *Schema) Decode(props map[string]any) Values {
	vals := make([]string, len(s.Attrs))
	for i, a := range s.Attrs {
		if !s.managed[i] {
			continue
		}
		x := props[a.Parent()]
		if m := a.Member(); m != "" {
			obj, _ := x.(map[string]any)
			x = obj[m]
		}
		vals[i] = a.FromGraph(x)
	}
	return Pack(vals)
}

// SetField puts attribute i's canonical value v into a Graph request body,
// nesting members of complex properties.
func (s *Schema) SetField(fields map[string]any, i int, v string) {
	a := s.Attrs[i]
	m := a.Member()
	if m == "" {
		fields[a.Graph] = a.GraphValue(v)
		return
	}
	obj, ok := fields[a.Parent()].(map[string]any)
	if !ok {
		obj = map[string]any{}
		fields[a.Parent()] = obj
	}
	obj[m] = a.GraphValue(v)
}

type schemaKey struct{}

// WithSchema returns ctx carrying the job's schema: the store streams, and
// the directory client selects and decodes, the attributes it manages.
func WithSchema(ctx context.Context, s *Schema) context.Context {
	return context.WithValue(ctx, schemaKey{}, s)
}

// Carried returns the schema ctx carries, if any.
func Carried(ctx context.Context) (*Schema, bool) {
	s, ok := ctx.Value(schemaKey{}).(*Schema)
	return s, ok && s != nil
}

// From returns the schema ctx carries, else Default.
func From(ctx context.Context) *Schema {
	if s, ok := ctx.Value(schemaKey{}).(*Schema); ok && s != nil {
		return s
	}
	return Default
}

// ExtensionTypes are Graph's extensionProperty dataTypes a job may declare,
// with the kind each maps to.
var ExtensionTypes = map[string]Kind{"String": String, "Integer": Integer, "Boolean": Bool, "DateTime": Time}

var extensionName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]{0,39}$`)

// Extension is the attribute of a directory schema extension registered on
// the application appID: property extension_{appId without dashes}_{name},
// fed by the source column snake_case(name). A String value holds at most
// 256 characters (extensionProperty).
func Extension(appID, name, dataType string) (Attr, error) {
	if !extensionName.MatchString(name) {
		return Attr{}, fmt.Errorf("schema extension name %q: want letters and digits, starting with a letter (e.g. costCode)", name)
	}
	kind, ok := ExtensionTypes[dataType]
	if !ok {
		return Attr{}, fmt.Errorf("schema extension %s: type %q; want one of String, Integer, Boolean, DateTime", name, dataType)
	}
	a := Attr{Column: SnakeCase(name), Kind: kind,
		Graph:  "extension_" + strings.ReplaceAll(strings.ToLower(appID), "-", "") + "_" + name,
		Limits: "directory schema extension (" + dataType + ")"}
	if kind == String {
		a.Max = 256
		a.Limits += ", ≤ 256 characters"
	}
	return a, nil
}

// Problem checks one normalised value of attribute a, returning "" or a
// sentence naming the column and the fix. Required-ness is the caller's
// (a NULL in a required column is a different message).
func (a Attr) Problem(v string) string {
	if v == "" {
		return ""
	}
	entries := []string{v}
	if a.Kind == List {
		entries = SplitList(v)
		if a.MaxItems > 0 && len(entries) > a.MaxItems {
			return fmt.Sprintf("%s: %d entries; Graph accepts at most %d (keep one in the array)", a.Column, len(entries), a.MaxItems)
		}
	}
	for _, e := range entries {
		if n := utf8.RuneCountInString(e); a.Max > 0 && n > a.Max {
			return fmt.Sprintf("%s: %d characters; Graph allows at most %d (shorten it)", a.Column, n, a.Max)
		}
		if strings.IndexFunc(e, unicode.IsControl) >= 0 {
			return fmt.Sprintf("%s: contains a control character (tab, newline, …); remove it", a.Column)
		}
		if a.Check != nil {
			if p := a.Check(e); p != "" {
				return fmt.Sprintf("%s %q: %s", a.Column, e, p)
			}
		}
	}
	switch a.Kind {
	case Time:
		if _, ok := CanonicalTime(v); !ok {
			return fmt.Sprintf("%s %q: not a timestamp (use a timestamptz column)", a.Column, v)
		}
	case Integer:
		if _, ok := parseInt(v); !ok {
			return fmt.Sprintf("%s %q: not an integer (use an integer column)", a.Column, v)
		}
	case Bool:
		if v != "true" && v != "false" {
			return fmt.Sprintf("%s %q: not a boolean (use a boolean column)", a.Column, v)
		}
	}
	return ""
}

func parseInt(s string) (int64, bool) {
	var n int64
	_, err := fmt.Sscan(s, &n)
	return n, err == nil && fmt.Sprint(n) == s
}

func checkCountryCode(v string) string {
	if !IsCountryCode(v) {
		return "not an ISO 3166-1 alpha-2 country code (e.g. US, DE, FR)"
	}
	return ""
}

var languageTag = regexp.MustCompile(`^[a-z]{2}-[A-Z]{2}$`)

func checkLanguage(v string) string {
	if !languageTag.MatchString(v) || !IsCountryCode(v[3:]) {
		return "not an ISO 639-1 language and country code, ll-CC (e.g. en-US, fr-FR)"
	}
	return ""
}

func checkMail(v string) string {
	at := strings.LastIndexByte(v, '@')
	if at <= 0 || at == len(v)-1 || !strings.Contains(v[at+1:], ".") || strings.ContainsAny(v, " ,;<>") {
		return "not an e-mail address (name@example.com)"
	}
	return ""
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

// IsCountryCode says whether s is an assigned ISO 3166-1 alpha-2 code.
func IsCountryCode(s string) bool {
	if len(s) != 2 || s[0] < 'A' || s[0] > 'Z' || s[1] < 'A' || s[1] > 'Z' {
		return false
	}
	return strings.Contains(countryCodes, s)
}

// Pairs lists Graph name and value of each non-empty value of v, in table
// order (lists shown comma-separated), for printing.
func (s *Schema) Pairs(v Values) []string {
	var out []string
	for i, x := range v.Expand(nil, s.Len()) {
		if x != "" {
			out = append(out, s.Attrs[i].Graph, strings.ReplaceAll(x, ListSep, ", "))
		}
	}
	return out
}

// mailNicknameForbidden are the ASCII characters Graph refuses in
// mailNickname; non-ASCII and control characters are refused too.
const mailNicknameForbidden = "@()\\[]\";:<>, "

func checkMailNickname(v string) string {
	for _, r := range v {
		if r > unicode.MaxASCII || unicode.IsControl(r) || strings.ContainsRune(mailNicknameForbidden, r) {
			return fmt.Sprintf("character %q is not allowed (no spaces, accents or any of @()\\[]\";:<>,)", r)
		}
	}
	return ""
}
