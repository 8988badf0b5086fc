package main

// Tests of tenants as data (issue 16) through the worker: a template job
// expanded over isv.tenants, one app consented in some customer tenants of
// graphsim and not in another, real PostgreSQL, the real SDKs over TLS.

import (
	"context"
	"encoding/json"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/graphsim"
	"github.com/entraprov/entraprov/internal/store"
	"github.com/entraprov/entraprov/internal/testdb"
)

// The customer tenants of the ISV's app: contoso is its home, fabrikam
// consented, northwind never did, litware only in part.
var isvTenants = map[string]string{
	"contoso":   "a1a1a1a1-0000-4000-8000-000000000001",
	"fabrikam":  "b2b2b2b2-0000-4000-8000-000000000002",
	"northwind": "c3c3c3c3-0000-4000-8000-000000000003",
	"old":       "d4d4d4d4-0000-4000-8000-000000000004",
	"litware":   "f6f6f6f6-0000-4000-8000-000000000006", // consented users only, not group memberships
}

// litwareGroup is a group of litware's that one of its users wants.
const litwareGroup = "f6f6f6f6-1111-4000-8000-000000000006"

const isvClient = "e5e5e5e5-0000-4000-8000-000000000005"

type tenantsEnv struct {
	cfgPath, dbURL string
	st             *store.Store
	sim            *graphsim.Sim
	authority      string
}

// consentURL is the admin-consent page of the app in tenant name.
func (e tenantsEnv) consentURL(name string) string {
	return strings.TrimRight(e.authority, "/") + "/" + isvTenants[name] + "/adminconsent?client_id=" + isvClient
}

// newTenantsEnv starts graphsim with the four tenants, creates the
// tenants relation and the shared source (three users per tenant, scoped
// by the tenant's name) and writes a configuration whose one job is the
// template "isv" on schedule.
func newTenantsEnv(t *testing.T, schedule, refresh string) tenantsEnv {
	t.Helper()
	roles := []string{directory.PermUsers, directory.PermGroups}
	sim, srv, seeded := startSeededSim(t, &graphsim.SeedFile{Tenants: []graphsim.SeedTenant{
		{ID: isvTenants["contoso"], Domains: []string{"contoso.example"}, Apps: []graphsim.SeedApp{{
			ClientID: isvClient, ClientSecret: "none", Certificate: true, MultiTenant: true, Roles: roles,
			Consent: map[string][]string{isvTenants["fabrikam"]: roles, isvTenants["old"]: roles,
				isvTenants["litware"]: {directory.PermUsers}}}}},
		{ID: isvTenants["fabrikam"], Domains: []string{"fabrikam.example"}},
		{ID: isvTenants["northwind"], Domains: []string{"northwind.example"}},
		{ID: isvTenants["old"], Domains: []string{"old.example"}},
		{ID: isvTenants["litware"], Domains: []string{"litware.example"},
			Groups: []graphsim.SeedGroup{{ID: litwareGroup, DisplayName: "Litware staff"}}},
	}})
	app := seeded.Tenants[0].Apps[0]

	dbURL := testdb.NewURL(t)
	st := openStore(t, dbURL)
	execSQL(t, st,
		`CREATE SCHEMA isv`,
		`CREATE TABLE isv.tenants (tenant_id uuid PRIMARY KEY, name text NOT NULL UNIQUE,
		   enabled boolean NOT NULL DEFAULT true, scope text NOT NULL, allowed_domains text[])`,
		`CREATE TABLE isv.users (LIKE entraprov.desired_users INCLUDING DEFAULTS)`,
		`ALTER TABLE isv.users ADD COLUMN tenant_scope text NOT NULL`,
		`INSERT INTO isv.users (external_id, user_principal_name, display_name, employee_id, tenant_scope)
		 SELECT t || '-' || i, 'user' || i || '@' || t || '.example', 'User ' || i || ' of ' || t, i::text, t
		   FROM unnest(ARRAY['contoso', 'fabrikam', 'northwind', 'old', 'litware']) AS t, generate_series(1, 3) AS i`,
		`UPDATE isv.users SET groups = ARRAY['`+litwareGroup+`'] WHERE external_id = 'litware-1'`)

	job := simJobYAML{Name: "isv", TenantsFrom: "isv.tenants", Authority: srv.AuthorityHost, GraphURL: srv.GraphURL,
		CAFile: srv.CAFile, ClientID: isvClient, CertFile: app.CertificateFile, KeyFile: app.KeyFile, Schedule: schedule,
		Extra: []string{"source: isv.users", "catch_up: false"}}.String()
	path := writeConfig(t, dbURL, job, metricsOff, "tenants:\n  refresh: "+refresh+"\n")
	t.Setenv("DATABASE_URL", "")
	t.Setenv("ENTRAPROV_DATABASE_URL", "")
	return tenantsEnv{cfgPath: path, dbURL: dbURL, st: st, sim: sim, authority: srv.AuthorityHost}
}

