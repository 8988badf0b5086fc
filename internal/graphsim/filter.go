package graphsim

import (
	"fmt"
	"strconv"
	"strings"
)

// filter is a parsed $filter over users.
type filter struct {
	eval     func(u *user) bool
	advanced bool // needs ConsistencyLevel: eventual + $count=true
	// advWhy names the first clause that needs the advanced parameters,
	// unsupported the first clause the service refuses even with them.
	advWhy, unsupported string
	// eqProp/eqVals are set when the whole filter is one "prop eq 'v'" or
	// "prop in ('a','b')", letting the handler use an index, not a scan.
	eqProp string
	eqVals []string
	// used are the properties the filter reads (canonical, head of a
	// path), for permissions that guard a property.
	used []string
}

// uses lists the properties f reads; nil for no filter.
func (f *filter) uses() []string {
	if f == nil {
		return nil
	}
	return f.used
}

type fparser struct {
	ext         extLookup
	used        []string
	toks        []string
	pos         int
	adv         bool
	advWhy      string
	unsupported string
}

// need records what a clause "prop op" requires of the request, from the
// documented table of user properties (filterSupport).
func (p *fparser) need(prop, op string) {
	head, _, _ := strings.Cut(prop, "/")
	p.used = append(p.used, head)
	switch filterSupport(head, op) {
	case supAdvanced:
		p.adv = true
		if p.advWhy == "" {
			p.advWhy = head
			if op == "ne" || op == "endsWith" {
				p.advWhy = op
			}
		}
	case supNone:
		if p.unsupported == "" {
			p.unsupported = head
		}
	}
}

func parseFilter(s string, ext extLookup) (*filter, error) {
	toks, err := tokenize(s)
	if err != nil {
		return nil, err
	}
	p := &fparser{toks: toks, ext: ext}
	ev, err := p.or()
	if err != nil {
		return nil, err
	}
	if p.pos != len(p.toks) {
		return nil, fmt.Errorf("syntax error at position %d in '%s'", p.pos, s)
	}
	f := &filter{eval: ev, advanced: p.adv, advWhy: p.advWhy, unsupported: p.unsupported, used: p.used}
	if len(toks) == 3 && strings.EqualFold(toks[1], "eq") && strings.HasPrefix(toks[2], "'") {
		if d, ok := resolveProp(toks[0], ext); ok {
			f.eqProp, f.eqVals = d, []string{unquote(toks[2])}
		}
	}
	if len(toks) >= 5 && strings.EqualFold(toks[1], "in") && toks[2] == "(" && toks[len(toks)-1] == ")" {
		if d, ok := resolveProp(toks[0], ext); ok {
			var vals []string
			for i, tk := range toks[3 : len(toks)-1] {
				switch {
				case i%2 == 1 && tk == ",":
				case i%2 == 0 && strings.HasPrefix(tk, "'"):
					vals = append(vals, unquote(tk))
				default:
					return f, nil
				}
			}
			f.eqProp, f.eqVals = d, vals
		}
	}
	return f, nil
}

func tokenize(s string) ([]string, error) {
	var toks []string
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			i++
		case c == '(' || c == ')' || c == ',':
			toks = append(toks, string(c))
			i++
		case c == '\'':
			j := i + 1
			for {
				if j >= len(s) {
					return nil, fmt.Errorf("unterminated string literal")
				}
				if s[j] == '\'' {
					if j+1 < len(s) && s[j+1] == '\'' {
						j += 2
						continue
					}
					break
				}
				j++
			}
			toks = append(toks, s[i:j+1])
			i = j + 1
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t(),'", rune(s[j])) {
				j++
			}
			toks = append(toks, s[i:j])
			i = j
		}
	}
	return toks, nil
}

func unquote(t string) string {
	return strings.ReplaceAll(t[1:len(t)-1], "''", "'")
}

func (p *fparser) peek() string {
	if p.pos < len(p.toks) {
		return p.toks[p.pos]
	}
	return ""
}

func (p *fparser) next() string {
	t := p.peek()
	p.pos++
	return t
}

