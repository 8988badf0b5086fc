package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/graphsim"
	"github.com/entraprov/entraprov/internal/testdb"
)

func TestMissingPermissions(t *testing.T) {
	tests := []struct {
		name     string
		required []string
		roles    []string
		want     []string
	}{
		{"no consent at all", []string{permUsers}, nil, []string{permUsers}},
		{"exact role", []string{permUsers}, []string{permUsers}, nil},
		{"groups job lacks member write", []string{permUsers, permGroups}, []string{permUsers}, []string{permGroups}},
		{"Group.ReadWrite.All covers members", []string{permUsers, permGroups}, []string{permUsers, "Group.ReadWrite.All"}, nil},
		{"Directory.ReadWrite.All covers both", []string{permUsers, permGroups}, []string{"Directory.ReadWrite.All"}, nil},
		{"read-only role is not enough", []string{permUsers}, []string{"User.Read.All"}, []string{permUsers}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := missingPermissions(tt.required, tt.roles); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("missingPermissions(%v, %v) = %v, want %v", tt.required, tt.roles, got, tt.want)
			}
		})
	}
}

// checkEnv is a graphsim tenant with one certificate app granted roles, a
// migrated database, and a configuration pointing at both.
type checkEnv struct {
	cfgPath, dbURL     string
	tenantID, clientID string
	authority          string
}

func newCheckEnv(t *testing.T, roles []string) checkEnv {
	t.Helper()
	const tenant = "4f1c7c3a-9a43-4d5e-8d57-0c2b0d3f1a11"
	const client = "7d0e2a51-2b1f-4c3e-9b8a-5e6f7a8b9c0d"
	_, srv, seeded := startSeededSim(t, &graphsim.SeedFile{Tenants: []graphsim.SeedTenant{{
		ID: tenant, Domains: []string{"contoso.example"},
		Apps: []graphsim.SeedApp{{ClientID: client, ClientSecret: "none", Certificate: true, Roles: roles}},
	}}})
	app := seeded.Tenants[0].Apps[0]

	dbURL := testdb.NewURL(t)
	t.Setenv("DATABASE_URL", dbURL)
	t.Setenv("ENTRAPROV_DATABASE_URL", "")
	path := writeConfig(t, dbURL, simJobYAML{Name: "staff", Tenant: tenant, Authority: srv.AuthorityHost, GraphURL: srv.GraphURL,
		CAFile: srv.CAFile, ClientID: client, CertFile: app.CertificateFile, KeyFile: app.KeyFile,
		Schedule: "0 2 * * *", Domain: "contoso.example"}.String(), metricsOff)
	return checkEnv{cfgPath: path, dbURL: dbURL, tenantID: tenant, clientID: client, authority: srv.AuthorityHost}
}

func runCheckJSON(t *testing.T, args ...string) (checkReport, int, string) {
	t.Helper()
	// JSON only when asked: piped or not, check prints the checklist.
	stdout, stderr, err := runWorker(t, append([]string{"check", "--json"}, args...)...)
	var rep checkReport
	if jerr := json.Unmarshal([]byte(stdout), &rep); jerr != nil {
		t.Fatalf("check output is not JSON (%v):\n%s\n%s", jerr, stdout, stderr)
	}
	return rep, exitCodeOf(err), stdout + stderr
}

func findCheck(rep checkReport, name string) checkItem {
	for _, it := range rep.Checks {
		if it.Name == name {
			return it
		}
	}
	return checkItem{Name: name, Status: "absent"}
}

// An app without admin consent: check fails, names the permission, and
// gives the tenant's admin-consent URL an administrator can open.
func TestCheckWithoutConsentPrintsConsentURL(t *testing.T) {
	env := newCheckEnv(t, nil)
	rep, code, out := runCheckJSON(t, "--config", env.cfgPath)
	if code == exitOK || rep.OK {
		t.Fatalf("check passed for an app without consent:\n%s", out)
	}
	wantURL := strings.TrimRight(env.authority, "/") + "/" + env.tenantID + "/adminconsent?client_id=" + env.clientID
	perm := findCheck(rep, "permissions")
	if perm.Status != checkFail || !reflect.DeepEqual(perm.Missing, []string{permUsers}) || perm.ConsentURL != wantURL {
		t.Errorf("permissions check = %+v; want fail, missing [%s], consent URL %s", perm, permUsers, wantURL)
	}
	if !strings.Contains(perm.Advice, wantURL) {
		t.Errorf("advice does not carry the consent URL: %q", perm.Advice)
	}
	if tok := findCheck(rep, "token"); tok.Status != checkOK {
		t.Errorf("token check = %+v; the token itself is fine", tok)
	}
	if g := findCheck(rep, "graph"); g.Status != checkFail {
		t.Errorf("graph probe = %+v; want fail (403 without consent)", g)
	}

	// The terminal checklist shows the same, with the URL on screen.
	var b bytes.Buffer
	printChecklist(&b, &rep)
	if s := b.String(); !strings.Contains(s, "✗ permissions") || !strings.Contains(s, wantURL) {
		t.Errorf("checklist:\n%s", s)
	}
}