// addTenant inserts name's row: adding a customer is an INSERT.
func (e tenantsEnv) addTenant(t *testing.T, name string, enabled bool) {
	t.Helper()
	_, err := e.st.Pool().Exec(context.Background(),
		`INSERT INTO isv.tenants VALUES ($1, $2, $3, $2, ARRAY[$2 || '.example'])`, isvTenants[name], name, enabled)
	if err != nil {
		t.Fatal(err)
	}
}

// runsOf counts the job's runs in status (all statuses when "").
func (e tenantsEnv) runsOf(t *testing.T, job, status string) int {
	t.Helper()
	var n int
	err := e.st.Pool().QueryRow(context.Background(),
		`SELECT count(*) FROM entraprov.sync_runs WHERE job = $1 AND ($2 = '' OR status = $2)`, job, status).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// waitFor polls cond until it holds or within passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool, logs func() string) {
	t.Helper()
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("%s: not within %v; log:\n%s", what, within, logs())
}

// The running daemon follows isv.tenants without a restart: a row inserted
// while it runs gets its first run at the job's next scheduled occurrence
// (and its users are created in that tenant); a row set enabled = false
// gets no new run; and a tenant whose administrator never consented fails
// its own runs while the others succeed beside it.
func TestTenantsFollowTheirRelationWhileTheDaemonRuns(t *testing.T) {
	bin := buildWorker(t)
	e := newTenantsEnv(t, "@every 2s", "1s")
	e.addTenant(t, "contoso", true)
	e.addTenant(t, "northwind", true)
	p := startWorkerProc(t, bin, e.cfgPath)
	waitLog(t, p, `"msg":"worker ready"`, 30*time.Second)

	waitFor(t, 40*time.Second, "contoso succeeds while northwind, without consent, fails", func() bool {
		return e.runsOf(t, "isv@contoso", "succeeded") >= 2 && e.runsOf(t, "isv@northwind", "failed") >= 1
	}, p.logs.String)

	added := time.Now()
	e.addTenant(t, "fabrikam", true)
	waitFor(t, 30*time.Second, "fabrikam's first scheduled run after its INSERT", func() bool {
		return e.runsOf(t, "isv@fabrikam", "succeeded") >= 1
	}, p.logs.String)
	var trigger string
	var scheduledFor time.Time
	err := e.st.Pool().QueryRow(context.Background(), `SELECT trigger, scheduled_for FROM entraprov.sync_runs
 WHERE job = 'isv@fabrikam' ORDER BY id LIMIT 1`).Scan(&trigger, &scheduledFor)
	if err != nil || trigger != "schedule" || scheduledFor.Before(added.Add(-time.Second)) {
		t.Fatalf("fabrikam's first run: trigger %q scheduled for %v (row inserted at %v), %v; want a scheduled occurrence after the INSERT",
			trigger, scheduledFor, added, err)
	}
	if n := len(e.sim.Users(isvTenants["fabrikam"])); n != 3 {
		t.Fatalf("fabrikam holds %d users after its first run; want its 3", n)
	}

	// Disabled: its job leaves the scheduler (a run in progress finishes).
	execSQL(t, e.st, `UPDATE isv.tenants SET enabled = false WHERE name = 'contoso'`)
	waitLog(t, p, `"removed":["isv@contoso"]`, 15*time.Second)
	// A run fired just before the removal may still record its row: wait
	// for one more fabrikam run, then no contoso run may start while
	// fabrikam runs twice more.
	f := e.runsOf(t, "isv@fabrikam", "succeeded")
	waitFor(t, 20*time.Second, "a fabrikam run after contoso's removal", func() bool {
		return e.runsOf(t, "isv@fabrikam", "succeeded") >= f+1
	}, p.logs.String)
	c := e.runsOf(t, "isv@contoso", "")
	f = e.runsOf(t, "isv@fabrikam", "succeeded")
	waitFor(t, 20*time.Second, "two more fabrikam runs", func() bool {
		return e.runsOf(t, "isv@fabrikam", "succeeded") >= f+2
	}, p.logs.String)
	if now := e.runsOf(t, "isv@contoso", ""); now != c {
		t.Fatalf("contoso ran %d more times after its row was disabled", now-c)
	}
	if code := p.term(t, 20*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM; log:\n%s", code, p.logs.String())
	}
	if n := e.runsOf(t, "isv@contoso", "running"); n != 0 {
		t.Errorf("%d contoso runs left running", n)
	}
	if n := len(e.sim.Users(isvTenants["northwind"])); n != 0 {
		t.Errorf("northwind holds %d users; the app may not write there", n)
	}
}

