package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/store"
	"github.com/entraprov/entraprov/internal/testdb"
	"github.com/entraprov/entraprov/migrations"
)

// cliCase is one CLI invocation and what it must produce.
type cliCase struct {
	name     string
	args     []string
	code     int      // exit code
	contains []string // substrings of stdout+stderr
	absent   []string
}

func runCases(t *testing.T, cases []cliCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, err := runWorker(t, tc.args...)
			if got := exitCodeOf(err); got != tc.code {
				t.Fatalf("worker %s: exit %d; want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(tc.args, " "), got, tc.code, out, errOut)
			}
			all := out + errOut
			for _, w := range tc.contains {
				if !strings.Contains(all, w) {
					t.Errorf("worker %s: output lacks %q:\n%s", strings.Join(tc.args, " "), w, all)
				}
			}
			for _, w := range tc.absent {
				if strings.Contains(all, w) {
					t.Errorf("worker %s: output has %q:\n%s", strings.Join(tc.args, " "), w, all)
				}
			}
		})
	}
}

// openStore is internal/testdb's Open under the name these tests use.
var openStore = testdb.Open

// `worker migrate up` twice: the second run has nothing to do; status tells
// what is pending and how to fix it; a newer database is refused.
func TestMigrateCommand(t *testing.T) {
	url := testdb.NewURL(t)
	st := openStore(t, url)
	if _, err := st.Pool().Exec(context.Background(), `DROP SCHEMA entraprov CASCADE`); err != nil {
		t.Fatal(err)
	}
	db := "--database-url=" + url
	// Counted, not written down: every new migration would break the test.
	files, err := fs.Glob(migrations.FS, "*.sql")
	if err != nil || len(files) < 4 {
		t.Fatalf("migrations: %v, %v", files, err)
	}
	latest, newer := len(files), len(files)+3
	runCases(t, []cliCase{
		{name: "status_of_empty_database_lists_pending", args: []string{"migrate", "status", db}, code: exitFail,
			contains: []string{"schema version 0", "pending  001_init.sql", "run `worker migrate up`"}},
		{name: "history_before_migrating_says_what_to_do", args: []string{"history", db}, code: exitFail,
			contains: []string{"worker migrate up"}},
		{name: "first_up_applies", args: []string{"migrate", "up", db}, code: exitOK,
			contains: []string{fmt.Sprintf("applied %d migrations: schema now at version %d", latest, latest)}},
		{name: "second_up_has_nothing_to_do", args: []string{"migrate", "up", db}, code: exitOK,
			contains: []string{fmt.Sprintf("nothing to do: schema already at version %d", latest)}},
		{name: "status_when_up_to_date", args: []string{"migrate", "status", db}, code: exitOK,
			contains: []string{"applied  001_init.sql", "applied  002_operations.sql", "up to date"}},
	})
	var n int
	err = st.Pool().QueryRow(context.Background(),
		`SELECT count(*) FROM pg_tables WHERE schemaname = 'entraprov'`).Scan(&n)
	if err != nil || n < 6 {
		t.Fatalf("tables in schema entraprov after migrate up = %d, %v; want the 6 tables and the version table", n, err)
	}

	if _, err := st.Pool().Exec(context.Background(), `UPDATE entraprov.schema_version SET version = $1`, newer); err != nil {
		t.Fatal(err)
	}
	runCases(t, []cliCase{
		{name: "newer_database_is_refused", args: []string{"migrate", "up", db}, code: exitFail,
			contains: []string{fmt.Sprintf("schema version %d", newer), "upgrade the worker"}},
		{name: "status_of_newer_database", args: []string{"migrate", "status", db}, code: exitFail,
			contains: []string{fmt.Sprintf("schema version %d, this worker knows %d", newer, latest), "upgrade the worker"}},
	})
}

func TestDatabaseCommandsWithoutDatabaseAreConfigErrors(t *testing.T) {
	t.Setenv("DATABASE_URL", "")
	t.Setenv("ENTRAPROV_DATABASE_URL", "")
	t.Setenv("ENTRAPROV_CONFIG", "")
	runCases(t, []cliCase{
		{name: "migrate", args: []string{"migrate", "up"}, code: exitConfig, contains: []string{"no database"}},
		{name: "history", args: []string{"history"}, code: exitConfig, contains: []string{"no database"}},
		{name: "show", args: []string{"show", "1"}, code: exitConfig, contains: []string{"no database"}},
	})
	// A password in an unreachable URL is never echoed.
	runCases(t, []cliCase{{name: "unreachable_server_hides_password",
		args: []string{"history", "--database-url=postgres://app:S3cret-pw@127.0.0.1:1/x?connect_timeout=2"},
		code: exitFail, absent: []string{"S3cret-pw"}}})
}

