package jobs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/store"
	esync "github.com/entraprov/entraprov/internal/sync"
	"github.com/entraprov/entraprov/internal/testdb"
)

var testPolicy = Policy{AfterFailures: 5, FailureShare: 0.4, MaxBackoff: 24 * time.Hour}

func TestRunFailedCountsFailedRunsAndHighFailureShare(t *testing.T) {
	for _, tt := range []struct {
		name string
		h    store.RunHealth
		want bool
	}{
		{"failed_run", store.RunHealth{Status: store.RunFailed, ErrorSummary: "AADSTS7000222"}, true},
		{"succeeded_run", store.RunHealth{Status: store.RunSucceeded, Succeeded: 10}, false},
		{"partial_under_share", store.RunHealth{Status: store.RunPartial, Succeeded: 6, Failed: 4}, false},
		{"partial_over_share", store.RunHealth{Status: store.RunPartial, Succeeded: 5, Failed: 5}, true},
		{"partial_nothing_sent", store.RunHealth{Status: store.RunPartial}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, why := runFailed(tt.h, testPolicy)
			if got != tt.want || got == (why == "") {
				t.Fatalf("runFailed = %v, %q; want %v with a reason iff failed", got, why, tt.want)
			}
		})
	}
}

func TestBackoffDoublesFromTheIntervalUpToTheCap(t *testing.T) {
	for _, tt := range []struct {
		name     string
		interval time.Duration
		failures int
		want     time.Duration
	}{
		{"entering_skips_one_occurrence", time.Hour, 5, 2 * time.Hour},
		{"each_failure_doubles", time.Hour, 7, 8 * time.Hour},
		{"capped_at_a_day", time.Hour, 12, 24 * time.Hour},
		{"daily_job_cannot_back_off_further", 24 * time.Hour, 9, 24 * time.Hour},
		{"weekly_job_keeps_its_interval", 7 * 24 * time.Hour, 5, 7 * 24 * time.Hour},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := backoff(tt.interval, tt.failures, testPolicy); got != tt.want {
				t.Fatalf("backoff(%v, %d) = %v; want %v", tt.interval, tt.failures, got, tt.want)
			}
		})
	}
}

func TestDecideQuarantinesAfterTheStreakOnly(t *testing.T) {
	fail := store.RunHealth{Status: store.RunFailed, ErrorSummary: "token: AADSTS7000222 secret expired"}
	ok := store.RunHealth{Status: store.RunSucceeded}
	anchor := time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC)
	runs := func(xs ...store.RunHealth) []store.RunHealth { return xs }
	for _, tt := range []struct {
		name      string
		runs      []store.RunHealth
		policy    Policy
		failures  int
		until     time.Duration // 0: not quarantined
		reasonHas string
	}{
		{"four_failures_are_not_enough", runs(fail, fail, fail, fail, ok), testPolicy, 4, 0, ""},
		{"five_failures_quarantine", runs(fail, fail, fail, fail, fail, ok), testPolicy, 5, 2 * time.Hour, "5 consecutive failed runs; last: run 0 failed: token: AADSTS7000222"},
		{"a_success_breaks_the_streak", runs(ok, fail, fail, fail, fail, fail), testPolicy, 0, 0, ""},
		{"quarantine_off", runs(fail, fail, fail, fail, fail), Policy{AfterFailures: 0, MaxBackoff: time.Hour}, 5, 0, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := decide(tt.runs, tt.policy, anchor, time.Hour)
			if d.Failures != tt.failures {
				t.Errorf("failures = %d; want %d", d.Failures, tt.failures)
			}
			switch {
			case tt.until == 0 && d.Until != nil:
				t.Errorf("quarantined until %v; want not quarantined", d.Until)
			case tt.until != 0 && (d.Until == nil || !d.Until.Equal(anchor.Add(tt.until))):
				t.Errorf("until = %v; want %v", d.Until, anchor.Add(tt.until))
			}
			if !strings.Contains(d.Reason, tt.reasonHas) || (tt.reasonHas == "") != (d.Reason == "") {
				t.Errorf("reason = %q; want it to contain %q", d.Reason, tt.reasonHas)
			}
		})
	}
}

