// Package tenants is "tenants as data": one application, admin-consented in
// many customer tenants, provisioning each of them from one shared source.
//
// It owns two things. Expand turns every template job of a configuration
// (jobs[].tenants_from) into one job per enabled row of its tenants
// relation, named "<template>@<tenant name>", with the row's tenant id and
// the template's source read only where its tenant_scope column equals the
// row's scope (config.ScopedSource); a bad row fails that tenant alone.
// SignIn signs a job in and records what it found (roles granted, roles
// missing, the admin-consent URL, the advice for a refused sign-in) in
// tenant_consent, which `worker tenants` lists: the ISV's onboarding view;
// a successful sign-in is recorded by its Grant once the caller knows what
// the job needs (directory.RequiredPermissions).
//
// It must not schedule, run or reload jobs (internal/daemon and
// internal/jobs do, with the jobs Expand returns), nor decide what a run
// does with a user (internal/sync). It never stores or logs a token or a
// secret: only the translated advice of a failure.
package tenants

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/store"
)

// Reader reads a tenants relation (*store.Store).
type Reader interface {
	ReadTenants(ctx context.Context, relation string) ([]store.TenantRow, error)
}

var _ Reader = (*store.Store)(nil)

// JobName is the name of template's job for the tenant named name. The "@"
// cannot appear in a job name of the file, so an expanded job never takes
// the name of a written one.
func JobName(template, name string) string { return template + "@" + name }

// Tenant is one row of a template's tenants relation and what became of it.
type Tenant struct {
	Template string          `json:"template"`
	Relation string          `json:"tenants_from"`
	Job      string          `json:"job"` // JobName(Template, Row.Name)
	Row      store.TenantRow `json:"-"`
	// Problem says why an enabled row gives no job ("" when it gives one,
	// or is disabled): the row's fault, with the fix.
	Problem string `json:"problem,omitempty"`
}

// Runs reports whether the tenant has a job that runs.
func (t Tenant) Runs() bool { return t.Row.Enabled && t.Problem == "" }

// Expansion is a configuration's jobs with its templates expanded.
type Expansion struct {
	// Jobs are what runs: the file's jobs of one tenant, in file order,
	// then each template's enabled, valid tenants in name order.
	Jobs []config.Job
	// Tenants are every row of every tenants relation, in the same order.
	Tenants []Tenant
}

// Find returns the tenant whose job is named job.
func (e Expansion) Find(job string) (Tenant, bool) {
	for _, t := range e.Tenants {
		if t.Job == job {
			return t, true
		}
	}
	return Tenant{}, false
}

// Problems lists the rows that give no job, one line each, for the log.
func (e Expansion) Problems() []string {
	var out []string
	for _, t := range e.Tenants {
		if t.Problem != "" {
			out = append(out, fmt.Sprintf("%s: tenant %q: %s", t.Relation, t.Row.Name, t.Problem))
		}
	}
	return out
}

// HasTemplates reports whether cfg has a job with tenants_from.
func HasTemplates(cfg *config.Config) bool {
	for _, j := range cfg.Jobs {
		if j.TenantsFrom != "" {
			return true
		}
	}
	return false
}

