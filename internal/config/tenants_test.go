package config

import (
	"testing"
	"time"
)

// A template job (tenants_from) takes each tenant's id from its tenants
// relation: the file names no tenant, may leave allowed_domains to the
// rows, and a mistake names the key and the fix.
func TestTemplateJobValidation(t *testing.T) {
	tmpl := []string{"-tenant_id", "tenants_from: isv.tenants", "source: isv.users"}
	c := mustParse(t, jobYAML(append(tmpl, "-allowed_domains")...))
	if j := c.Jobs[0]; j.TenantsFrom != "isv.tenants" || j.TenantID != "" || j.Template != "" {
		t.Fatalf("template job = tenants_from %q tenant %q template %q", j.TenantsFrom, j.TenantID, j.Template)
	}
	if r := c.Tenants.Refresh.Duration; r != time.Minute {
		t.Errorf("tenants.refresh default %s; want 1m", r)
	}
	for _, tt := range []struct{ name, yaml, key, msg string }{
		{"tenant_id_with_tenants_from", jobYAML("tenants_from: isv.tenants"), "jobs[0].tenant_id",
			"not used with tenants_from: each tenant's id comes from the tenant_id column of isv.tenants; remove tenant_id"},
		{"tenants_from_not_a_relation", jobYAML("-tenant_id", "tenants_from: 'isv.tenants; DROP TABLE x'"), "jobs[0].tenants_from",
			"is not a relation name; want table or schema.table"},
		{"no_tenant_without_template", jobYAML("-tenant_id"), "jobs[0].tenant_id", "required"},
		{"refresh_too_short", jobYAML(tmpl...) + "tenants: {refresh: 100ms}\n", "tenants.refresh", "shorter than 1s"},
		{"domains_still_required_for_plain_jobs", jobYAML("-allowed_domains"), "jobs[0].allowed_domains", "required"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			wantProblem(t, problemsOf(t, tt.yaml), tt.key, tt.msg)
		})
	}
}

// A scoped source round-trips, and nothing a file can write parses as one.
func TestScopedSource(t *testing.T) {
	for _, tt := range []struct {
		in, rel, scope string
		scoped         bool
	}{
		{ScopedSource("isv.users", "c1"), "isv.users", "c1", true},
		{ScopedSource("users", "a]b[c=d"), "users", "a]b[c=d", true},
		{ScopedSource("isv.users", ""), "isv.users", "", true},
		{"isv.users", "isv.users", "", false},
		{"isv.users[other=x]", "isv.users[other=x]", "", false},
		{"isv.users[tenant_scope=x", "isv.users[tenant_scope=x", "", false},
	} {
		rel, scope, scoped := SplitSource(tt.in)
		if rel != tt.rel || scope != tt.scope || scoped != tt.scoped {
			t.Errorf("SplitSource(%q) = %q, %q, %v; want %q, %q, %v", tt.in, rel, scope, scoped, tt.rel, tt.scope, tt.scoped)
		}
	}
	if p := problemsOf(t, jobYAML("source: 'isv.users[tenant_scope=x]'")); len(p) == 0 || p[0].Key != "jobs[0].source" {
		t.Errorf("a scoped source in the file is accepted: %v", p)
	}
}
