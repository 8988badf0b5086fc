package main

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/entraprov/entraprov/internal/graphsim"
	"github.com/entraprov/entraprov/internal/store"
	"github.com/entraprov/entraprov/internal/testdb"
)

// contractEnv is a graphsim tenant, a migrated database with 5 desired
// users, and a job whose source is the view public.people.
type contractEnv struct {
	dbURL, cfg string
	st         *store.Store
	sim        *graphsim.Sim
}

func newContractEnv(t *testing.T, extraJobYAML string) contractEnv {
	t.Helper()
	dbURL := testdb.NewURL(t)
	st := openStore(t, dbURL)
	seedDesired(t, st, 5)
	execSQL(t, st, `CREATE TABLE public.extra (LIKE entraprov.desired_users INCLUDING DEFAULTS)`,
		`CREATE VIEW public.people AS SELECT * FROM entraprov.desired_users UNION ALL SELECT * FROM public.extra`)
	jobYAML, sim := simJob(t, graphsim.Options{}, "hr", "0 2 * * *")
	cfg := writeConfig(t, dbURL, jobYAML+"    source: public.people\n"+extraJobYAML)
	return contractEnv{dbURL: dbURL, cfg: cfg, st: st, sim: sim}
}

func (e contractEnv) worker(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	// DATABASE_URL (the test server's base database) would override the file.
	return runWorker(t, append(args, "--config", e.cfg, "--database-url", e.dbURL)...)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func execSQL(t *testing.T, st *store.Store, stmts ...string) {
	t.Helper()
	for _, q := range stmts {
		testdb.Exec(t, st, q)
	}
}

// failedOps returns external_id → messages of the failed operations of the
// job's last run.
func failedOps(t *testing.T, st *store.Store) map[string][]string {
	t.Helper()
	rows, err := st.Pool().Query(context.Background(), `
SELECT external_id, message FROM entraprov.sync_operations
 WHERE run_id = (SELECT max(id) FROM entraprov.sync_runs) AND status = 'failed' ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string][]string{}
	for rows.Next() {
		var id, msg string
		if err := rows.Scan(&id, &msg); err != nil {
			t.Fatal(err)
		}
		out[id] = append(out[id], msg)
	}
	return out
}

func linkOf(t *testing.T, st *store.Store, externalID string) (objectID string, state store.LinkState) {
	t.Helper()
	err := st.Pool().QueryRow(context.Background(), `SELECT coalesce(object_id, ''), state FROM entraprov.directory_links
		WHERE job = 'hr' AND external_id = $1`, externalID).Scan(&objectID, &state)
	if err != nil {
		return "", ""
	}
	return objectID, state
}

// A view whose UNION ALL repeats an external_id: every row of that id fails
// with the count, nothing reaches Graph for it (a linked user is neither
// renamed nor disabled, a new one is not created), the other users are
// synced, and `worker check` fails naming the ids and counts.
func TestDuplicateExternalIDFailsOnlyThatUser(t *testing.T) {
	env := newContractEnv(t, "")
	if out, errOut, err := env.worker(t, "sync", "--job", "hr"); err != nil || env.sim.Counters().Writes != 5 {
		t.Fatalf("first sync (writes %d): %v\n%s\n%s", env.sim.Counters().Writes, err, out, errOut)
	}
	e2, _ := linkOf(t, env.st, "E00002")
	before, _ := env.sim.User(graphsim.DefaultTenantID, e2)

	// E00002 twice (the second row renames and disables), E00006 new and
	// twice; E00003 changes and E00007 is new: those two go through.
	execSQL(t, env.st,
		`INSERT INTO public.extra (external_id, user_principal_name, display_name, account_enabled)
		 VALUES ('E00002', 'other2@`+graphsim.DefaultDomain+`', 'Other Two', false),
		        ('E00006', 'twin6b@`+graphsim.DefaultDomain+`', 'Twin Six B', true)`,
		`INSERT INTO entraprov.desired_users (external_id, user_principal_name, display_name) VALUES
		 ('E00006', 'twin6a@`+graphsim.DefaultDomain+`', 'Twin Six A'),
		 ('E00007', 'user7@`+graphsim.DefaultDomain+`', 'User 7')`,
		`UPDATE entraprov.desired_users SET display_name = 'User Three' WHERE external_id = 'E00003'`)
	env.sim.ResetCounters()

	out, errOut, err := env.worker(t, "sync", "--job", "hr")
	if err != nil || !strings.Contains(out, "partial") {
		t.Fatalf("sync: %v\n%s\n%s", err, out, errOut)
	}
	failed := failedOps(t, env.st)
	for _, id := range []string{"E00002", "E00006"} {
		want := "external_id " + id + " appears 2 times in public.people"
		if msgs := failed[id]; len(msgs) != 2 || !strings.Contains(msgs[0], want) || !strings.Contains(msgs[1], want) {
			t.Errorf("%s: failed operations %q; want both rows failing with %q", id, msgs, want)
		}
	}
	if len(failed) != 2 {
		t.Errorf("failed operations: %v; want only E00002 and E00006", failed)
	}

	c := env.sim.Counters()
	if c.Writes != 2 || len(c.Patches) != 1 || c.Created[strings.ToLower("user7@"+graphsim.DefaultDomain)] != 1 {
		t.Errorf("Graph writes %d, patches %v, creates %v; want the E00003 rename and the E00007 create only", c.Writes, c.Patches, c.Created)
	}
	if p := c.Patches[e2]; p != nil {
		t.Errorf("E00002 (duplicated) was patched: %v", p)
	}
	for _, upn := range []string{"twin6a@", "twin6b@"} {
		if c.Created[upn+strings.ToLower(graphsim.DefaultDomain)] != 0 {
			t.Errorf("E00006 (duplicated) was created as %s", upn)
		}
	}
	after, _ := env.sim.User(graphsim.DefaultTenantID, e2)
	if !after.AccountEnabled || after.DisplayName != before.DisplayName || after.UserPrincipalName != before.UserPrincipalName {
		t.Errorf("E00002 in the directory: %+v; want it untouched (%+v)", after, before)
	}
	if obj, state := linkOf(t, env.st, "E00002"); obj != e2 || state != store.LinkActive {
		t.Errorf("E00002 link = %s/%s; want %s/active (not a leaver)", obj, state, e2)
	}
	if obj, state := linkOf(t, env.st, "E00006"); state != "" {
		t.Errorf("E00006 has a link %s/%s; nothing may be written for it", obj, state)
	}

	// A second run does the same: no flip-flop between the two rows.
	env.sim.ResetCounters()
	if _, _, err := env.worker(t, "sync", "--job", "hr"); err != nil || env.sim.Counters().Writes != 0 {
		t.Fatalf("second sync: %v, %d writes; want none", err, env.sim.Counters().Writes)
	}

	rep, code, all := runCheckJSON(t, "--config", env.cfg, "--database-url", env.dbURL, "--job", "hr")
	ids := findCheck(rep, "source_ids")
	if code == exitOK || rep.OK || ids.Status != checkFail ||
		!strings.Contains(ids.Detail, "2 external_id(s) appear more than once in public.people (4 rows): E00002 ×2, E00006 ×2") {
		t.Fatalf("check: exit %d, source_ids %+v\n%s", code, ids, all)
	}

	// Fixed source: check passes that line and the users converge.
	execSQL(t, env.st, `DELETE FROM public.extra`)
	rep, _, all = runCheckJSON(t, "--config", env.cfg, "--database-url", env.dbURL, "--job", "hr")
	if ids := findCheck(rep, "source_ids"); ids.Status != checkOK {
		t.Fatalf("check after the fix: source_ids %+v\n%s", ids, all)
	}
	if out, errOut, err := env.worker(t, "sync", "--job", "hr"); err != nil || !strings.Contains(out, "succeeded") {
		t.Fatalf("sync after the fix: %v\n%s\n%s", err, out, errOut)
	}
	if _, state := linkOf(t, env.st, "E00006"); state != store.LinkActive {
		t.Errorf("E00006 after the fix: link state %q; want active", state)
	}
}

// jobs[].allowed_groups: a row naming another group fails that user alone,
// with the group, the key and the fix; listed groups are added; a
// membership outside the list is never removed; check says so.
func TestAllowedGroups(t *testing.T) {
	const (
		grpA = "0a0a0a0a-0000-4000-8000-00000000000a"
		grpB = "0b0b0b0b-0000-4000-8000-00000000000b"
	)
	env := newContractEnv(t, "")
	env.sim.AddGroup(graphsim.DefaultTenantID, grpA, "Staff")
	env.sim.AddGroup(graphsim.DefaultTenantID, grpB, "Payroll")

	// Without the key, any group of the source is honoured, and check warns.
	execSQL(t, env.st, `UPDATE entraprov.desired_users SET groups = ARRAY['`+grpB+`'] WHERE external_id = 'E00003'`)
	if out, errOut, err := env.worker(t, "sync", "--job", "hr"); err != nil || !strings.Contains(out, "succeeded") {
		t.Fatalf("sync without allowed_groups: %v\n%s\n%s", err, out, errOut)
	}
	e3, _ := linkOf(t, env.st, "E00003")
	if m := env.sim.GroupMembers(graphsim.DefaultTenantID, grpB); !slices.Contains(m, e3) {
		t.Fatalf("without allowed_groups, E00003 was not added to %s: %v", grpB, m)
	}
	rep, _, all := runCheckJSON(t, "--config", env.cfg, "--database-url", env.dbURL, "--job", "hr")
	if g := findCheck(rep, "groups"); g.Status != checkWarn || !strings.Contains(g.Detail, "any group id in the source is honoured") {
		t.Fatalf("check without allowed_groups: groups %+v\n%s", g, all)
	}

	// Only grpA from now on. E00001 joins grpA; E00002 asks for both and
	// fails whole (not even its rename is sent); E00003 leaves grpB in the
	// source, but grpB is no longer the job's: its membership stays.
	writeFile(t, env.cfg, strings.Replace(readFile(t, env.cfg), "    source: public.people\n",
		"    source: public.people\n    allowed_groups: ["+strings.ToUpper(grpA)+"]\n", 1))
	execSQL(t, env.st,
		`UPDATE entraprov.desired_users SET groups = ARRAY['`+grpA+`'] WHERE external_id = 'E00001'`,
		`UPDATE entraprov.desired_users SET groups = ARRAY['`+grpA+`', '`+grpB+`'], display_name = 'Renamed Two' WHERE external_id = 'E00002'`,
		`UPDATE entraprov.desired_users SET groups = '{}' WHERE external_id = 'E00003'`)
	env.sim.ResetCounters()
	out, errOut, err := env.worker(t, "sync", "--job", "hr")
	if err != nil || !strings.Contains(out, "partial") {
		t.Fatalf("sync with allowed_groups: %v\n%s\n%s", err, out, errOut)
	}
	failed := failedOps(t, env.st)
	want := "groups: " + grpB + " is not in allowed_groups of job hr; add it to jobs[].allowed_groups if this job should manage that group, or remove it from the row"
	if len(failed) != 1 || len(failed["E00002"]) != 1 || !strings.Contains(failed["E00002"][0], want) {
		t.Fatalf("failed operations %v; want E00002 alone with %q", failed, want)
	}
	e1, _ := linkOf(t, env.st, "E00001")
	e2, _ := linkOf(t, env.st, "E00002")
	if m := env.sim.GroupMembers(graphsim.DefaultTenantID, grpA); !slices.Equal(m, []string{e1}) {
		t.Errorf("%s members = %v; want E00001 (%s) only", grpA, m, e1)
	}
	if m := env.sim.GroupMembers(graphsim.DefaultTenantID, grpB); !slices.Equal(m, []string{e3}) {
		t.Errorf("%s members = %v; want E00003 kept (%s): a group outside allowed_groups is never removed from", grpB, m, e3)
	}
	if c := env.sim.Counters(); c.Writes != 1 || c.Patches[e2] != nil {
		t.Errorf("Graph writes %d (patches %v); want the one grpA add", c.Writes, c.Patches)
	}
	rep, _, all = runCheckJSON(t, "--config", env.cfg, "--database-url", env.dbURL, "--job", "hr")
	if g := findCheck(rep, "groups"); g.Status != checkWarn || !strings.Contains(g.Detail, "1 source row(s) name a group outside allowed_groups") {
		t.Fatalf("check with allowed_groups: groups %+v\n%s", g, all)
	}

	// A bad list stops at validation, naming the key.
	writeFile(t, env.cfg, strings.Replace(readFile(t, env.cfg), strings.ToUpper(grpA), "Staff", 1))
	out, errOut, err = env.worker(t, "config", "validate")
	if exitCodeOf(err) != exitConfig || !strings.Contains(out+errOut, `jobs[0].allowed_groups[0]: "Staff" is not a group object id`) {
		t.Fatalf("config validate: exit %d\n%s%s", exitCodeOf(err), out, errOut)
	}
}