func (p *fparser) expect(t string) error {
	if got := p.next(); got != t {
		return fmt.Errorf("expected '%s', found '%s'", t, got)
	}
	return nil
}

func (p *fparser) or() (func(*user) bool, error) {
	l, err := p.and()
	if err != nil {
		return nil, err
	}
	for strings.EqualFold(p.peek(), "or") {
		p.next()
		r, err := p.and()
		if err != nil {
			return nil, err
		}
		a, b := l, r
		l = func(u *user) bool { return a(u) || b(u) }
	}
	return l, nil
}

func (p *fparser) and() (func(*user) bool, error) {
	l, err := p.unary()
	if err != nil {
		return nil, err
	}
	for strings.EqualFold(p.peek(), "and") {
		p.next()
		r, err := p.unary()
		if err != nil {
			return nil, err
		}
		a, b := l, r
		l = func(u *user) bool { return a(u) && b(u) }
	}
	return l, nil
}

func (p *fparser) unary() (func(*user) bool, error) {
	if strings.EqualFold(p.peek(), "not") {
		p.next()
		p.adv = true
		if p.advWhy == "" {
			p.advWhy = "not"
		}
		e, err := p.unary()
		if err != nil {
			return nil, err
		}
		return func(u *user) bool { return !e(u) }, nil
	}
	return p.primary()
}

// primary parses a parenthesised expression, a startswith/endswith call
// or a comparison of a property.
func (p *fparser) primary() (func(*user) bool, error) {
	t := p.next()
	if t == "(" {
		e, err := p.or()
		if err != nil {
			return nil, err
		}
		return e, p.expect(")")
	}
	if fn := strings.ToLower(t); (fn == "startswith" || fn == "endswith") && p.peek() == "(" {
		p.next()
		return p.stringFunc(fn)
	}
	name, ok := resolveProp(t, p.ext)
	if !ok {
		return nil, unknownProp(t)
	}
	return p.comparison(name)
}

// stringFunc parses the arguments of startswith or endswith (fn, lower
// case) after its "(": prop, 'literal').
func (p *fparser) stringFunc(fn string) (func(*user) bool, error) {
	prop := p.next()
	if err := p.expect(","); err != nil {
		return nil, err
	}
	lit := p.next()
	if err := p.expect(")"); err != nil {
		return nil, err
	}
	name, ok := resolveProp(prop, p.ext)
	if !ok {
		return nil, unknownProp(prop)
	}
	if !strings.HasPrefix(lit, "'") {
		return nil, fmt.Errorf("%s needs a string literal", fn)
	}
	v := strings.ToLower(unquote(lit))
	if fn == "endswith" {
		p.need(name, "endsWith")
		return func(u *user) bool { return strings.HasSuffix(strings.ToLower(propString(u, name)), v) }, nil
	}
	p.need(name, "startsWith")
	return func(u *user) bool { return strings.HasPrefix(strings.ToLower(propString(u, name)), v) }, nil
}

// comparison parses what follows property name: eq, ne, ge, le or in and
// its operand.
func (p *fparser) comparison(name string) (func(*user) bool, error) {
	op := strings.ToLower(p.next())
	switch op {
	case "ge", "le":
		want, err := literal(p.next())
		if err != nil {
			return nil, err
		}
		if want == nil {
			return nil, fmt.Errorf("operator '%s' needs a value, not null", op)
		}
		p.need(name, op)
		return func(u *user) bool {
			c, ok := propCompare(u, name, want)
			return ok && ((op == "ge" && c >= 0) || (op == "le" && c <= 0))
		}, nil
	case "eq", "ne":
		lit := p.next()
		want, err := literal(lit)
		if err != nil {
			return nil, err
		}
		switch {
		case op == "ne":
			p.need(name, "ne")
		case want == nil:
			p.need(name, "null")
		default:
			p.need(name, "eq")
		}
		if op == "ne" {
			return func(u *user) bool { return !propEquals(u, name, want) }, nil
		}
		return func(u *user) bool { return propEquals(u, name, want) }, nil
	case "in":
		if err := p.expect("("); err != nil {
			return nil, err
		}
		var set []any
		for {
			v, err := literal(p.next())
			if err != nil {
				return nil, err
			}
			set = append(set, v)
			if p.peek() == "," {
				p.next()
				continue
			}
			break
		}
		if err := p.expect(")"); err != nil {
			return nil, err
		}
		p.need(name, "in")
		return func(u *user) bool {
			for _, w := range set {
				if propEquals(u, name, w) {
					return true
				}
			}
			return false
		}, nil
	default:
		return nil, fmt.Errorf("unsupported operator '%s'", op)
	}
}

