package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// ParseDuration accepts Go durations ("90s", "6h30m") and a leading day
// count ("30d", "1d12h"): a leaver grace period is naturally given in days,
// which time.ParseDuration does not know.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty duration")
	}
	var days time.Duration
	if i := strings.IndexByte(s, 'd'); i >= 0 {
		n, err := strconv.ParseUint(s[:i], 10, 16)
		if err != nil {
			return 0, fmt.Errorf("%q is not a duration; want e.g. 90s, 30m, 6h, 30d or 1d12h", s)
		}
		days = time.Duration(n) * 24 * time.Hour
		s = s[i+1:]
		if s == "" {
			return days, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || (days > 0 && d < 0) {
		return 0, fmt.Errorf("%q is not a duration; want e.g. 90s, 30m, 6h, 30d or 1d12h", s)
	}
	return days + d, nil
}

// UnmarshalYAML implements yaml.Unmarshaler. Errors are *yaml.TypeError so
// the decoder keeps going and every problem is reported at once.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: want a duration such as 30m, 6h or 30d, got a %s", n.Line, kindName(n))}}
	}
	if n.Tag == "!!null" {
		d.Duration = 0
		return nil
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
	}
	d.Duration = v
	return nil
}

// MarshalYAML prints the duration the way it would be written.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// String prints whole days as "30d" and anything else as time.Duration does.
func (d Duration) String() string {
	day := 24 * time.Hour
	if d.Duration > 0 && d.Duration%day == 0 {
		return strconv.FormatInt(int64(d.Duration/day), 10) + "d"
	}
	return d.Duration.String()
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.AliasNode:
		return "alias"
	default:
		return "scalar"
	}
}

// MinRetention is the shortest history.retention, and the shortest age
// `worker history prune --older-than` takes: the history of the last day
// is what an operator reads to answer for today's runs.
const MinRetention = 24 * time.Hour