// The ISV's onboarding view: after each tenant's run (and a check), `worker
// tenants` shows which customers consented and which are broken and why; a
// tenant without consent shows its admin-consent URL, in the table and in
// --json, and its failure does not keep the others from succeeding; a
// tenant consented without a permission its source needs (group
// memberships) shows it missing, with the URL. A disabled tenant is listed
// and cannot be run by hand.
func TestWorkerTenantsShowsTheConsentURLOfATenantWithoutConsent(t *testing.T) {
	e := newTenantsEnv(t, "0 2 * * *", "1m")
	for _, n := range []string{"contoso", "fabrikam", "northwind", "litware"} {
		e.addTenant(t, n, true)
	}
	e.addTenant(t, "old", false)
	cfg := "--config=" + e.cfgPath

	for _, n := range []string{"contoso", "northwind", "fabrikam"} {
		out, errOut, err := runWorker(t, "sync", cfg, "--job", "isv@"+n)
		switch {
		case n == "northwind" && (exitCodeOf(err) != exitFail || !strings.Contains(errOut, e.consentURL(n))):
			t.Fatalf("sync isv@northwind: exit %d; want 1 naming the consent URL %s\n%s%s", exitCodeOf(err), e.consentURL(n), out, errOut)
		case n != "northwind" && err != nil:
			t.Fatalf("sync isv@%s: %v\n%s%s", n, err, out, errOut)
		}
	}
	for n, want := range map[string]int{"contoso": 3, "fabrikam": 3, "northwind": 0} {
		if got := len(e.sim.Users(isvTenants[n])); got != want {
			t.Errorf("%s holds %d users; want %d", n, got, want)
		}
	}
	if _, errOut, err := runWorker(t, "sync", cfg, "--job", "isv@old"); exitCodeOf(err) != exitUsage || !strings.Contains(errOut, "disabled in isv.tenants") {
		t.Errorf("sync of a disabled tenant: exit %d %s; want 2 saying it is disabled", exitCodeOf(err), errOut)
	}

	out, errOut, err := runWorker(t, "tenants", cfg)
	if err != nil {
		t.Fatalf("tenants: %v\n%s", err, errOut)
	}
	t.Logf("worker tenants:\n%s", out)
	lines := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			lines[f[0]] = l
		}
	}
	for job, state := range map[string]string{"isv@contoso": " ok ", "isv@fabrikam": " ok ", "isv@northwind": " no consent ", "isv@old": " disabled "} {
		if !strings.Contains(lines[job], state) {
			t.Errorf("tenants: %s's line %q; want state %q\n%s", job, lines[job], strings.TrimSpace(state), out)
		}
	}
	if !strings.Contains(lines["isv@contoso"], directory.PermUsers) || !strings.Contains(out, e.consentURL("northwind")) ||
		strings.Contains(out, e.consentURL("contoso")) {
		t.Errorf("tenants table: want contoso's roles and northwind's consent URL only:\n%s", out)
	}

	// worker check counts the template's tenants, checks the one asked
	// for, and records its sign-in too.
	rep, code, checkOut := runCheckJSON(t, cfg, "--job", "isv@northwind")
	if code != exitFail {
		t.Errorf("check of northwind: exit %d; want 1\n%s", code, checkOut)
	}
	if it := findCheck(rep, "tenants"); it.Status != checkOK || it.Job != "isv" ||
		!strings.Contains(it.Detail, "template over isv.tenants: 4 tenant(s) run, 1 disabled, 0 refused") {
		t.Errorf("tenants check = %+v", it)
	}
	if it := findCheck(rep, "token"); it.Job != "isv@northwind" || it.ConsentURL != e.consentURL("northwind") {
		t.Errorf("token check = %+v; want northwind's consent URL", it)
	}
	out, errOut, err = runWorker(t, "tenants", cfg, "--json")
	if err != nil {
		t.Fatalf("tenants --json: %v\n%s", err, errOut)
	}
	var list []tenantJSON
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("tenants --json is not JSON: %v\n%s", err, out)
	}
	by := map[string]tenantJSON{}
	for _, tn := range list {
		by[tn.Job] = tn
	}
	nw, co := by["isv@northwind"], by["isv@contoso"]
	if nw.State != tenantNoConsent || nw.SignIn == nil || nw.SignIn.SignedIn || nw.SignIn.ConsentURL != e.consentURL("northwind") ||
		nw.SignIn.AADSTS != 700016 || nw.SignIn.By != store.ConsentByCheck || nw.TenantID != isvTenants["northwind"] {
		t.Errorf("northwind = %+v %+v; want no consent, AADSTS700016 from check, with its consent URL", nw, nw.SignIn)
	}
	if co.State != tenantOK || co.SignIn == nil || !co.SignIn.SignedIn || co.SignIn.By != store.ConsentByRun ||
		!strings.Contains(strings.Join(co.SignIn.Granted, ","), directory.PermUsers) || len(co.SignIn.Missing) != 0 {
		t.Errorf("contoso = %+v %+v; want ok, signed in by its run with %s", co, co.SignIn, directory.PermUsers)
	}
	if old := by["isv@old"]; old.State != tenantDisabled || old.Enabled || old.SignIn != nil || old.LastRun != nil {
		t.Errorf("old = %+v; want disabled, never signed in, never run", old)
	}
	if r := co.LastRun; r == nil || r.Status != store.RunSucceeded {
		t.Errorf("contoso's last run = %+v; want its succeeded sync", r)
	}
	if r := nw.LastRun; r == nil || r.Status != store.RunFailed || !strings.Contains(r.Error, e.consentURL("northwind")) {
		t.Errorf("northwind's last run = %+v; want failed, naming its consent URL", r)
	}
	// Signed in, but short of a permission its source needs: the run that
	// adds a member is refused, and the tenant says what is missing.
	if _, _, err := runWorker(t, "sync", cfg, "--job", "isv@litware"); err != nil {
		t.Fatalf("sync isv@litware: %v", err)
	}
	if got := len(e.sim.Users(isvTenants["litware"])); got != 3 {
		t.Errorf("litware holds %d users; want 3", got)
	}
	out, _, err = runWorker(t, "tenants", cfg, "--json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatal(err)
	}
	for _, tn := range list {
		if tn.Job == "isv@litware" && (tn.State != tenantMissing || tn.SignIn == nil ||
			strings.Join(tn.SignIn.Missing, ",") != directory.PermGroups || tn.SignIn.ConsentURL != e.consentURL("litware") ||
			!strings.Contains(tn.SignIn.Advice, e.consentURL("litware"))) {
			t.Errorf("litware = %+v %+v; want missing roles [%s] with its consent URL", tn, tn.SignIn, directory.PermGroups)
		}
	}
	if len(list) != 5 {
		t.Errorf("%d tenants listed; want 5:\n%s", len(list), out)
	}
}

