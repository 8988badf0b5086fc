package profile

import (
	"slices"
	"strconv"
	"strings"
	"time"
)

// Values holds one user's attribute values, positioned like the attributes
// of a Schema (the built-in table, then the job's schema extensions), each
// in its canonical text form; "" is "no value".
//
// It is one string, the values separated by NUL: a row streamed from
// PostgreSQL (whose text cannot hold NUL) costs one string header however
// many attributes the profile has, instead of one per attribute. The zero
// Values has every attribute empty.
type Values struct{ s string }

const sep = "\x00"

// ListSep separates the entries of a List value in its canonical form.
const ListSep = "\x1f"

// Pack builds Values from values by position. A NUL inside a value (Graph
// could return one; PostgreSQL could not store it) becomes U+FFFD.
func Pack(values []string) Values {
	n := len(values)
	for n > 0 && values[n-1] == "" {
		n--
	}
	var b strings.Builder
	for i, v := range values[:n] {
		if i > 0 {
			b.WriteString(sep)
		}
		b.WriteString(strings.ReplaceAll(v, sep, "\uFFFD"))
	}
	return Values{b.String()}
}

// Of builds Values from index/value pairs: Of(DisplayName, "Ada", City, "Paris").
func Of(pairs ...any) Values {
	var vals []string
	for i := 0; i+1 < len(pairs); i += 2 {
		at := pairs[i].(int)
		for len(vals) <= at {
			vals = append(vals, "")
		}
		vals[at] = pairs[i+1].(string)
	}
	return Pack(vals)
}

// Packed returns Values from an already packed string (the store builds
// one in its row buffer).
func Packed(s string) Values { return Values{s} }

// String is the packed form (for hashing and debugging; never parsed).
func (v Values) String() string { return v.s }

// Get returns the value at position i.
func (v Values) Get(i int) string {
	s := v.s
	for ; i > 0; i-- {
		k := strings.IndexByte(s, 0)
		if k < 0 {
			return ""
		}
		s = s[k+1:]
	}
	if k := strings.IndexByte(s, 0); k >= 0 {
		return s[:k]
	}
	return s
}

// Expand appends every value to dst[:0] up to position n-1 (substrings, no
// copy) and returns it: loops over all attributes use it instead of Get.
func (v Values) Expand(dst []string, n int) []string {
	dst = dst[:0]
	s := v.s
	for range n {
		k := strings.IndexByte(s, 0)
		if k < 0 {
			dst = append(dst, s)
			s = ""
			continue
		}
		dst = append(dst, s[:k])
		s = s[k+1:]
	}
	return dst
}

// With returns v with position i set to value.
func (v Values) With(i int, value string) Values {
	vals := v.Expand(nil, max(i+1, strings.Count(v.s, sep)+1))
	vals[i] = value
	return Pack(vals)
}

// SplitList returns the entries of a List value.
func SplitList(v string) []string {
	if v == "" {
		return nil
	}
	return strings.Split(v, ListSep)
}

// JoinList is the canonical List value of entries: trimmed, empty entries
// dropped, order kept (Equal ignores it).
func JoinList(entries []string) string {
	out := make([]string, 0, len(entries))
	for _, e := range entries {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return strings.Join(out, ListSep)
}

// TimeLayout is the canonical form of a Time value: UTC, second precision
// (what Graph returns for DateTimeOffset properties).
const TimeLayout = "2006-01-02T15:04:05Z"

// CanonicalTime parses an RFC 3339 timestamp (Graph's form, with or
// without fractional seconds or an offset) into the canonical form.
func CanonicalTime(s string) (string, bool) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return s, false
	}
	return t.UTC().Truncate(time.Second).Format(TimeLayout), true
}

// Equal says whether two canonical values of a are the same for Graph:
// case-insensitively where a folds, as sets for lists.
func (a Attr) Equal(x, y string) bool {
	if x == y {
		return true
	}
	if a.Kind == List {
		xs, ys := normSet(SplitList(x), a.Fold), normSet(SplitList(y), a.Fold)
		return slices.Equal(xs, ys)
	}
	return a.Fold && strings.EqualFold(x, y)
}

func normSet(xs []string, fold bool) []string {
	for i := range xs {
		if fold {
			xs[i] = strings.ToLower(xs[i])
		}
	}
	slices.Sort(xs)
	return slices.Compact(xs)
}

// Normalize is the canonical form of a source value: trimmed, upper-cased
// where the attribute wants it, list entries trimmed.
func (a Attr) Normalize(v string) string {
	switch a.Kind {
	case List:
		return JoinList(SplitList(v))
	case Time:
		if c, ok := CanonicalTime(strings.TrimSpace(v)); ok {
			return c
		}
	}
	v = strings.TrimSpace(v)
	if a.Upper {
		v = strings.ToUpper(v)
	}
	return v
}

// GraphValue is the JSON value to send for canonical value v: nil clears a
// scalar, an empty array clears a collection.
func (a Attr) GraphValue(v string) any {
	switch a.Kind {
	case List:
		if v == "" {
			return []string{}
		}
		return SplitList(v)
	case Bool:
		if v == "" {
			return nil
		}
		return v == "true"
	case Integer:
		if v == "" {
			return nil
		}
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return n
		}
	}
	if v == "" {
		return nil
	}
	return v
}

// FromGraph is the canonical value of a decoded JSON value (nil, string,
// bool, float64 or []any).
func (a Attr) FromGraph(x any) string {
	switch t := x.(type) {
	case nil:
		return ""
	case string:
		if a.Kind == Time {
			c, _ := CanonicalTime(t)
			return c
		}
		return t
	case bool:
		return strconv.FormatBool(t)
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64)
	case []any:
		entries := make([]string, 0, len(t))
		for _, e := range t {
			if s, ok := e.(string); ok {
				entries = append(entries, s)
			}
		}
		return JoinList(entries)
	}
	return ""
}
