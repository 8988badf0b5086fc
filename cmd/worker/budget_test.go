package main

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/entraprov/entraprov/internal/graphsim"
	"github.com/entraprov/entraprov/internal/store"
	"github.com/entraprov/entraprov/internal/testdb"
)

// vanishingSQL is a source view over a VOLATILE function that returns every
// desired user to the reads before the plan and none after: an HR view over
// a function, or a foreign table over an export being rewritten. Two reads
// see the rows: the one aggregate read of what the job owns and needs
// (which schema-7 profile columns any row fills, a SELECT * view having
// them all, and whether it manages groups, which the tenant's recorded
// consent is judged by) and the planning read; the apply pass's read finds
// the source empty. The memory of the calls must outlive each read's
// transaction and be seen by other sessions, and the worker reads the
// source in read-only transactions, where nextval() and UPDATE are
// refused: it is session advisory locks that the calls take (on the
// worker's pooled connections, released when the worker exits), one key
// per call counted. No snapshot covers them. The count is exact: with one
// read more before the plan the apply pass would still see every row, with
// one fewer the planning read would see none; either way no user would be
// disabled and the test would fail.
const vanishingSQL = `
CREATE FUNCTION public.vanishing_users() RETURNS SETOF entraprov.desired_users
LANGUAGE plpgsql VOLATILE AS $$
DECLARE calls int;
BEGIN
    SELECT count(*) INTO calls FROM pg_locks
     WHERE locktype = 'advisory' AND classid = 4242 AND objid IN (1, 2) AND objsubid = 2
       AND database = (SELECT oid FROM pg_database WHERE datname = current_database());
    IF calls >= 2 THEN
        RETURN; -- after the planning read: the source is empty
    END IF;
    PERFORM pg_advisory_lock(4242, calls + 1);
    RETURN QUERY SELECT * FROM entraprov.desired_users;
END $$;
CREATE VIEW public.vanishing AS SELECT * FROM public.vanishing_users();`

// TestVanishingSourceIsBlockedByTheBudget: 100 managed users, default
// change budget, a source that empties between the budget's read and the
// apply pass. The run disables at most the bound (10 % of 100) and ends
// blocked, exit 1, naming the kind and the numbers; before the budget was
// enforced in the apply pass it disabled all 100 and succeeded.
func TestVanishingSourceIsBlockedByTheBudget(t *testing.T) {
	dbURL := testdb.NewURL(t)
	st := openStore(t, dbURL)
	seedDesired(t, st, 100)
	jobYAML, sim := simJob(t, graphsim.Options{}, "hr", "0 2 * * *")
	dir := t.TempDir()
	cfg := func(name, source string) string {
		return writeFile(t, filepath.Join(dir, name), configYAML(dbURL, jobYAML+"    source: "+source+"\n"))
	}
	table, view := cfg("table.yaml", "entraprov.desired_users"), cfg("view.yaml", "public.vanishing")
	if out, errOut, err := runWorker(t, "sync", "--job", "hr", "--config", table, "--database-url", dbURL); err != nil {
		t.Fatalf("first sync: %v\n%s\n%s", err, out, errOut)
	}
	if _, err := st.Pool().Exec(context.Background(), vanishingSQL); err != nil {
		t.Fatal(err)
	}
	tenant := regexp.MustCompile(`tenant_id: (\S+)`).FindStringSubmatch(jobYAML)[1]

	sim.ResetCounters()
	out, errOut, err := runWorker(t, "sync", "--job", "hr", "--config", view, "--database-url", dbURL)
	disabled := 0
	for _, u := range sim.Users(tenant) {
		if !u.AccountEnabled {
			disabled++
		}
	}
	t.Logf("sync on the vanishing source: exit %d, %d disabled\n%s", exitCodeOf(err), disabled, out)
	if exitCodeOf(err) != exitFail || disabled != 10 {
		t.Fatalf("exit %d, %d users disabled; want exit 1 and at most the bound (10)\n%s\n%s", exitCodeOf(err), disabled, out, errOut)
	}
	if !regexp.MustCompile(`(?m)^status +blocked$`).MatchString(out) ||
		!strings.Contains(out, "disables: 10 sent (the bound for 100 managed users is 10, jobs[hr].change_budget.disables), 90 more withheld") {
		t.Fatalf("output does not say the run was blocked, the kind and the numbers:\n%s", out)
	}
}

