package tenants_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/store"
	"github.com/entraprov/entraprov/internal/tenants"
	"github.com/entraprov/entraprov/internal/testdb"
)

const (
	tenantA = "11111111-1111-1111-1111-111111111111"
	tenantB = "22222222-2222-2222-2222-222222222222"
)

// template is a template job as Load leaves it, with a file job of one
// tenant before it.
func templateConfig() *config.Config {
	plain := config.DefaultJob()
	plain.Name, plain.TenantID, plain.Source = "hr", tenantA, "entraprov.desired_users"
	plain.AllowedDomains = []string{"contoso.com"}
	tmpl := config.DefaultJob()
	tmpl.Name, tmpl.TenantsFrom, tmpl.Source = "isv", "isv.tenants", "isv.users"
	tmpl.AllowedDomains = []string{"example.com"}
	tmpl.AllowedGroups = []string{"0f5c9c1e-6f9a-4a41-a1f1-3e0e0d1e2f30"}
	cfg := config.Default()
	cfg.Jobs = []config.Job{plain, tmpl}
	return &cfg
}

// exec is internal/testdb's Exec under the short name these tests use.
var exec = testdb.Exec

// Every row of the tenants relation is accounted for: an enabled, valid
// row gives a job named <template>@<name> with the row's tenant and the
// template's source scoped to the row's scope; a disabled row gives none
// and no problem; a broken row gives none and says why, without echoing a
// value that may be a secret pasted in the wrong column; the others run.
func TestExpandGivesOneJobPerValidEnabledRow(t *testing.T) {
	st := testdb.New(t)
	ctx := context.Background()
	exec(t, st, `CREATE SCHEMA isv`)
	exec(t, st, `CREATE TABLE isv.tenants (tenant_id text, name text, enabled boolean, scope text, allowed_domains text[])`)
	const pastedSecret = "Zx8Q~notATenantIdButASecretValue0123456789"
	exec(t, st, `INSERT INTO isv.tenants VALUES
 ($1, 'contoso', true, 'c1', NULL),
 ($2, 'fabrikam', true, 'f1', '{fabrikam.com}'),
 ('33333333-3333-3333-3333-333333333333', 'old', false, 'o1', NULL),
 ($3, 'pasted', true, 'p1', NULL),
 ('44444444-4444-4444-4444-444444444444', 'Bad Name', true, 'b1', NULL),
 ('55555555-5555-5555-5555-555555555555', 'noscope', true, NULL, NULL),
 ('66666666-6666-6666-6666-666666666666', 'baddomain', true, 'd1', '{not_a_domain}'),
 ($2, 'fabrikam2', true, 'f1', NULL)`, tenantA, tenantB, pastedSecret)

	exp, err := tenants.Expand(ctx, st, templateConfig())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, j := range exp.Jobs {
		names = append(names, j.Name)
	}
	if want := []string{"hr", "isv@contoso", "isv@fabrikam"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("jobs %v; want %v (problems: %v)", names, want, exp.Problems())
	}
	c := exp.Jobs[1]
	if c.TenantID != tenantA || c.Source != "isv.users[tenant_scope=c1]" || c.Template != "isv" || c.TenantsFrom != "" ||
		!reflect.DeepEqual(c.AllowedDomains, []string{"example.com"}) {
		t.Errorf("isv@contoso = tenant %s source %s template %q tenants_from %q domains %v", c.TenantID, c.Source, c.Template, c.TenantsFrom, c.AllowedDomains)
	}
	if f := exp.Jobs[2]; !reflect.DeepEqual(f.AllowedDomains, []string{"fabrikam.com"}) {
		t.Errorf("isv@fabrikam allowed_domains %v; want the row's [fabrikam.com]", f.AllowedDomains)
	}
	if rel, scope, ok := config.SplitSource(c.Source); !ok || rel != "isv.users" || scope != "c1" {
		t.Errorf("SplitSource(%q) = %q, %q, %v", c.Source, rel, scope, ok)
	}

	want := map[string]string{ // job -> a part of its problem ("" none)
		"isv@contoso": "", "isv@fabrikam": "", "isv@old": "",
		"isv@pasted":    "tenant_id is neither a GUID",
		"isv@Bad Name":  `name "Bad Name"`,
		"isv@noscope":   "scope is NULL",
		"isv@baddomain": `allowed_domains: "not_a_domain"`,
		"isv@fabrikam2": "already served by job isv@fabrikam",
	}
	if len(exp.Tenants) != len(want) {
		t.Fatalf("%d tenants; want %d: %+v", len(exp.Tenants), len(want), exp.Tenants)
	}
	for _, tn := range exp.Tenants {
		w, ok := want[tn.Job]
		switch {
		case !ok:
			t.Errorf("unexpected tenant %s", tn.Job)
		case w == "" && tn.Problem != "":
			t.Errorf("%s: problem %q; want none", tn.Job, tn.Problem)
		case w != "" && !strings.Contains(tn.Problem, w):
			t.Errorf("%s: problem %q; want it to say %q", tn.Job, tn.Problem, w)
		}
		if strings.Contains(tn.Problem, pastedSecret) {
			t.Errorf("%s: problem echoes the tenant_id column: %q", tn.Job, tn.Problem)
		}
	}
	if old, _ := exp.Find("isv@old"); old.Runs() || old.Row.Enabled {
		t.Errorf("disabled row runs: %+v", old)
	}
}