// SIGHUP reads the tenants again at once (the timer would wait an hour
// here): an inserted row is scheduled. A tenants relation that can no
// longer be read keeps the running jobs, and the commands that need it
// stop naming the template's key and the fix (exit 78).
func TestTenantsReloadOnSIGHUP(t *testing.T) {
	bin := buildWorker(t)
	e := newTenantsEnv(t, "0 2 * * *", "1h")
	e.addTenant(t, "contoso", true)
	p := startWorkerProc(t, bin, e.cfgPath)
	waitLog(t, p, `"msg":"worker ready"`, 30*time.Second)

	e.addTenant(t, "fabrikam", true)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, p, `"added":["isv@fabrikam"]`, 15*time.Second)

	execSQL(t, e.st, `DROP TABLE isv.tenants`)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, p, "reload refused: the tenants of a template job cannot be read; keeping the running jobs", 15*time.Second)
	if strings.Contains(p.logs.String(), `"removed":["isv@contoso"`) {
		t.Errorf("a tenants relation that cannot be read removed the running jobs:\n%s", p.logs.String())
	}
	if code := p.term(t, 20*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM; log:\n%s", code, p.logs.String())
	}

	_, errOut, err := runWorker(t, "tenants", "--config="+e.cfgPath)
	if exitCodeOf(err) != exitConfig || !strings.Contains(errOut, "jobs[0].tenants_from") || !strings.Contains(errOut, "isv.tenants does not exist") ||
		!strings.Contains(errOut, "CREATE TABLE isv.tenants") {
		t.Errorf("tenants without its relation: exit %d\n%s; want 78 naming jobs[0].tenants_from and how to create it", exitCodeOf(err), errOut)
	}
}
