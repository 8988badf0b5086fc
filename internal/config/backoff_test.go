package config

import (
	"testing"
	"time"
)

func TestUserBackoffDefaultsAndOverrides(t *testing.T) {
	b := mustParse(t, jobYAML()).Jobs[0].UserBackoff
	if b.AfterFailures != 3 || b.Base.Duration != 0 || b.Max.Duration != 7*24*time.Hour {
		t.Fatalf("defaults = %+v; want 3 failures, base 0 (one schedule interval), max 7d", b)
	}
	b = mustParse(t, jobYAML("user_backoff: {after_failures: 0, base: 30m}")).Jobs[0].UserBackoff
	if b.AfterFailures != 0 || b.Base.Duration != 30*time.Minute || b.Max.Duration != 7*24*time.Hour {
		t.Fatalf("explicit 0 and 30m = %+v; want off, 30m, default max", b)
	}
}

func TestUserBackoffValidation(t *testing.T) {
	for _, tt := range []struct{ name, override, key, msg string }{
		{"negative_failures", "user_backoff: {after_failures: -1}", "jobs[0].user_backoff.after_failures", "or 0 to turn the back-off off"},
		{"base_too_short", "user_backoff: {base: 10s}", "jobs[0].user_backoff.base", "at least 1m"},
		{"max_too_short", "user_backoff: {max: 30m}", "jobs[0].user_backoff.max", "shorter than 1h"},
		{"max_below_base", "user_backoff: {base: 2d, max: 1d}", "jobs[0].user_backoff.max", "want max >= base"},
		{"unknown_key_hint", "user_backoff: {after_failure: 3}", "jobs[0].user_backoff.after_failure", "did you mean after_failures"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			wantProblem(t, problemsOf(t, jobYAML(tt.override)), tt.key, tt.msg)
		})
	}
}