// A consented app against a migrated database passes every check; once the
// source lists groups, the job also needs GroupMember.ReadWrite.All.
func TestCheckConsentedAppPassesUntilGroupsAreManaged(t *testing.T) {
	env := newCheckEnv(t, []string{permUsers})
	rep, code, out := runCheckJSON(t, "--config", env.cfgPath, "--job", "staff")
	if code != exitOK || !rep.OK {
		t.Fatalf("check failed (exit %d):\n%s", code, out)
	}
	for _, name := range []string{"config", "database", "schema", "source", "token", "permissions", "graph", "clock"} {
		if it := findCheck(rep, name); it.Status != checkOK {
			t.Errorf("%s: %+v", name, it)
		}
	}

	st := openStore(t, env.dbURL)
	if _, err := st.Pool().Exec(context.Background(), `INSERT INTO entraprov.desired_users (external_id, user_principal_name, display_name, groups)
VALUES ('E1', 'a@contoso.example', 'A', ARRAY['11111111-1111-1111-1111-111111111111'])`); err != nil {
		t.Fatal(err)
	}
	rep, code, out = runCheckJSON(t, "--config", env.cfgPath)
	perm := findCheck(rep, "permissions")
	if code == exitOK || perm.Status != checkFail || !reflect.DeepEqual(perm.Missing, []string{permGroups}) {
		t.Fatalf("with groups in the source: exit %d, permissions %+v\n%s", code, perm, out)
	}
}

func TestCheckUnknownJobIsAUsageError(t *testing.T) {
	env := newCheckEnv(t, []string{permUsers})
	_, _, err := runWorker(t, "check", "--config", env.cfgPath, "--job", "nope")
	if exitCodeOf(err) != exitUsage {
		t.Fatalf("exit %d (%v), want %d", exitCodeOf(err), err, exitUsage)
	}
}

// A sign-in failure is explained from its AADSTS code, and the checks that
// need a token are skipped rather than failed twice.
func TestCheckExplainsSignInFailure(t *testing.T) {
	env := newCheckEnv(t, []string{permUsers})
	cfg, err := os.ReadFile(env.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	unknown := "99999999-9999-4999-8999-999999999999"
	writeFile(t, env.cfgPath, strings.Replace(string(cfg), env.clientID, unknown, 1))
	rep, code, out := runCheckJSON(t, "--config", env.cfgPath)
	tok := findCheck(rep, "token")
	if code == exitOK || tok.Status != checkFail || !strings.Contains(tok.Detail, "AADSTS700016") || !strings.Contains(tok.Advice, unknown) {
		t.Fatalf("exit %d, token check %+v\n%s", code, tok, out)
	}
	for _, name := range []string{"permissions", "graph"} {
		if it := findCheck(rep, name); it.Status != checkSkip {
			t.Errorf("%s = %+v; want skip after a failed sign-in", name, it)
		}
	}
}

// The skew is the server's Date minus the local midpoint of the request.
func TestMeasureSkew(t *testing.T) {
	for _, off := range []time.Duration{0, 10 * time.Minute, -3 * time.Minute} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Date", time.Now().Add(off).UTC().Format(http.TimeFormat))
		}))
		skew, err := measureSkew(context.Background(), "", srv.URL)
		srv.Close()
		if err != nil {
			t.Fatal(err)
		}
		if d := skew - off; d < -1500*time.Millisecond || d > 1500*time.Millisecond {
			t.Errorf("server %v off: measured %v", off, skew)
		}
	}
}

