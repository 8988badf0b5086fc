package config

import (
	"strings"
	"testing"
	"time"
)

func TestQuarantineDefaultsAndOverrides(t *testing.T) {
	c := mustParse(t, jobYAML())
	if q := c.Quarantine; q.AfterFailures != 5 || q.FailurePercent != 40 || q.MaxBackoff.Duration != 24*time.Hour {
		t.Fatalf("defaults = %+v; want 5, 40, 24h", q)
	}
	c = mustParse(t, "quarantine: {after_failures: 0, max_backoff: 6h}\n"+jobYAML())
	if q := c.Quarantine; q.AfterFailures != 0 || q.FailurePercent != 40 || q.MaxBackoff.Duration != 6*time.Hour {
		t.Fatalf("explicit 0 and 6h = %+v; want 0 (off), 40, 6h", q)
	}
}

func TestQuarantineValidation(t *testing.T) {
	for _, tt := range []struct{ name, yaml, key, msg string }{
		{"negative_failures", "quarantine: {after_failures: -1}\n", "quarantine.after_failures", "or 0 to turn quarantine off"},
		{"percent_zero", "quarantine: {failure_percent: 0}\n", "quarantine.failure_percent", "not in 1..100"},
		{"percent_over_100", "quarantine: {failure_percent: 101}\n", "quarantine.failure_percent", "not in 1..100"},
		{"backoff_too_short", "quarantine: {max_backoff: 10s}\n", "quarantine.max_backoff", "shorter than 1m"},
		{"unknown_key_hint", "quarantine: {after_failure: 3}\n", "quarantine.after_failure", "did you mean after_failures"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			wantProblem(t, problemsOf(t, tt.yaml+jobYAML()), tt.key, tt.msg)
		})
	}
}

func TestHistoryRetentionDefaultAndValidation(t *testing.T) {
	if r := mustParse(t, jobYAML()).History.Retention.Duration; r != 400*24*time.Hour {
		t.Fatalf("default retention = %v; want 400d", r)
	}
	if r := mustParse(t, "history: {retention: 0s}\n"+jobYAML()).History.Retention.Duration; r != 0 {
		t.Fatalf("explicit 0 = %v; want 0 (keep everything)", r)
	}
	ps := problemsOf(t, "history: {retention: 12h}\n"+jobYAML())
	if len(ps) != 1 || ps[0].Key != "history.retention" || !strings.Contains(ps[0].Msg, "shorter than 1d") {
		t.Fatalf("retention 12h: problems %v; want history.retention shorter than 1d", ps)
	}
}
