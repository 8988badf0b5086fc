package main

import (
	"context"
	"regexp"
	"strings"
	"testing"
)

// TestPlanThenSync: plan records a dry run and writes nothing; sync applies
// it; a mass leave is blocked (exit 1) until --allow-deletes (budget_test.go
// has --approve).
func TestPlanThenSync(t *testing.T) {
	st, sim, worker := hrWorker(t, 30, "    deletion_threshold:\n      max_count: 5\n")
	out, errOut, err := worker("plan", "--job", "hr", "--limit", "3")
	if err != nil {
		t.Fatalf("plan: %v\n%s", err, errOut)
	}
	t.Logf("worker plan:\n%s", out)
	if !strings.Contains(out, "plan (manual)") || !strings.Contains(out, "create=30") || strings.Count(out, " create ") != 3 {
		t.Fatalf("plan output:\n%s", out)
	}
	if !strings.Contains(out, "… and 27 more: worker show") {
		t.Fatalf("plan output does not point at the rest:\n%s", out)
	}
	if w := sim.Counters().Writes; w != 0 {
		t.Fatalf("plan wrote %d times to the directory", w)
	}

	out, errOut, err = worker("sync", "--job", "hr")
	if err != nil {
		t.Fatalf("sync: %v\n%s", err, errOut)
	}
	if !strings.Contains(out, "succeeded") || sim.Counters().Writes != 30 {
		t.Fatalf("sync output (writes %d):\n%s", sim.Counters().Writes, out)
	}

	if _, err := st.Pool().Exec(context.Background(), `DELETE FROM entraprov.desired_users WHERE external_id <= 'E00010'`); err != nil {
		t.Fatal(err)
	}
	out, _, err = worker("sync", "--job", "hr")
	if exitCodeOf(err) != exitFail || !strings.Contains(out, "blocked") ||
		!strings.Contains(out, "--approve") {
		t.Fatalf("blocked sync: exit %d (%v)\n%s", exitCodeOf(err), err, out)
	}
	out, errOut, err = worker("sync", "--job", "hr", "--allow-deletes")
	if err != nil || !strings.Contains(out, "disable=10") {
		t.Fatalf("approved sync: %v\n%s\n%s", err, out, errOut)
	}

	if out, errOut, err = worker("sync", "--job", "hr", "--retry-stuck"); err != nil || !strings.Contains(out, "succeeded") {
		t.Fatalf("sync --retry-stuck: %v\n%s\n%s", err, out, errOut)
	}

	// A bad row: the run is partial, and its summary points at the failed
	// operations rather than saying there are none.
	if _, err := st.Pool().Exec(context.Background(), `INSERT INTO entraprov.desired_users
		(external_id, user_principal_name, display_name, usage_location, account_enabled)
		VALUES ('E99999', 'no-at-sign', 'Bad Row', 'XX', true)`); err != nil {
		t.Fatal(err)
	}
	out, errOut, err = worker("sync", "--job", "hr")
	if err != nil || !strings.Contains(out, "partial") || strings.Contains(out, "no operations") ||
		!regexp.MustCompile(`failed operations: worker show \d+ --status failed`).MatchString(out) {
		t.Fatalf("partial sync: %v\n%s\n%s", err, out, errOut)
	}

	_, _, err = worker("sync", "--job", "nope")
	if exitCodeOf(err) != exitUsage || !strings.Contains(err.Error(), `no job "nope"`) {
		t.Fatalf("unknown job: exit %d (%v); want 2", exitCodeOf(err), err)
	}
}