// A tenants relation that cannot be read stops the start naming the
// template's key and the fix; the relation's rows are not guessed.
func TestExpandNamesTheKeyOfAnUnusableRelation(t *testing.T) {
	st := testdb.New(t)
	ctx := context.Background()
	tests := []struct {
		name, setup, want string
	}{
		{"missing_relation", ``, "isv.tenants does not exist"},
		{"missing_column", `CREATE SCHEMA isv; CREATE TABLE isv.tenants (tenant_id uuid, name text, enabled boolean)`, `column "scope" does not exist`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			exec(t, st, `DROP SCHEMA IF EXISTS isv CASCADE`)
			if tt.setup != "" {
				exec(t, st, tt.setup)
			}
			_, err := tenants.Expand(ctx, st, templateConfig())
			var ve *config.ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) != 1 || ve.Problems[0].Key != "jobs[1].tenants_from" ||
				!strings.Contains(ve.Problems[0].Msg, tt.want) || !strings.Contains(ve.Problems[0].Msg, "(tenant_id text or uuid, name text, enabled boolean, scope text") {
				t.Fatalf("Expand error %v; want one problem at jobs[1].tenants_from saying %q and the columns", err, tt.want)
			}
		})
	}
}

// Judge turns one sign-in into the tenant's onboarding status: the roles,
// what is missing and where an administrator consents, never a token.
func TestJudge(t *testing.T) {
	job := config.DefaultJob()
	job.Name, job.TenantID, job.Auth.ClientID = "isv@contoso", tenantA, "7d0e2a51-2b1f-4c3e-9b8a-5e6f7a8b9c0d"
	consent := directory.ConsentURL(job)
	refused := &directory.AuthError{Code: 700016, Tenant: tenantA, ClientID: job.Auth.ClientID,
		Advice: "application is not found in tenant: open " + consent, ConsentURL: consent, Err: errors.New("AADSTS700016")}
	at := time.Date(2026, 11, 30, 2, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		required []string
		roles    []string
		err      error
		want     store.Consent
	}{
		{"consented", []string{directory.PermUsers}, []string{directory.PermUsers, directory.PermGroups}, nil,
			store.Consent{SignedIn: true, Granted: []string{directory.PermUsers, directory.PermGroups}}},
		{"signed_in_without_roles_needs_consent", []string{directory.PermUsers, directory.PermGroups}, nil, nil,
			store.Consent{SignedIn: true, Missing: []string{directory.PermUsers, directory.PermGroups}, ConsentURL: consent}},
		{"broader_role_covers", []string{directory.PermUsers}, []string{"Directory.ReadWrite.All"}, nil,
			store.Consent{SignedIn: true, Granted: []string{"Directory.ReadWrite.All"}}},
		{"refused_sign_in_keeps_the_advice_and_url", []string{directory.PermUsers}, nil, refused,
			store.Consent{AADSTS: 700016, ConsentURL: consent, Advice: refused.Advice}},
		{"untranslated_failure_keeps_its_message", []string{directory.PermUsers}, nil, errors.New("dial tcp: connection refused"),
			store.Consent{Advice: "dial tcp: connection refused"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tenants.Judge(job, tt.required, tt.roles, tt.err, store.ConsentByCheck, at)
			want := tt.want
			want.Job, want.TenantID, want.CheckedAt, want.CheckedBy = job.Name, tenantA, at, store.ConsentByCheck
			if len(want.Missing) > 0 {
				got.Advice = strings.TrimSpace(got.Advice)
				if !strings.Contains(got.Advice, consent) {
					t.Errorf("advice %q lacks the consent URL", got.Advice)
				}
				want.Advice = got.Advice
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Judge = %+v\nwant    %+v", got, want)
			}
		})
	}
}

// What the daemon's refresh costs each tenants.refresh: reading and
// expanding a relation of 1,000 customers (report: ms per refresh).
func BenchmarkExpand1000Tenants(b *testing.B) {
	st := testdb.New(b)
	ctx := context.Background()
	for _, sql := range []string{
		`CREATE SCHEMA isv`,
		`CREATE TABLE isv.tenants (tenant_id uuid PRIMARY KEY, name text NOT NULL UNIQUE, enabled boolean NOT NULL, scope text NOT NULL)`,
		`INSERT INTO isv.tenants SELECT gen_random_uuid(), 'c' || i, i % 10 <> 0, 's' || i FROM generate_series(1, 1000) AS i`,
	} {
		if _, err := st.Pool().Exec(ctx, sql); err != nil {
			b.Fatal(err)
		}
	}
	cfg := templateConfig()
	b.ResetTimer()
	var jobs int
	for b.Loop() {
		exp, err := tenants.Expand(ctx, st, cfg)
		if err != nil {
			b.Fatal(err)
		}
		jobs = len(exp.Jobs)
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/refresh")
	b.ReportMetric(float64(jobs), "jobs")
}