// A configuration holding a literal secret is refused (exit 78) and the
// secret is not echoed back, in the checklist or the JSON.
func TestCheckRefusesLiteralSecretWithoutEchoingIt(t *testing.T) {
	env := newCheckEnv(t, []string{permUsers})
	cfg, err := os.ReadFile(env.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	const secret = "Zq8Q~literal-secret-value-0123456789abcd"
	broken := strings.Replace(string(cfg), "      method: certificate\n", "      method: secret\n      client_secret: "+secret+"\n", 1)
	writeFile(t, env.cfgPath, broken)
	rep, code, out := runCheckJSON(t, "--config", env.cfgPath)
	if code != exitConfig || rep.OK || findCheck(rep, "config").Status != checkFail {
		t.Fatalf("exit %d, report %+v; want 78 with a failed config check\n%s", code, rep, out)
	}
	if strings.Contains(out, secret) || strings.Contains(out, "literal-secret-value") {
		t.Fatalf("the literal secret was echoed:\n%s", out)
	}
}

// An account linked by two jobs (left from before a job stopped adopting
// other jobs' accounts, or made by hand, before migration 009 refused a
// second link: it marked such second links legacy_shared) fails the check,
// naming both links and the hand-over (issue 19).
func TestCheckListsAccountsLinkedByTwoJobs(t *testing.T) {
	env := newCheckEnv(t, []string{permUsers})
	st := openStore(t, env.dbURL)
	if _, err := st.Pool().Exec(context.Background(), `INSERT INTO entraprov.directory_links (job, external_id, object_id, state, legacy_shared) VALUES
('staff', 'E1', 'obj-1', 'active', false), ('contractors', 'C1', 'obj-1', 'disabled', true), ('staff', 'E2', 'obj-2', 'active', false)`); err != nil {
		t.Fatal(err)
	}
	rep, code, out := runCheckJSON(t, "--config", env.cfgPath, "--job", "staff")
	it := findCheck(rep, "owners")
	if code == exitOK || it.Status != checkFail || !strings.Contains(it.Detail, "obj-1 linked by contractors/C1, staff/E1") ||
		strings.Contains(it.Detail, "obj-2") || !strings.Contains(it.Advice, "Moving a user between jobs") {
		t.Fatalf("exit %d, owners check %+v; want a failure naming obj-1's two links\n%s", code, it, out)
	}
}

// `worker check` lists the attributes the job manages (the source's
// columns), names the schema-7 columns present but NULL in every row as
// not managed, and asks for User-LifeCycleInfo.ReadWrite.All once the
// source fills employee_leave_date_time (issue 15).
func TestCheckListsAttributesAndTheirPermissions(t *testing.T) {
	env := newCheckEnv(t, []string{permUsers})
	st := openStore(t, env.dbURL)
	if _, err := st.Pool().Exec(context.Background(), `CREATE VIEW entraprov.narrow AS
SELECT external_id, user_principal_name, display_name, city, employee_leave_date_time, account_enabled, manager_external_id, groups
  FROM entraprov.desired_users`); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(env.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(env.cfgPath, []byte(strings.Replace(string(cfg), "  - name: staff\n", "  - name: staff\n    source: entraprov.narrow\n", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	rep, code, out := runCheckJSON(t, "--config", env.cfgPath)
	attrs := findCheck(rep, "attributes")
	if code != exitOK || attrs.Status != checkOK || !strings.Contains(attrs.Detail, "manages user_principal_name, display_name (") ||
		!strings.HasSuffix(attrs.Detail, "; present but NULL in every row: not managed until filled: employee_leave_date_time, city") {
		t.Fatalf("exit %d, attributes %+v\n%s", code, attrs, out)
	}

	if _, err := st.Pool().Exec(context.Background(), `INSERT INTO entraprov.desired_users (external_id, user_principal_name, display_name, employee_leave_date_time)
VALUES ('E1', 'a@contoso.example', 'A', '2027-01-31 18:00Z')`); err != nil {
		t.Fatal(err)
	}
	rep, code, out = runCheckJSON(t, "--config", env.cfgPath)
	perm, attrs := findCheck(rep, "permissions"), findCheck(rep, "attributes")
	if code == exitOK || perm.Status != checkFail || !reflect.DeepEqual(perm.Missing, []string{"User-LifeCycleInfo.ReadWrite.All"}) {
		t.Fatalf("with a leave date in the source: exit %d, permissions %+v\n%s", code, perm, out)
	}
	if !strings.Contains(attrs.Detail, "manages user_principal_name, display_name, employee_leave_date_time (") ||
		!strings.HasSuffix(attrs.Detail, "not managed until filled: city") {
		t.Fatalf("with a leave date in the source: attributes %+v", attrs)
	}
}
