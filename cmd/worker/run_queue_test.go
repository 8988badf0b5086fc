package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/store"
	"github.com/entraprov/entraprov/internal/testdb"
)

// With max_concurrent_jobs: 1, a job due while another runs waits: systemd's
// STATUS and /metrics show it queued, its later ticks are skipped with the
// reason, and at SIGTERM it is dropped without a run (counted as missed).
func TestRunQueuesJobsBeyondMaxConcurrentJobs(t *testing.T) {
	dbURL := testdb.NewURL(t)
	t.Setenv("ENTRAPROV_TEST_SECRET", "x")
	notify := listenNotify(t)
	port := freePort(t)
	cfgPath := filepath.Join(t.TempDir(), "config.yaml")
	// "long" runs until the worker stops; "short" would take a second.
	// Two jobs of one tenant need their own sources.
	cfg := strings.Replace(daemonConfig(dbURL, port, "long=@every 1s", "short=@every 1s"),
		"  - name: short\n", "  - name: short\n    source: entraprov.short_users\n", 1)
	writeFile(t, cfgPath, "max_concurrent_jobs: 1\n"+cfg)
	eng := &fakeEngine{runs: map[string]int{}}
	stop, done, logs := startDaemon(t, eng, "run", "--config", cfgPath, "--stop-timeout", "10s")

	t.Cleanup(func() {
		if t.Failed() {
			t.Log(logs.String())
			select {
			case err := <-done:
				t.Log("exit:", err)
			default:
			}
		}
	})
	notify.waitFor(t, 0, "running long; 1 queued (max_concurrent_jobs)", 20*time.Second)
	if _, body := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", port)); !strings.Contains(body, "entraprov_jobs_queued 1") {
		t.Errorf("/metrics does not show the queued occurrence:\n%s", grepLines(body, "queue"))
	}
	// A later tick of short while its occurrence waits is skipped, not
	// queued twice.
	for deadline := time.Now().Add(15 * time.Second); !strings.Contains(logs.String(), `"msg":"occurrence skipped: the job's previous occurrence is still queued for a run slot","job":"short"`); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no later tick of short skipped while it was queued")
		}
	}
	before := eng.count("short")
	stop()
	if err := daemonExit(t, done, 15*time.Second, "worker run did not stop"); exitCodeOf(err) != exitOK {
		t.Fatalf("worker run exited %d (%v), want 0", exitCodeOf(err), err)
	}
	if n := eng.count("short"); n != before {
		t.Errorf("short ran %d times after the stop began, want none", n-before)
	}
	if l := logs.String(); !strings.Contains(l, `"msg":"stopping: queued occurrence never started; it counts as missed","job":"short"`) {
		t.Errorf("the dropped queued occurrence is not logged:\n%s", grepLines(l, "queued"))
	}
	// Neither it nor the ticks that came while it waited are recorded, so
	// short's last recorded occurrence is older and catch_up would run it.
	runs, err := openStore(t, dbURL).ListRuns(context.Background(), "short", 50)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range runs {
		// A tick while short itself ran (it may take the slot at the
		// first tick, before long, and a loaded machine may keep it a
		// second) is skipped as in progress; a tick while it was queued
		// must leave no row.
		if r.Status == store.RunSkipped && !strings.Contains(r.ErrorSummary, "still in progress in this process") {
			t.Errorf("short: skip recorded for %v (%s); want the ticks while queued recorded only if it starts", r.ScheduledFor, r.ErrorSummary)
		}
	}
}
