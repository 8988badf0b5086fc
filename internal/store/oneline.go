package store

import "strings"

// FirstLine is a stored message (a run's error summary, a quarantine
// reason, an audit detail) as the one-line displays show it: up to its
// first line break (marked " …") and at most n runes. `worker history`'s
// tables and the run webhook's error field both cut with it, so that they
// agree.
func FirstLine(s string, n int) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i] + " …"
	}
	if r := []rune(s); len(r) > n {
		s = string(r[:n-1]) + "…"
	}
	return s
}