// Five failing runs of an hourly job quarantine it: the next occurrences
// are skipped with the reason (back-off 2 h, then 4 h) instead of run, and
// a release lets the next occurrence run again.
//
// The test hands the scheduler each occurrence itself, as cron's tick does,
// once the previous one is done: with a real @every 1s schedule a run that
// took over a second on a loaded machine met the next tick busy, or a
// stalled cron loop dropped a tick, and the sequence came out otherwise.
func TestFailingJobIsQuarantinedBacksOffAndIsReleased(t *testing.T) {
	t.Parallel()
	st := testdb.New(t)
	var failing atomic.Bool
	failing.Store(true)
	r := &storeRunner{st: st, work: func(context.Context, config.Job, Occurrence) error {
		if failing.Load() {
			return errors.New("sign in: AADSTS7000222: the client secret has expired")
		}
		return nil
	}}
	results := make(chan Result, 64)
	// Hourly, at a minute half an hour away: cron itself never fires
	// during the test.
	hourly := fmt.Sprintf("%d * * * *", (time.Now().Minute()+30)%60)
	s := startScheduler(t, Options{Runner: r, History: st, Quarantine: st, Policy: testPolicy,
		OnResult: func(res Result) { results <- res }}, testJob("flaky", hourly))
	base := time.Date(2026, 11, 30, 2, 0, 0, 0, time.UTC)
	// tick hands the occurrence k hours after base and returns its result,
	// once the job is free again.
	tick := func(k int) Result {
		t.Helper()
		due(s, "flaky", base.Add(time.Duration(k)*time.Hour))
		select {
		case res := <-results:
			waitSlots(t, s, 0)
			return res
		case <-time.After(10 * time.Second):
			t.Fatalf("no result for the occurrence at +%dh", k)
			return Result{}
		}
	}

	// R: a run, S: a skipped occurrence. After the fifth failure the wait
	// is 2 h (one occurrence skipped); the probe run fails too, and the wait
	// doubles to 4 h (three skipped).
	var seq strings.Builder
	const want = "RRRRRSRSSS"
	for k := range len(want) {
		res := tick(k)
		if res.Skipped {
			if !strings.Contains(res.Reason, "job quarantined until") || !strings.Contains(res.Reason, "AADSTS7000222") ||
				!strings.Contains(res.Reason, "worker quarantine release flaky") {
				t.Fatalf("skip reason %q does not say quarantined, why and how to release", res.Reason)
			}
			seq.WriteByte('S')
			continue
		}
		seq.WriteByte('R')
		ran := strings.Count(seq.String(), "R")
		if res.Quarantine == nil || res.Quarantine.Failures != ran {
			t.Fatalf("run %d: quarantine decision %+v; want %d failures counted", ran, res.Quarantine, ran)
		}
		if (ran >= 5) != (res.Quarantine.Until != nil) {
			t.Fatalf("run %d: quarantined until %v; want quarantine from the fifth failed run on", ran, res.Quarantine.Until)
		}
	}
	if seq.String() != want {
		t.Fatalf("runs and skips = %q; want %q (back-off doubling from the 1 h interval)", seq.String(), want)
	}
	skips := 0
	for _, row := range runRows(t, st, "flaky") {
		if row.status == store.RunSkipped && strings.Contains(row.summary, "job quarantined until") {
			skips++
		}
	}
	if skips != 4 {
		t.Fatalf("%d skipped runs with the quarantine reason in the history; want 4", skips)
	}
	stateOf := func() store.JobState {
		js, err := st.GetJobState(context.Background(), "flaky")
		if err != nil {
			t.Fatal(err)
		}
		return js
	}
	if js := stateOf(); js.QuarantinedUntil == nil || js.ConsecutiveFailures < 5 || !strings.Contains(js.QuarantineReason, "AADSTS7000222") {
		t.Fatalf("job_state = %+v; want quarantined with the reason", js)
	}

	// Release and let it succeed: the next occurrence runs, and a succeeded
	// run leaves the job out of quarantine.
	failing.Store(false)
	was, err := st.ReleaseQuarantine(context.Background(), "flaky")
	if err != nil || was.QuarantinedUntil == nil {
		t.Fatalf("ReleaseQuarantine = %+v, %v; want it to report the quarantine it ended", was, err)
	}
	res := tick(len(want))
	if res.Skipped || res.Run.Status != store.RunSucceeded {
		t.Fatalf("after release: %+v; want the next occurrence run and succeeded", res)
	}
	if res.Quarantine == nil || res.Quarantine.Until != nil || res.Quarantine.Failures != 0 {
		t.Fatalf("after release: %+v; want not quarantined", res.Quarantine)
	}
	stop(t, s)
	if js := stateOf(); js.QuarantinedUntil != nil || js.ConsecutiveFailures != 0 {
		t.Fatalf("job_state after release = %+v", js)
	}
}

