package main

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/entraprov/entraprov/internal/graphsim"
	"github.com/entraprov/entraprov/internal/store"
)

// TestSyncUserTrace: `sync --user` creates that user alone and prints its
// trace (source row, mirror, decision, POST /users answered 201 with a
// request id, the history row), never a password; `plan --user --json`
// gives it to machines; an unknown external_id exits 1 recording nothing,
// and --user with --approve is a usage error.
func TestSyncUserTrace(t *testing.T) {
	st, sim, worker := hrWorker(t, 10, "")

	out, errOut, err := worker("sync", "--job", "hr", "--user", "E00003")
	if err != nil {
		t.Fatalf("sync --user: %v\n%s\n%s", err, out, errOut)
	}
	t.Logf("worker sync --job hr --user E00003:\n%s", out)
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`user E00003 · job hr · run \d+ \(manual, apply, this user only\)`),
		regexp.MustCompile(`(?m)^source row\n  userPrincipalName +user3@`),
		regexp.MustCompile(`(?m)^link\n  none: never provisioned by this job`),
		regexp.MustCompile(`(?m)^directory \(the job's mirror\)\n  no such user`),
		regexp.MustCompile(`(?m)^decision: create\n  step 1: create\n(    .*\n)*    displayName: User 3\n`),
		regexp.MustCompile(`(?m)^→ POST /users   \(seq 1, create\)\n    sent: .*passwordProfile.*userPrincipalName`),
		regexp.MustCompile(`(?m)^← 201 succeeded   request-id [0-9a-f-]{8,}`),
		regexp.MustCompile(`(?m)^  seq 1  create  succeeded  201  request-id [0-9a-f-]{8,}`),
		regexp.MustCompile(`(?m)^run \d+ succeeded$`),
	} {
		if !want.MatchString(out) {
			t.Errorf("trace lacks %s", want)
		}
	}
	if strings.Contains(strings.ToLower(out+errOut), "password:") {
		t.Errorf("the trace shows more of the password than its attribute name:\n%s", out)
	}
	c := sim.Counters()
	if c.Writes != 1 || len(c.Created) != 1 || c.Created["user3@"+graphsim.DefaultDomain] != 1 {
		t.Fatalf("writes %d, created %v; want user3 alone", c.Writes, c.Created)
	}

	out, errOut, err = worker("plan", "--job", "hr", "--user", "E00004", "--json")
	if err != nil {
		t.Fatalf("plan --user --json: %v\n%s", err, errOut)
	}
	var doc struct {
		Run struct {
			Mode   string `json:"mode"`
			Status string `json:"status"`
		} `json:"run"`
		Trace   []map[string]any `json:"trace"`
		History []struct {
			ExternalID string `json:"external_id"`
			Status     string `json:"status"`
		} `json:"history"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("plan --json: %v\n%s", err, out)
	}
	kinds := map[string]int{}
	for _, ev := range doc.Trace {
		kinds[ev["kind"].(string)]++
	}
	if doc.Run.Mode != "plan" || kinds["source"] != 1 || kinds["decision"] != 1 || kinds["request"] != 0 ||
		len(doc.History) != 1 || doc.History[0].ExternalID != "E00004" || doc.History[0].Status != "planned" {
		t.Fatalf("plan --json: run %+v, kinds %v, history %+v", doc.Run, kinds, doc.History)
	}
	if strings.Contains(out, `"password"`) {
		t.Fatalf("the JSON trace has a password key:\n%s", out)
	}

	runsBefore := countRows(t, st, "entraprov.sync_runs")
	_, errOut, err = worker("sync", "--job", "hr", "--user", "E99999")
	if exitCodeOf(err) != exitFail || !strings.Contains(errOut, `user "E99999": neither in the source nor linked by the job hr`) {
		t.Fatalf("unknown user: exit %d, stderr:\n%s", exitCodeOf(err), errOut)
	}
	if n := countRows(t, st, "entraprov.sync_runs"); n != runsBefore {
		t.Fatalf("an unknown user recorded a run (%d runs, was %d)", n, runsBefore)
	}
	if _, _, err = worker("sync", "--job", "hr", "--user", "E00001", "--approve", "1"); exitCodeOf(err) != exitUsage {
		t.Fatalf("--user with --approve: exit %d; want %d", exitCodeOf(err), exitUsage)
	}

	// The rest of the job was left for the next full run.
	if out, errOut, err = worker("sync", "--job", "hr"); err != nil || sim.Counters().Writes != 10 {
		t.Fatalf("full sync: %v, writes %d\n%s\n%s", err, sim.Counters().Writes, out, errOut)
	}

	// A row the planner refuses: the reason, and exit 1.
	if _, err := st.Pool().Exec(context.Background(), `INSERT INTO entraprov.desired_users
		(external_id, user_principal_name, display_name, account_enabled) VALUES ('E99998', 'no-at-sign', 'Bad Row', true)`); err != nil {
		t.Fatal(err)
	}
	out, _, err = worker("sync", "--job", "hr", "--user", "E99998")
	if exitCodeOf(err) != exitFail || !regexp.MustCompile(`(?m)^  step 1: create \(fails: user_principal_name`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^  seq 1  create  failed$`).MatchString(out) {
		t.Fatalf("refused user: exit %d (%v)\n%s", exitCodeOf(err), err, out)
	}
	t.Logf("worker sync --job hr --user E99998 (refused):\n%s", out)

	// An update: the mirror's view, and from → to of what changes.
	if _, err := st.Pool().Exec(context.Background(), `UPDATE entraprov.desired_users SET job_title = 'Lead', display_name = 'User Three' WHERE external_id = 'E00003'`); err != nil {
		t.Fatal(err)
	}
	out, errOut, err = worker("sync", "--job", "hr", "--user", "E00003")
	if err != nil {
		t.Fatalf("sync --user (update): %v\n%s\n%s", err, out, errOut)
	}
	t.Logf("worker sync --job hr --user E00003 (update):\n%s", out)
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^directory \(the job's mirror\)\n  object +[0-9a-f-]{36}\n  state +enabled\n  userPrincipalName +user3@`),
		regexp.MustCompile(`(?m)^    displayName: "User 3" → "User Three"\n    jobTitle: \(none\) → "Lead"`),
		regexp.MustCompile(`(?m)^→ PATCH /users/[0-9a-f-]{36}   \(seq 1, update\)\n    sent: displayName, jobTitle\n← 204 succeeded   request-id [0-9a-f-]{8,}`),
	} {
		if !want.MatchString(out) {
			t.Errorf("update trace lacks %s", want)
		}
	}
}

func countRows(t *testing.T, st *store.Store, table string) int {
	t.Helper()
	var n int
	if err := st.Pool().QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