// TestApproveThroughTheWorker: a blocked run is approved by id; a plan
// that grew since is refused, listing what changed; --allow-deletes still
// works and is logged and shown on the run.
func TestApproveThroughTheWorker(t *testing.T) {
	st, _, worker := hrWorker(t, 30, "")
	leave := func(where string) {
		t.Helper()
		testdb.Exec(t, st, `DELETE FROM entraprov.desired_users WHERE `+where)
	}
	runID := func(out string) int64 {
		t.Helper()
		m := regexp.MustCompile(`(?m)^run +(\d+)$`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no run id in:\n%s", out)
		}
		id, _ := strconv.ParseInt(m[1], 10, 64)
		return id
	}
	if _, errOut, err := worker("sync", "--job", "hr"); err != nil {
		t.Fatalf("first sync: %v\n%s", err, errOut)
	}

	// 11 leavers of 30: over the default bound (10 % but at least 10 users).
	leave(`external_id <= 'E00011'`)
	out, _, err := worker("sync", "--job", "hr")
	blocked := runID(out)
	if exitCodeOf(err) != exitFail || !strings.Contains(out, "11 disables of 30 managed users (36.7%) exceed jobs[hr].change_budget.disables") ||
		!strings.Contains(out, fmt.Sprintf("worker sync --job hr --approve %d", blocked)) {
		t.Fatalf("blocked sync: exit %d\n%s", exitCodeOf(err), out)
	}

	// The plan grew: refused, naming the users added.
	leave(`external_id IN ('E00012', 'E00013')`)
	out, _, err = worker("sync", "--job", "hr", "--approve", strconv.FormatInt(blocked, 10))
	refused := runID(out)
	if exitCodeOf(err) != exitFail || !strings.Contains(out, fmt.Sprintf("approval of run %d refused: the plan changed since it was reviewed: 2 disables (E00012, E00013)", blocked)) {
		t.Fatalf("approval of a grown plan: exit %d\n%s", exitCodeOf(err), out)
	}

	// The refused run's plan, reviewed and approved as it is: applied.
	out, errOut, err := worker("sync", "--job", "hr", "--approve", strconv.FormatInt(refused, 10))
	if err != nil || !strings.Contains(out, "disable=13") ||
		!strings.Contains(out, fmt.Sprintf("applied the reviewed plan of run %d (--approve)", refused)) {
		t.Fatalf("approved sync: %v\n%s\n%s", err, out, errOut)
	}
	approved := runID(out)

	// Only a blocked run of the job: a usage error, no run recorded.
	_, _, err = worker("sync", "--job", "hr", "--approve", strconv.FormatInt(approved, 10))
	if exitCodeOf(err) != exitUsage || !strings.Contains(err.Error(), "only a blocked run has a plan to approve") {
		t.Fatalf("approving a succeeded run: exit %d (%v)", exitCodeOf(err), err)
	}

	// --allow-deletes: kept for scripts, loud, and on the record.
	leave(`external_id <= 'E00024'`)
	out, errOut, err = worker("sync", "--job", "hr", "--allow-deletes")
	if err != nil || !strings.Contains(out, "disable=11") || !strings.Contains(errOut, `"level":"WARN","msg":"--allow-deletes`) {
		t.Fatalf("sync --allow-deletes: %v\n%s\n%s", err, out, errOut)
	}
	shown, _, err := worker("show", strconv.FormatInt(runID(out), 10))
	if err != nil || !strings.Contains(shown, "allow_deletes=1") || !strings.Contains(shown, "--allow-deletes: disable and delete bounds lifted without a reviewed plan") {
		t.Fatalf("worker show of the --allow-deletes run: %v\n%s", err, shown)
	}
	runs, err := st.ListRuns(context.Background(), "hr", 10)
	if err != nil {
		t.Fatal(err)
	}
	if runs[0].Counts.AllowDeletes != 1 || runs[1].Counts.ApprovedRun != int(refused) || runs[1].Status != store.RunSucceeded {
		t.Fatalf("history does not record the approvals: %+v %+v", runs[0].Counts, runs[1].Counts)
	}
}

