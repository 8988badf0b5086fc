package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/entraprov/entraprov/internal/graphsim"
	"github.com/entraprov/entraprov/internal/testdb"
)

// humanConfig is configYAML with log.format left at auto, as an operator
// writes it: what people see when they run a command by hand.
func humanConfig(t *testing.T, dbURL, jobs string) string {
	t.Helper()
	text := strings.Replace(configYAML(dbURL, jobs, metricsOff), "format: json", "format: auto", 1)
	return writeFile(t, filepath.Join(t.TempDir(), "worker.yaml"), text)
}

// Every command's exit code at its edges, as the README's "Exit codes"
// documents them: 0 ok, 1 failure, 2 usage (unknown command, wrong
// arguments, a missing flag, a job name that names no job), 78 config.
func TestCLIExitCodes(t *testing.T) {
	dbURL := testdb.NewURL(t)
	st := openStore(t, dbURL)
	seedDesired(t, st, 3)
	jobYAML, _ := simJob(t, graphsim.Options{}, "hr", "0 2 * * *")
	one := humanConfig(t, dbURL, jobYAML)
	two := humanConfig(t, dbURL, jobYAML+strings.Replace(jobYAML, "name: hr", "name: payroll", 1)+"    source: entraprov.payroll_users\n")
	db := "--database-url=" + dbURL
	typo := writeFile(t, filepath.Join(t.TempDir(), "typo.yaml"),
		strings.Replace(configYAML(dbURL, jobYAML), "tenant_id:", "tennant_id:", 1))

	runCases(t, []cliCase{
		{name: "unknown_command", args: []string{"syncc"}, code: exitUsage,
			contains: []string{`unknown command "syncc"`, "sync"}},
		{name: "show_without_run", args: []string{"show", db}, code: exitUsage,
			contains: []string{"accepts 1 arg", "worker show --help"}},
		{name: "unknown_subcommand", args: []string{"migrate", "down", db}, code: exitUsage,
			contains: []string{`unknown command "down" for "worker migrate"`}},
		{name: "unknown_quarantine_subcommand", args: []string{"quarantine", "nosuch", db}, code: exitUsage},
		{name: "group_alone_prints_help", args: []string{"migrate"}, code: exitOK, contains: []string{"Available Commands"}},
		{name: "missing_required_flag", args: []string{"history", "prune", db}, code: exitUsage,
			contains: []string{`required flag(s) "older-than" not set`}},
		{name: "bad_flag", args: []string{"history", "--limit", "many", db}, code: exitUsage},
		{name: "version_flag", args: []string{"--version"}, code: exitOK, contains: []string{"entraprov worker " + version}},
		{name: "version_command", args: []string{"version"}, code: exitOK, contains: []string{"entraprov worker " + version}},

		// --job: optional with one job, else required; never a guess.
		{name: "plan_one_job_without_job", args: []string{"plan", "--config", one, db}, code: exitOK,
			contains: []string{"plan (manual)", "create=3"}},
		{name: "sync_one_job_without_job", args: []string{"sync", "--config", one, db}, code: exitOK,
			contains: []string{"succeeded"}},
		{name: "plan_two_jobs_without_job", args: []string{"plan", "--config", two, db}, code: exitUsage,
			contains: []string{"--job is required", "hr, payroll"}},
		{name: "audit_two_jobs_without_job", args: []string{"audit", "--config", two, db}, code: exitUsage,
			contains: []string{"--job is required", "hr, payroll"}},
		{name: "plan_unknown_job", args: []string{"plan", "--config", two, "--job", "nosuch", db}, code: exitUsage,
			contains: []string{`no job "nosuch"`, "hr, payroll"}},
		{name: "sync_unknown_job", args: []string{"sync", "--config", two, "--job", "nosuch", db}, code: exitUsage,
			contains: []string{`no job "nosuch"`, "hr, payroll"}},
		{name: "check_unknown_job", args: []string{"check", "--config", two, "--job", "nosuch", db}, code: exitUsage,
			contains: []string{`no job "nosuch"`, "hr, payroll"}},
		{name: "history_unknown_job_from_config", args: []string{"history", "--config", two, "--job", "nosuch", db}, code: exitUsage,
			contains: []string{`no job "nosuch"`, "hr, payroll"}, absent: []string{"no runs yet"}},
		{name: "history_unknown_job_from_database", args: []string{"history", "--job", "nosuch", db}, code: exitUsage,
			contains: []string{`no job "nosuch" in the database`, "hr"}, absent: []string{"no runs yet"}},
		{name: "history_known_job", args: []string{"history", "--job", "hr", db}, code: exitOK, contains: []string{"plan", "apply"}},
		{name: "stuck_unknown_job", args: []string{"show", "--stuck", "--job", "nosuch", db}, code: exitUsage,
			contains: []string{`no job "nosuch"`}},
		{name: "release_unknown_job", args: []string{"quarantine", "release", "nosuch", db}, code: exitUsage,
			contains: []string{`no job "nosuch"`, "hr"}},
		{name: "release_known_job", args: []string{"quarantine", "release", "hr", db}, code: exitOK,
			contains: []string{"job hr was not quarantined"}},
		{name: "run_not_found_is_failure", args: []string{"show", "999999", db}, code: exitFail, contains: []string{"not found"}},

		// history prune: the retention floor, and never unasked.
		{name: "prune_under_floor", args: []string{"history", "prune", "--older-than", "1h", "--yes", db}, code: exitUsage,
			contains: []string{"shorter than 1d"}},
		{name: "prune_unconfirmed", args: []string{"history", "prune", "--older-than", "400d", db}, code: exitUsage,
			contains: []string{"pass --yes"}},
		{name: "prune_confirmed", args: []string{"history", "prune", "--older-than", "400d", "--yes", db}, code: exitOK,
			contains: []string{"pruned 0 runs"}},

		// Configuration problems: 78, each reported once.
		{name: "typo_reported_once", args: []string{"config", "validate", "--config", typo}, code: exitConfig,
			contains: []string{"1 problem:", "jobs[0].tennant_id: unknown key; did you mean tenant_id?"},
			absent:   []string{"jobs[0].tenant_id:"}},
		{name: "no_config", args: []string{"plan"}, code: exitConfig, contains: []string{"no configuration file"}},
	})

	var n int
	if err := st.Pool().QueryRow(context.Background(),
		`SELECT count(*) FROM entraprov.job_state WHERE job = 'nosuch'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("job_state rows for an unknown job: %d (%v); want 0", n, err)
	}

	// Last: the variable outlives the cases above.
	t.Setenv("ENTRAPROV_DATABASE_URL", "")
	t.Setenv("DATABASE_URL", "mysql://app@db.example.com/entraprov")
	runCases(t, []cliCase{
		{name: "env_url_error_names_the_variable", args: []string{"config", "validate", "--config", typo}, code: exitConfig,
			contains: []string{"$DATABASE_URL: unsupported scheme"}, absent: []string{"database.url: unsupported", "jobs[0].tenant_id:"}},
	})
}

// Through the built binary: the process exit status main gives, not only
// the error a command returns.
func TestWorkerBinaryExitStatus(t *testing.T) {
	bin := buildWorker(t)
	version, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"--version"}, exitOK, string(version)},
		{[]string{"syncc"}, exitUsage, ""},
		{[]string{"show"}, exitUsage, ""},
		{[]string{"migrate", "down"}, exitUsage, ""},
		{[]string{"plan", "--config", "/nonexistent/worker.yaml"}, exitConfig, ""},
	} {
		cmd := exec.Command(bin, tc.args...)
		cmd.Env = []string{"PATH=/usr/bin:/bin"}
		out, err := cmd.Output()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.code || (tc.out != "" && string(out) != tc.out) {
			t.Errorf("worker %s: exit %d, stdout %q; want %d, %q", strings.Join(tc.args, " "), code, out, tc.code, tc.out)
		}
	}
}

// Human output: the table on stdout, text logs on stderr (no JSON, no Go
// maps) when piped; check prints its checklist piped too, JSON only with
// --json.
func TestHumanOutputWhenPiped(t *testing.T) {
	dbURL := testdb.NewURL(t)
	st := openStore(t, dbURL)
	seedDesired(t, st, 3)
	jobYAML, _ := simJob(t, graphsim.Options{}, "hr", "0 2 * * *")
	cfg := humanConfig(t, dbURL, jobYAML)

	out, errOut, err := runWorker(t, "plan", "--config", cfg, "--database-url", dbURL)
	if err != nil {
		t.Fatalf("plan: %v\n%s", err, errOut)
	}
	t.Logf("worker plan | cat:\n%s\nstderr:\n%s", out, errOut)
	if !strings.Contains(out, "plan (manual)") || strings.Contains(out, "level=") || strings.Contains(out, `"level"`) {
		t.Errorf("plan stdout is not the table alone:\n%s", out)
	}
	for _, bad := range []string{`{"time"`, "map["} {
		if strings.Contains(errOut, bad) {
			t.Errorf("plan stderr has %q:\n%s", bad, errOut)
		}
	}

	out, _, _ = runWorker(t, "check", "--config", cfg, "--database-url", dbURL)
	if strings.HasPrefix(strings.TrimSpace(out), "{") || !strings.Contains(out, " ok, ") {
		t.Errorf("check piped is not the checklist:\n%s", out)
	}
	out, _, _ = runWorker(t, "check", "--json", "--config", cfg, "--database-url", dbURL)
	if !strings.HasPrefix(strings.TrimSpace(out), "{") {
		t.Errorf("check --json is not JSON:\n%s", out)
	}
}

// show and history: ERROR holds failures only, whole and last on the
// line; notes on other operations are in NOTE.
func TestShowErrorsWholeAndNotesApart(t *testing.T) {
	dbURL := testdb.NewURL(t)
	st := openStore(t, dbURL)
	longMsg := "Property 'mobilePhone' has an invalid value: the number +1 555 0100 200 300 is longer than Graph accepts for this property of a user, which is what this sentence keeps going on about"
	summary := "1 of 2 operations failed: " + longMsg
	var runID int64
	err := st.Pool().QueryRow(context.Background(), `
WITH r AS (
    INSERT INTO entraprov.sync_runs (job, trigger, mode, status, started_at, finished_at, error_summary)
    VALUES ('hr', 'manual', 'apply', 'partial', now(), now(), $1) RETURNING id
), o AS (
    INSERT INTO entraprov.sync_operations (run_id, seq, external_id, action, status, http_status, error_code, message)
    SELECT id, 1, 'E1', 'enable', 'succeeded', 200, '', 'the user is wanted again (rehire)' FROM r
    UNION ALL
    SELECT id, 2, 'E2', 'update', 'failed', 400, 'Request_BadRequest', $2 FROM r
), c AS (
    INSERT INTO entraprov.sync_operations (run_id, seq, external_id, action, status, http_status, changes)
    SELECT id, 3, 'E3', 'update', 'succeeded', 204,
           '{"jobTitle": {"from": "Clerk", "to": "Lead"}, "mobilePhone": {"from": "+1 555 0100", "to": null}, "passwordProfile": "hunter2-never-shown"}'::jsonb FROM r
)
SELECT id FROM r`, summary, longMsg).Scan(&runID)
	if err != nil {
		t.Fatal(err)
	}
	db := "--database-url=" + dbURL
	out, errOut, err := runWorker(t, "show", fmt.Sprint(runID), db)
	if err != nil {
		t.Fatalf("show: %v\n%s", err, errOut)
	}
	t.Logf("worker show %d:\n%s", runID, out)
	lines := strings.Split(out, "\n")
	var header, rehire, failed string
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "SEQ"):
			header = l
		case strings.HasPrefix(l, "1 "):
			rehire = l
		case strings.HasPrefix(l, "2 "):
			failed = l
		}
	}
	// Every changed attribute with from → to; a secret never.
	if !strings.Contains(out, `jobTitle: "Clerk" → "Lead"; mobilePhone: "+1 555 0100" → (none); passwordProfile: "[redacted]"`) ||
		strings.Contains(out, "hunter2") {
		t.Errorf("CHANGES without from → to, or a secret shown:\n%s", out)
	}
	if f := strings.Fields(header); len(f) < 2 || f[len(f)-2] != "NOTE" || f[len(f)-1] != "ERROR" {
		t.Errorf("header %q: want NOTE then ERROR last", header)
	}
	if !strings.HasSuffix(failed, "Request_BadRequest: "+longMsg) {
		t.Errorf("failed row does not end with the whole error:\n%s", failed)
	}
	noteAt, errAt := strings.Index(header, "NOTE"), strings.Index(header, "ERROR")
	if len(rehire) < errAt || !strings.HasPrefix(rehire[noteAt:], "the user is wanted again (rehire)") ||
		strings.TrimSpace(rehire[errAt:]) != "-" {
		t.Errorf("rehire note not in NOTE, or ERROR not empty:\n%s\n%s", header, rehire)
	}

	out, _, err = runWorker(t, "history", db)
	if err != nil || !strings.Contains(out, summary) {
		t.Errorf("history cuts the error (%v):\n%s", err, out)
	}
}

// On a terminal, history prune asks first: "n" deletes nothing (exit 1),
// "y" prunes. util-linux script(1) gives the built binary a terminal.
func TestPruneAsksOnATerminal(t *testing.T) {
	script, err := exec.LookPath("script")
	if err != nil {
		t.Fatalf("script(1) from util-linux is needed to give the worker a terminal: %v", err)
	}
	bin := buildWorker(t)
	dbURL := testdb.NewURL(t)
	for _, tc := range []struct {
		answer string
		code   int
		want   string
	}{
		{"n\n", exitFail, "not confirmed: nothing was deleted"},
		{"y\n", exitOK, "pruned 0 runs"},
	} {
		cmd := exec.Command(script, "-qec", bin+" history prune --older-than 400d --database-url='"+dbURL+"'", "/dev/null")
		cmd.Stdin = strings.NewReader(tc.answer)
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.code || !strings.Contains(string(out), "? [y/N]") || !strings.Contains(string(out), tc.want) {
			t.Errorf("answer %q: exit %d; want %d and %q after the question:\n%s", tc.answer, code, tc.code, tc.want, out)
		}
	}
}