// Expand reads the tenants relation of every template job of cfg and
// returns the jobs to run. A relation that cannot be read as one (missing,
// not readable, lacking a column) is a *config.ValidationError naming the
// template's tenants_from key and the fix; a row that cannot give a job
// (bad tenant id or name, no scope, no allowed domain, a tenant and scope
// another job serves) is that tenant's Problem, and the others run. Any
// other error (the database is down) is returned as is.
func Expand(ctx context.Context, r Reader, cfg *config.Config) (Expansion, error) {
	var exp Expansion
	pairs := map[string]string{} // tenant + source -> job: two jobs would fight over the same users
	var templates []int
	for i, j := range cfg.Jobs {
		if j.TenantsFrom != "" {
			templates = append(templates, i)
			continue
		}
		exp.Jobs = append(exp.Jobs, j)
		pairs[pairKey(j.TenantID, j.Source)] = j.Name
	}
	var problems []config.Problem
	for _, i := range templates {
		tmpl := cfg.Jobs[i]
		rows, err := r.ReadTenants(ctx, tmpl.TenantsFrom)
		if errors.Is(err, store.ErrTenantsRelation) {
			problems = append(problems, config.Problem{Key: fmt.Sprintf("jobs[%d].tenants_from", i), Msg: err.Error()})
			continue
		}
		if err != nil {
			return Expansion{}, fmt.Errorf("expand template job %s: %w", tmpl.Name, err)
		}
		names := map[string]bool{}
		for _, row := range rows {
			t := Tenant{Template: tmpl.Name, Relation: tmpl.TenantsFrom, Job: JobName(tmpl.Name, row.Name), Row: row}
			job, problem := expandRow(tmpl, row)
			switch {
			case problem != "":
				t.Problem = problem
			case names[row.Name]:
				t.Problem = fmt.Sprintf("name %q appears more than once in %s; give each tenant its own name", row.Name, tmpl.TenantsFrom)
			case !row.Enabled:
				// No job: its runs stop (a run in progress finishes).
			case pairs[pairKey(job.TenantID, job.Source)] != "":
				t.Problem = fmt.Sprintf("tenant %s with scope %q is already served by job %s: two jobs would fight over the same users; disable one of the two",
					job.TenantID, row.Scope, pairs[pairKey(job.TenantID, job.Source)])
			default:
				pairs[pairKey(job.TenantID, job.Source)] = job.Name
				exp.Jobs = append(exp.Jobs, job)
			}
			names[row.Name] = true
			exp.Tenants = append(exp.Tenants, t)
		}
	}
	if len(problems) > 0 {
		return Expansion{}, &config.ValidationError{Problems: problems}
	}
	return exp, nil
}

// expandRow is template's job for one tenants row, or why the row gives
// none. Values that may be a secret pasted into the wrong column (the
// tenant id) are not echoed; the tenant's name locates the row.
func expandRow(tmpl config.Job, row store.TenantRow) (config.Job, string) {
	if p := config.NameProblem(row.Name); p != "" {
		return config.Job{}, fmt.Sprintf("name %q: %s (e.g. contoso); the job is named %s", row.Name, p, JobName(tmpl.Name, "<name>"))
	}
	if p := config.TenantIDProblem(row.TenantID); p != "" {
		return config.Job{}, "tenant_id " + p
	}
	if row.ScopeNull {
		return config.Job{}, fmt.Sprintf("scope is NULL; set it to the value of %s.%s that marks this tenant's users (an unscoped tenant would read every tenant's users)",
			tmpl.Source, config.ScopeColumn)
	}
	job := tmpl
	job.Name = JobName(tmpl.Name, row.Name)
	job.TenantID = row.TenantID
	job.TenantsFrom = ""
	job.Template = tmpl.Name
	job.Source = config.ScopedSource(tmpl.Source, row.Scope)
	if len(row.AllowedDomains) > 0 {
		job.AllowedDomains = nil
		for _, d := range row.AllowedDomains {
			d = strings.TrimSpace(d)
			if !config.IsDomain(d) {
				return config.Job{}, fmt.Sprintf("allowed_domains: %q is not a domain name; want e.g. {contoso.com}", d)
			}
			job.AllowedDomains = append(job.AllowedDomains, d)
		}
	}
	if len(job.AllowedDomains) == 0 {
		return config.Job{}, fmt.Sprintf("no allowed domain: set the row's allowed_domains (e.g. {contoso.com}) or jobs[].allowed_domains of template %s", tmpl.Name)
	}
	// Slices are the template's: an expanded job must not share them with
	// its siblings (a reload compares them, nothing writes them, but a
	// shared backing array is one append away from a cross-tenant bug).
	job.AllowedDomains = append([]string(nil), job.AllowedDomains...)
	job.AllowedGroups = append([]string(nil), tmpl.AllowedGroups...)
	if tmpl.AllowedGroups == nil {
		job.AllowedGroups = nil
	}
	return job, ""
}

func pairKey(tenant, source string) string {
	return strings.ToLower(tenant) + "\x00" + strings.ToLower(source)
}

// Config returns a copy of cfg whose jobs are the expansion's: what every
// command that runs or checks jobs works with.
func (e Expansion) Config(cfg *config.Config) *config.Config {
	c := *cfg
	c.Jobs = e.Jobs
	return &c
}