type filterErr struct{ code, msg string }

func (e filterErr) Error() string { return e.msg }

func unknownProp(p string) error {
	if isExtensionName(p) {
		// As observed for an extension the tenant does not have
		// (instructure/canvas-lms microsoft_sync specs).
		return filterErr{"Request_UnsupportedQuery", fmt.Sprintf("Property '%s' does not exist as a declared property or extension property.", p)}
	}
	return filterErr{"Request_BadRequest", fmt.Sprintf("Could not find a property named '%s' on type 'microsoft.graph.user'.", p)}
}

func literal(t string) (any, error) {
	switch {
	case strings.HasPrefix(t, "'") && len(t) >= 2:
		return unquote(t), nil
	case t == "true":
		return true, nil
	case t == "false":
		return false, nil
	case t == "null":
		return nil, nil
	}
	if f, err := strconv.ParseFloat(t, 64); err == nil {
		return f, nil
	}
	// An Edm.DateTimeOffset literal is unquoted ISO 8601
	// (employeeHireDate eq 2024-01-15T00:00:00Z); stored ones are UTC.
	if ts, ok := parseDateTimeOffset(t); ok {
		return ts, nil
	}
	return nil, fmt.Errorf("invalid literal '%s'", t)
}

// resolveProp maps a property (any case, maybe a/b path) to its canonical
// name; ext resolves the tenant's directory extensions.
func resolveProp(p string, ext extLookup) (string, bool) {
	head, rest, nested := strings.Cut(p, "/")
	if strings.EqualFold(head, "id") && !nested {
		return "id", true
	}
	d, ok := userProps[strings.ToLower(head)]
	if !ok {
		if e := ext.find(head); e != nil && !nested {
			return e.name, true
		}
		return "", false
	}
	if nested {
		return d.name + "/" + rest, true
	}
	return d.name, true
}

func propValue(u *user, name string) any {
	if name == "id" {
		return u.id
	}
	head, rest, nested := strings.Cut(name, "/")
	v := u.props[head]
	if nested {
		m, _ := v.(map[string]any)
		for k, x := range m {
			if strings.EqualFold(k, rest) {
				return x
			}
		}
		return nil
	}
	return v
}

func propString(u *user, name string) string {
	s, _ := propValue(u, name).(string)
	return s
}

// propCompare orders a user's property against a literal: strings (and
// DateTimeOffsets, stored in one UTC form, so they order as text)
// case-insensitively, numbers numerically. ok is false when the property
// is unset or of another type, which no ge/le matches.
func propCompare(u *user, name string, want any) (int, bool) {
	got := propValue(u, name)
	switch w := want.(type) {
	case string:
		g, ok := got.(string)
		if !ok {
			return 0, false
		}
		return strings.Compare(strings.ToLower(g), strings.ToLower(w)), true
	case float64:
		var g float64
		switch x := got.(type) {
		case float64:
			g = x
		case int64:
			g = float64(x)
		default:
			return 0, false
		}
		switch {
		case g < w:
			return -1, true
		case g > w:
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

func propEquals(u *user, name string, want any) bool {
	got := propValue(u, name)
	switch w := want.(type) {
	case nil:
		return got == nil || got == ""
	case string:
		g, ok := got.(string)
		return ok && strings.EqualFold(g, w)
	case float64:
		// Integer directory extensions are stored as int64.
		if g, ok := got.(int64); ok {
			return float64(g) == w
		}
		return got == want
	default:
		return got == want
	}
}