// TestConfigValidate_changeBudget: two zeros are refused naming the key and
// the fix; off: true is accepted; a file written for deletion_threshold
// still loads, its bound applying to disables and deletes.
func TestConfigValidate_changeBudget(t *testing.T) {
	t.Setenv("ENTRAPROV_CONFIG", "")
	t.Setenv("DATABASE_URL", "")
	t.Setenv("ENTRAPROV_DATABASE_URL", "")
	dir := t.TempDir()
	job := func(extra string) string {
		return writeFile(t, filepath.Join(dir, strconv.Itoa(len(extra))+".yaml"), `jobs:
  - name: a
    tenant_id: a.onmicrosoft.com
    auth: {method: secret, client_id: 11111111-2222-3333-4444-555555555555, client_secret: {env: TEST_GRAPH_SECRET}}
    schedule: "@daily"
    allowed_domains: [a.com]
`+extra)
	}
	_, stderr, err := runWorker(t, "config", "validate", "--config", job("    change_budget: {group_removals: {max_count: 0, max_percent: 0}}\n"))
	if exitCodeOf(err) != exitConfig || !strings.Contains(stderr, "jobs[0].change_budget.group_removals: max_count and max_percent are both 0") ||
		!strings.Contains(stderr, "off: true") {
		t.Fatalf("two zeros: exit %d\n%s", exitCodeOf(err), stderr)
	}
	if _, stderr, err := runWorker(t, "config", "validate", "--config", job("    change_budget: {group_removals: {off: true}}\n")); err != nil {
		t.Fatalf("off: true refused: %v\n%s", err, stderr)
	}
	old := job("    deletion_threshold:\n      max_count: 25\n      max_percent: 5\n")
	if _, stderr, err := runWorker(t, "config", "validate", "--config", old); err != nil {
		t.Fatalf("deletion_threshold refused: %v\n%s", err, stderr)
	}
	shown, stderr, err := runWorker(t, "config", "show", "--config", old)
	if err != nil || !regexp.MustCompile(`disables:\s+max_count: 25\s+max_percent: 5`).MatchString(shown) ||
		!regexp.MustCompile(`deletes:\s+max_count: 25\s+max_percent: 5`).MatchString(shown) {
		t.Fatalf("config show of a deletion_threshold file: %v\n%s\n%s", err, shown, stderr)
	}
}

// TestBrokenJoinIsBlocked: a join that loses every user's groups, or their
// attributes, would strip 100 users of their groups (licences with them)
// or clear their attributes; each is blocked by its bound, nothing written.
func TestBrokenJoinIsBlocked(t *testing.T) {
	st, sim, worker := hrWorker(t, 100, "")
	exec := func(sql string, args ...any) {
		t.Helper()
		testdb.Exec(t, st, sql, args...)
	}
	group := sim.Tenants()[0].Groups[0]
	exec(`UPDATE entraprov.desired_users SET groups = ARRAY[$1], job_title = 'Engineer'`, group)
	if _, errOut, err := worker("sync", "--job", "hr"); err != nil {
		t.Fatalf("first sync: %v\n%s", err, errOut)
	}
	for _, tc := range []struct{ name, sql, want string }{
		{"groups emptied", `UPDATE entraprov.desired_users SET groups = '{}'`,
			"100 group removals of 100 managed users (100.0%) exceed jobs[hr].change_budget.group_removals"},
		{"attributes nulled", `UPDATE entraprov.desired_users SET job_title = NULL`,
			"100 attribute clears of 100 managed users (100.0%) exceed jobs[hr].change_budget.attribute_clears"},
	} {
		exec(`UPDATE entraprov.desired_users SET groups = ARRAY[$1], job_title = 'Engineer'`, group)
		exec(tc.sql)
		sim.ResetCounters()
		out, _, err := worker("sync", "--job", "hr")
		if exitCodeOf(err) != exitFail || !strings.Contains(out, tc.want) || sim.Counters().Writes != 0 {
			t.Fatalf("%s: exit %d, %d writes; want exit 1, no write and %q\n%s", tc.name, exitCodeOf(err), sim.Counters().Writes, tc.want, out)
		}
	}
}
