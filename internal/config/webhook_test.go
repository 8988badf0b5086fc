package config

import (
	"strings"
	"testing"
	"time"
)

func TestWebhookDefaultsAndValidation(t *testing.T) {
	c := mustParse(t, jobYAML("webhook: {url: 'https://hooks.example.com/entraprov'}"))
	if w := c.Jobs[0].Webhook; w.URL.Literal != "https://hooks.example.com/entraprov" || w.Timeout.Duration != 10*time.Second || w.Retries != 3 {
		t.Fatalf("webhook = %+v; want the URL with 10s and 3 retries", w)
	}
	if w := mustParse(t, jobYAML()).Jobs[0].Webhook; !w.URL.IsZero() {
		t.Fatalf("webhook without config = %+v; want off", w)
	}
	mustParse(t, jobYAML("webhook: {url: 'http://127.0.0.1:9000/hook'}"))
	for _, tt := range []struct{ name, override, key, msg string }{
		{"http_to_remote_host", "webhook: {url: 'http://hooks.example.com/x'}", "jobs[0].webhook.url", "http is only allowed to a loopback address"},
		{"not_a_url", "webhook: {url: 'hooks'}", "jobs[0].webhook.url", "not an http(s) URL"},
		{"credentials_in_url", "webhook: {url: 'https://bob:Hunter2@hooks.example.com/'}", "jobs[0].webhook.url", "a literal secret is not allowed"},
		{"timeout_zero", "webhook: {timeout: 0s}", "jobs[0].webhook.timeout", "not in 1s..5m"},
		{"retries_negative", "webhook: {retries: -1}", "jobs[0].webhook.retries", "not in 0..10"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ps := problemsOf(t, jobYAML(tt.override))
			all := (&ValidationError{Problems: ps}).Error()
			if strings.Contains(all, "Hunter2") {
				t.Fatalf("problem echoes the password: %s", all)
			}
			wantProblem(t, ps, tt.key, tt.msg)
		})
	}
}
