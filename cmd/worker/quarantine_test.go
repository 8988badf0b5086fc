package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/jobs"
	"github.com/entraprov/entraprov/internal/store"
)

// quarantineStaff records five failed runs of job staff and applies the
// quarantine rule, as the daemon does after a run.
func quarantineStaff(t *testing.T, st *store.Store) {
	t.Helper()
	ctx := context.Background()
	for range 5 {
		run := store.Run{Job: "staff", Trigger: "schedule", Mode: "apply"}
		if err := st.StartRun(ctx, &run); err != nil {
			t.Fatal(err)
		}
		run.Status, run.ErrorSummary = store.RunFailed, "sign in: AADSTS7000222: the client secret has expired"
		if err := st.FinishRun(ctx, &run); err != nil {
			t.Fatal(err)
		}
	}
	p := jobs.Policy{AfterFailures: 5, FailureShare: 0.4, MaxBackoff: 24 * time.Hour}
	d, err := jobs.AfterRun(ctx, st, p, "staff", time.Now(), time.Hour)
	if err != nil || d.Until == nil {
		t.Fatalf("AfterRun = %+v, %v; want quarantined", d, err)
	}
}

// A quarantined job is the first line of `worker history` and `worker
// check`; `worker quarantine release` and a manual `worker sync` end it.
func TestQuarantineIsShownFirstAndReleased(t *testing.T) {
	env := newCheckEnv(t, []string{permUsers})
	st := openStore(t, env.dbURL)
	quarantineStaff(t, st)
	cfg := "--config=" + env.cfgPath

	firstLine := func(args ...string) string {
		t.Helper()
		out, errOut, err := runWorker(t, args...)
		if err != nil {
			t.Fatalf("worker %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
		}
		return strings.SplitN(out, "\n", 2)[0]
	}
	for _, args := range [][]string{{"history", cfg}, {"history", "--job", "staff", cfg}} {
		if l := firstLine(args...); !strings.HasPrefix(l, "QUARANTINED: job staff — 5 consecutive failed runs") ||
			!strings.Contains(l, "AADSTS7000222") || !strings.Contains(l, "worker quarantine release staff") {
			t.Errorf("worker %s: first line %q; want the quarantine with reason and release command", strings.Join(args, " "), l)
		}
	}
	// A job the configuration does not have is refused, not shown as a
	// quarantine-free empty history.
	if out, _, err := runWorker(t, "history", "--job", "other", cfg); exitCodeOf(err) != exitUsage || strings.Contains(out, "QUARANTINED") {
		t.Errorf("history of an unknown job: exit %d (%v)\n%s", exitCodeOf(err), err, out)
	}

	rep, code, out := runCheckJSON(t, cfg)
	if code != exitOK || len(rep.Quarantined) != 1 || findCheck(rep, "quarantine").Status != checkWarn {
		t.Fatalf("check of a quarantined job: exit %d, quarantined %q, item %+v; want a warning that does not fail\n%s",
			code, rep.Quarantined, findCheck(rep, "quarantine"), out)
	}
	var b bytes.Buffer
	printChecklist(&b, &rep)
	if l := strings.SplitN(b.String(), "\n", 2)[0]; !strings.HasPrefix(l, "QUARANTINED: job staff") {
		t.Errorf("checklist first line %q; want the quarantine", l)
	}

	runCases(t, []cliCase{
		{name: "list_shows_the_job", args: []string{"quarantine", "list", cfg}, code: exitOK,
			contains: []string{"staff", "5", "AADSTS7000222"}},
		{name: "release", args: []string{"quarantine", "release", "staff", cfg}, code: exitOK,
			contains: []string{"job staff released from quarantine (5 consecutive failed runs"}},
		{name: "list_after_release", args: []string{"quarantine", "list", cfg}, code: exitOK,
			contains: []string{"no job is quarantined"}},
		{name: "release_again", args: []string{"quarantine", "release", "staff", cfg}, code: exitOK,
			contains: []string{"job staff was not quarantined"}},
		{name: "history_after_release", args: []string{"history", cfg}, code: exitOK, absent: []string{"QUARANTINED"}},
	})

	// A manual sync releases the job before it runs; it succeeds (nothing
	// to do), so the job stays out of quarantine.
	quarantineStaff(t, st)
	runCases(t, []cliCase{
		{name: "manual_sync_releases", args: []string{"sync", "--job", "staff", cfg}, code: exitOK,
			contains: []string{"job staff released from quarantine for this manual run", "succeeded"},
			absent:   []string{"is quarantined"}},
	})
	js, err := st.GetJobState(context.Background(), "staff")
	if err != nil || js.QuarantinedUntil != nil || js.ConsecutiveFailures != 0 {
		t.Fatalf("job_state after manual sync = %+v, %v; want released", js, err)
	}
}
