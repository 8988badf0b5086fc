package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/entraprov/entraprov/internal/store"
	"github.com/entraprov/entraprov/internal/testdb"
)

// TestHistoryAndShowExport: the export formats read back with
// encoding/csv and encoding/json give the known runs and operations,
// field for field: a message with a comma, quotes and a newline survives
// CSV quoting, --since leaves out a run older than the window, and a
// password-like change never reaches the output.
func TestHistoryAndShowExport(t *testing.T) {
	url := testdb.NewURL(t)
	db := "--database-url=" + url
	st := openStore(t, url)
	ctx := context.Background()

	old := &store.Run{Job: "nightly", TenantID: "tenant-1", Trigger: "schedule", Mode: "apply"}
	if err := st.StartRun(ctx, old); err != nil {
		t.Fatal(err)
	}
	old.Status = store.RunSucceeded
	if err := st.FinishRun(ctx, old); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Pool().Exec(ctx, `UPDATE entraprov.sync_runs SET started_at = now() - interval '10 days',
		finished_at = now() - interval '10 days' + interval '3 seconds' WHERE id = $1`, old.ID); err != nil {
		t.Fatal(err)
	}

	run := &store.Run{Job: "nightly", TenantID: "tenant-1", Trigger: "manual", Mode: "apply"}
	if err := st.StartRun(ctx, run); err != nil {
		t.Fatal(err)
	}
	const msg = "Invalid value, \"usageLocation\" is required.\nSecond line"
	if err := st.RecordOperations(ctx, []store.Operation{
		{RunID: run.ID, Seq: 1, ExternalID: "E100", Action: "create", Status: store.OpPending,
			Changes: map[string]any{"displayName": "Alice", "passwordProfile": "Sup3rS3cret!", "forceChangePasswordNextSignIn": true}},
		{RunID: run.ID, Seq: 2, ExternalID: "E200", Action: "update", Status: store.OpPending,
			Changes: map[string]any{"jobTitle": "CTO"}},
	}); err != nil {
		t.Fatal(err)
	}
	if err := st.CompleteOperations(ctx, []store.Operation{
		{RunID: run.ID, Seq: 1, Status: store.OpSucceeded, ObjectID: "11111111-aaaa", HTTPStatus: 201, RequestID: "req-ok", Attempts: 1},
		{RunID: run.ID, Seq: 2, Status: store.OpFailed, HTTPStatus: 400, ErrorCode: "Request_BadRequest",
			Message: msg, RequestID: "req-bad", Attempts: 2},
	}); err != nil {
		t.Fatal(err)
	}
	run.Status, run.Counts, run.ErrorSummary = store.RunPartial, store.CountsFromMap(map[string]int{"create": 1, "failed": 1}), "1 user failed"
	run.Stats = store.RunStats{Requests: 3, Batches: 1, Throttled: 1}
	if err := st.FinishRun(ctx, run); err != nil {
		t.Fatal(err)
	}
	runID := strconv.FormatInt(run.ID, 10)

	worker := func(t *testing.T, args ...string) string {
		t.Helper()
		out, errOut, err := runWorker(t, append(args, db)...)
		if err != nil {
			t.Fatalf("worker %s: %v\n%s", strings.Join(args, " "), err, errOut)
		}
		if strings.Contains(out, "Sup3rS3cret") {
			t.Fatalf("worker %s printed a password:\n%s", strings.Join(args, " "), out)
		}
		return out
	}
	readCSV := func(t *testing.T, out string, header []string) []map[string]string {
		t.Helper()
		recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
		if err != nil {
			t.Fatalf("not RFC 4180 CSV: %v\n%s", err, out)
		}
		if strings.Join(recs[0], ",") != strings.Join(header, ",") {
			t.Fatalf("header %v; want %v", recs[0], header)
		}
		var rows []map[string]string
		for _, r := range recs[1:] {
			m := map[string]string{}
			for i, c := range recs[0] {
				m[c] = r[i]
			}
			rows = append(rows, m)
		}
		return rows
	}
	readJSONL := func(t *testing.T, out string) []map[string]any {
		t.Helper()
		var rows []map[string]any
		sc := bufio.NewScanner(strings.NewReader(out))
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Fatalf("line %q is not one JSON object: %v", sc.Text(), err)
			}
			rows = append(rows, m)
		}
		return rows
	}

	t.Run("show_csv", func(t *testing.T) {
		rows := readCSV(t, worker(t, "show", runID, "--format", "csv"), opExportColumns)
		if len(rows) != 2 {
			t.Fatalf("want 2 operations, got %v", rows)
		}
		ok, bad := rows[0], rows[1]
		if ok["run_id"] != runID || ok["job"] != "nightly" || ok["tenant_id"] != "tenant-1" || ok["external_id"] != "E100" ||
			ok["status"] != "succeeded" || ok["http_status"] != "201" || ok["object_id"] != "11111111-aaaa" ||
			ok["changes"] != `{"displayName":"Alice","forceChangePasswordNextSignIn":true,"passwordProfile":"[redacted]"}` {
			t.Errorf("succeeded row %v", ok)
		}
		if bad["external_id"] != "E200" || bad["status"] != "failed" || bad["message"] != msg || bad["attempts"] != "2" ||
			bad["error_code"] != "Request_BadRequest" || bad["request_id"] != "req-bad" || !strings.HasSuffix(bad["at"], "Z") {
			t.Errorf("failed row %v", bad)
		}
	})
	t.Run("show_jsonl", func(t *testing.T) {
		rows := readJSONL(t, worker(t, "show", runID, "--format", "jsonl"))
		if len(rows) != 2 || rows[1]["message"] != msg || rows[1]["http_status"] != float64(400) || rows[0]["run_mode"] != "apply" {
			t.Fatalf("show jsonl %v", rows)
		}
		if ch, _ := rows[0]["changes"].(map[string]any); ch["displayName"] != "Alice" || ch["passwordProfile"] != "[redacted]" {
			t.Errorf("changes %v", rows[0]["changes"])
		}
		for _, c := range opExportColumns {
			if _, ok := rows[0][c]; !ok {
				t.Errorf("jsonl lacks %q", c)
			}
		}
	})
	t.Run("history_since_csv", func(t *testing.T) {
		rows := readCSV(t, worker(t, "history", "--since", "7d", "--format", "csv"), runExportColumns)
		if len(rows) != 1 || rows[0]["run_id"] != runID || rows[0]["status"] != "partial" || rows[0]["requests"] != "3" ||
			rows[0]["counts"] != `{"create":1,"failed":1}` || rows[0]["error"] != "1 user failed" || rows[0]["finished_at"] == "" {
			t.Fatalf("history --since 7d csv %v", rows)
		}
	})
	t.Run("history_jsonl_without_since_has_both", func(t *testing.T) {
		rows := readJSONL(t, worker(t, "history", "--format", "jsonl"))
		if len(rows) != 2 || rows[1]["run_id"] != float64(old.ID) || rows[1]["duration_seconds"] != float64(3) {
			t.Fatalf("history jsonl %v", rows)
		}
	})
	runCases(t, []cliCase{
		{name: "unknown_format_is_usage", args: []string{"history", "--format", "xml", db}, code: exitUsage, contains: []string{"csv, jsonl"}},
		{name: "json_and_format_is_usage", args: []string{"show", runID, "--json", "--format", "csv", db}, code: exitUsage},
		{name: "bad_since_is_usage", args: []string{"history", "--since", "soon", db}, code: exitUsage, contains: []string{"--since"}},
		{name: "format_with_stuck_is_usage", args: []string{"show", "--stuck", "--format", "csv", db}, code: exitUsage},
	})
}