func TestHistoryAndShowCommands(t *testing.T) {
	url := testdb.NewURL(t)
	db := "--database-url=" + url
	runCases(t, []cliCase{
		{name: "empty_history_is_friendly", args: []string{"history", db}, code: exitOK, contains: []string{"no runs yet"}},
		// Without a configuration a job name is checked against the
		// database's jobs: none yet, so nightly names no job.
		{name: "history_of_unknown_job_is_usage", args: []string{"history", "--job", "nightly", db}, code: exitUsage,
			contains: []string{`no job "nightly" in the database (jobs with runs or state: none yet)`}, absent: []string{"no runs yet"}},
		{name: "empty_history_json_is_empty_array", args: []string{"history", "--json", db}, code: exitOK, contains: []string{"[]"}},
	})

	st := openStore(t, url)
	ctx := context.Background()
	at := time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC)
	first := &store.Run{Job: "nightly", TenantID: "tenant-1", Trigger: "schedule", Mode: "apply", ScheduledFor: &at}
	if err := st.StartRun(ctx, first); err != nil {
		t.Fatal(err)
	}
	err := st.RecordOperations(ctx, []store.Operation{
		{RunID: first.ID, Seq: 1, ExternalID: "E100", Action: "create", Status: store.OpPending,
			Changes: map[string]any{"displayName": "Alice", "userPrincipalName": "alice@contoso.test"}},
		{RunID: first.ID, Seq: 2, ExternalID: "E200", Action: "update", Status: store.OpPending,
			Changes: map[string]any{"jobTitle": "CTO"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	err = st.CompleteOperations(ctx, []store.Operation{
		{RunID: first.ID, Seq: 1, Status: store.OpSucceeded, ObjectID: "11111111-aaaa", HTTPStatus: 201, RequestID: "req-ok", Attempts: 1},
		{RunID: first.ID, Seq: 2, Status: store.OpFailed, HTTPStatus: 400, ErrorCode: "Request_BadRequest",
			Message: "Invalid value specified for property 'usageLocation'.\nsecond line", RequestID: "req-bad", Attempts: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	first.Status, first.Counts, first.ErrorSummary = store.RunPartial, store.CountsFromMap(map[string]int{"create": 1, "update": 1, "failed": 1}), "1 user failed"
	first.Stats = store.RunStats{Requests: 2, Batches: 1, Throttled: 1, Retried: 1}
	if err := st.FinishRun(ctx, first); err != nil {
		t.Fatal(err)
	}
	second := &store.Run{Job: "hourly", Trigger: "manual", Mode: "plan"}
	if err := st.StartRun(ctx, second); err != nil {
		t.Fatal(err)
	}
	id := func(r *store.Run) string { return strconv.FormatInt(r.ID, 10) }

	runCases(t, []cliCase{
		{name: "history_lists_runs_newest_first", args: []string{"history", db}, code: exitOK,
			contains: []string{"RUN", "STATUS", "partial", "running", "create=1 failed=1 update=1", "1 user failed"}},
		{name: "history_filters_by_job", args: []string{"history", "--job", "nightly", db}, code: exitOK,
			contains: []string{"nightly"}, absent: []string{"hourly"}},
		{name: "history_limit", args: []string{"history", "--limit", "1", db}, code: exitOK,
			contains: []string{"hourly"}, absent: []string{"nightly"}},
		{name: "history_bad_limit_is_usage", args: []string{"history", "--limit", "0", db}, code: exitUsage},
		{name: "show_prints_header_and_operations", args: []string{"show", id(first), db}, code: exitOK,
			contains: []string{"status", "partial", "tenant-1", "2 requests, 1 batches, 1 throttled, 1 retried",
				"E100", "succeeded", "11111111-aaaa", `displayName: "Alice"; userPrincipalName: "alice@contoso.test"`,
				"E200", "req-bad", "Request_BadRequest: Invalid value specified for property 'usageLocation'. / second line"}},
		{name: "show_only_failed", args: []string{"show", id(first), "--status", "failed", db}, code: exitOK,
			contains: []string{"E200"}, absent: []string{"E100"}},
		{name: "show_no_matching_operations", args: []string{"show", id(second), "--status", "failed", db}, code: exitOK,
			contains: []string{"no failed operations", "running"}},
		{name: "show_unknown_run", args: []string{"show", "999999", db}, code: exitFail, contains: []string{"run 999999 not found"}},
		{name: "show_non_numeric_id_is_usage", args: []string{"show", "abc", db}, code: exitUsage},
		{name: "show_missing_id_is_usage", args: []string{"show", db}, code: exitUsage},
		{name: "show_bad_status_is_usage", args: []string{"show", id(first), "--status", "oops", db}, code: exitUsage,
			contains: []string{"want one of planned"}},
	})

	t.Run("history_table_is_aligned", func(t *testing.T) {
		out, _, err := runWorker(t, "history", db)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 3 {
			t.Fatalf("want header + 2 runs:\n%s", out)
		}
		col := strings.Index(lines[0], "STATUS")
		for _, l := range lines[1:] {
			if !strings.HasPrefix(l[col:], "partial") && !strings.HasPrefix(l[col:], "running") {
				t.Fatalf("STATUS column not aligned at %d:\n%s", col, out)
			}
		}
	})
	t.Run("history_json", func(t *testing.T) {
		out, _, err := runWorker(t, "history", "--json", db)
		if err != nil {
			t.Fatal(err)
		}
		var runs []runJSON
		if err := json.Unmarshal([]byte(out), &runs); err != nil {
			t.Fatalf("history --json is not JSON: %v\n%s", err, out)
		}
		if len(runs) != 2 || runs[0].ID != second.ID || runs[1].Counts["failed"] != 1 || runs[1].DurationSeconds == nil ||
			runs[0].DurationSeconds != nil || runs[1].Throttled != 1 {
			t.Fatalf("history --json = %+v", runs)
		}
	})
	t.Run("show_json", func(t *testing.T) {
		out, _, err := runWorker(t, "show", id(first), "--json", db)
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Run        runJSON  `json:"run"`
			Operations []opJSON `json:"operations"`
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("show --json is not JSON: %v\n%s", err, out)
		}
		if got.Run.Status != "partial" || len(got.Operations) != 2 || got.Operations[1].ErrorCode != "Request_BadRequest" ||
			got.Operations[0].Changes["displayName"] != "Alice" || got.Operations[0].HTTPStatus != 201 {
			t.Fatalf("show --json = %+v", got)
		}
	})
}