// A released job starts counting again from zero: one more failure does not
// put it back into quarantine.
func TestReleaseRestartsTheCount(t *testing.T) {
	t.Parallel()
	st := testdb.New(t)
	ctx := context.Background()
	failRun := func() {
		run := store.Run{Job: "j", Trigger: string(esync.TriggerManual), Mode: string(esync.ModeApply)}
		if err := st.StartRun(ctx, &run); err != nil {
			t.Fatal(err)
		}
		run.Status, run.ErrorSummary = store.RunFailed, "boom"
		if err := st.FinishRun(ctx, &run); err != nil {
			t.Fatal(err)
		}
	}
	for range 5 {
		failRun()
	}
	d, err := AfterRun(ctx, st, testPolicy, "j", time.Now(), time.Hour)
	if err != nil || d.Until == nil {
		t.Fatalf("AfterRun after 5 failures = %+v, %v; want quarantined", d, err)
	}
	if _, err := st.ReleaseQuarantine(ctx, "j"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // the next run starts after the release
	failRun()
	d, err = AfterRun(ctx, st, testPolicy, "j", time.Now(), time.Hour)
	if err != nil || d.Until != nil || d.Failures != 1 {
		t.Fatalf("AfterRun after release + 1 failure = %+v, %v; want 1 failure, not quarantined", d, err)
	}
	q, err := st.ListQuarantined(ctx)
	if err != nil || len(q) != 0 {
		t.Fatalf("ListQuarantined = %+v, %v; want none", q, err)
	}
}

// A manual run gets the rule a scheduled run gets: BeforeManualRun ends the
// quarantine and reports it, and AfterManualRun counts the manual run's
// outcome (the back-off anchored at its start); plan runs never count.
func TestManualRunsShareTheQuarantineRule(t *testing.T) {
	t.Parallel()
	st := testdb.New(t)
	ctx := context.Background()
	job := config.Job{Name: "m", Schedule: "@every 1h"}
	manualRun := func(mode string, status store.RunStatus) store.Run {
		run := store.Run{Job: job.Name, Trigger: string(esync.TriggerManual), Mode: mode}
		if err := st.StartRun(ctx, &run); err != nil {
			t.Fatal(err)
		}
		run.Status, run.ErrorSummary = status, "boom"
		if err := st.FinishRun(ctx, &run); err != nil {
			t.Fatal(err)
		}
		return run
	}
	var last store.Run
	for range testPolicy.AfterFailures {
		last = manualRun("apply", store.RunFailed)
	}
	d, err := AfterManualRun(ctx, st, testPolicy, job, last)
	if err != nil || d.Until == nil || d.Failures != testPolicy.AfterFailures {
		t.Fatalf("AfterManualRun after %d failed manual runs = %+v, %v; want quarantined", testPolicy.AfterFailures, d, err)
	}
	if want := last.StartedAt.Add(2 * time.Hour); !d.Until.Equal(want) {
		t.Fatalf("quarantined until %s; want %s (twice the interval from the run's start)", d.Until, want)
	}
	plan := manualRun("plan", store.RunFailed)
	if d, err := AfterManualRun(ctx, st, testPolicy, job, plan); err != nil || d.Until != nil || d.Failures != 0 {
		t.Fatalf("AfterManualRun of a plan run = %+v, %v; want no decision", d, err)
	}
	was, err := BeforeManualRun(ctx, st, job.Name)
	if err != nil || was.QuarantinedUntil == nil {
		t.Fatalf("BeforeManualRun = %+v, %v; want it to report the quarantine it ended", was, err)
	}
	if js, err := st.GetJobState(ctx, job.Name); err != nil || js.QuarantinedUntil != nil {
		t.Fatalf("job_state after BeforeManualRun = %+v, %v; want released", js, err)
	}
}
