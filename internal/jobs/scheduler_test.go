package jobs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/store"
	esync "github.com/entraprov/entraprov/internal/sync"
	"github.com/entraprov/entraprov/internal/testdb"
)

// storeRunner stands in for the reconcile engine with the same database
// protocol: job advisory lock, then the sync_runs row (unique per
// occurrence), work, then finish — interrupted when ctx is cancelled.
type storeRunner struct {
	st   *store.Store
	work func(ctx context.Context, job config.Job, occ Occurrence) error

	mu       sync.Mutex
	calls    []Occurrence
	inFlight atomic.Int32
	maxSeen  atomic.Int32
}

func (r *storeRunner) Run(ctx context.Context, job config.Job, occ Occurrence) (store.Run, error) {
	n := r.inFlight.Add(1)
	defer r.inFlight.Add(-1)
	for {
		m := r.maxSeen.Load()
		if n <= m || r.maxSeen.CompareAndSwap(m, n) {
			break
		}
	}
	r.mu.Lock()
	r.calls = append(r.calls, occ)
	r.mu.Unlock()

	unlock, ok, err := r.st.TryLockJob(ctx, job.Name)
	if err != nil {
		return store.Run{}, err
	}
	if !ok {
		return store.Run{}, fmt.Errorf("job %s locked: %w", job.Name, ErrTaken)
	}
	defer unlock()
	at := occ.ScheduledFor
	run := store.Run{Job: job.Name, TenantID: job.TenantID, Trigger: string(occ.Trigger), Mode: string(esync.ModeApply), ScheduledFor: &at}
	if err := r.st.StartRun(ctx, &run); err != nil {
		if errors.Is(err, store.ErrOccurrenceTaken) {
			return store.Run{}, fmt.Errorf("%w: %w", ErrTaken, err)
		}
		return store.Run{}, err
	}
	run.Status = store.RunSucceeded
	if r.work != nil {
		if err := r.work(ctx, job, occ); err != nil {
			run.Status = store.RunFailed
			if ctx.Err() != nil {
				run.Status = store.RunInterrupted
			}
			run.ErrorSummary = err.Error()
		}
	}
	if err := r.st.FinishRun(context.WithoutCancel(ctx), &run); err != nil {
		return run, err
	}
	return run, nil
}

func (r *storeRunner) occurrences() []Occurrence {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Occurrence(nil), r.calls...)
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func testJob(name, schedule string) config.Job {
	return config.Job{Name: name, TenantID: "00000000-0000-0000-0000-00000000000a", Schedule: schedule}
}

func startScheduler(t *testing.T, opts Options, jobs ...config.Job) *Scheduler {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLog()
	}
	s := New(opts)
	if err := s.Start(context.Background(), jobs); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Stop(ctx)
	})
	return s
}

func stop(t *testing.T, s *Scheduler) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
}

type runRow struct {
	trigger, summary string
	status           store.RunStatus
	scheduledFor     time.Time
}

func runRows(t *testing.T, st *store.Store, job string) []runRow {
	t.Helper()
	rows, err := st.Pool().Query(context.Background(), `
SELECT trigger, status, coalesce(error_summary, ''), scheduled_for
  FROM entraprov.sync_runs WHERE job = $1 ORDER BY scheduled_for, id`, job)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []runRow
	for rows.Next() {
		var r runRow
		if err := rows.Scan(&r.trigger, &r.status, &r.summary, &r.scheduledFor); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestEverySecondJobRuns(t *testing.T) {
	t.Parallel()
	st := testdb.New(t)
	r := &storeRunner{st: st}
	results := make(chan Result, 16)
	s := startScheduler(t, Options{Runner: r, History: st, OnResult: func(res Result) { results <- res }},
		testJob("every-second", "@every 1s"))

	var got []Result
	timeout := time.After(15 * time.Second)
	for len(got) < 2 {
		select {
		case res := <-results:
			// A tick while a run lasted over a second (a loaded machine)
			// is skipped: not a run.
			if !res.Skipped {
				got = append(got, res)
			}
		case <-timeout:
			t.Fatalf("%d runs in 15s of an @every 1s job, want >= 2", len(got))
		}
	}
	stop(t, s)
	for _, res := range got {
		if res.Err != nil || res.Run.Status != store.RunSucceeded || res.Occurrence.Trigger != esync.TriggerSchedule {
			t.Errorf("result %+v: want a succeeded scheduled run", res)
		}
		if at := res.Occurrence.ScheduledFor; at.IsZero() || !at.Equal(at.Truncate(time.Second)) {
			t.Errorf("scheduled_for %v is not the activation second", at)
		}
		if !res.Next.After(res.Occurrence.ScheduledFor) {
			t.Errorf("next run %v not after %v", res.Next, res.Occurrence.ScheduledFor)
		}
	}
	rows := runRows(t, st, "every-second")
	if len(rows) < 2 {
		t.Fatalf("history rows = %d, want >= 2", len(rows))
	}
	for _, row := range rows {
		if row.trigger != string(esync.TriggerSchedule) {
			t.Errorf("trigger %q, want schedule", row.trigger)
		}
	}
}

// A run still in flight when its job fires again must not overlap itself:
// the new occurrence is skipped and the skip is in the history with why.
func TestOverlappingOccurrenceIsSkippedAndRecorded(t *testing.T) {
	t.Parallel()
	st := testdb.New(t)
	var first atomic.Bool
	r := &storeRunner{st: st, work: func(ctx context.Context, _ config.Job, _ Occurrence) error {
		if first.CompareAndSwap(false, true) {
			select { // the first run outlasts two more activations
			case <-time.After(2500 * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}}
	results := make(chan Result, 32)
	s := startScheduler(t, Options{Runner: r, History: st, OnResult: func(res Result) { results <- res }},
		testJob("slow", "@every 1s"))

	var nSkip, nDone int
	timeout := time.After(20 * time.Second)
	for nSkip < 1 || nDone < 2 {
		select {
		case res := <-results:
			if res.Skipped {
				nSkip++
				if res.Err != nil || res.Run.ID == 0 {
					t.Errorf("skip not recorded: %+v", res)
				}
				continue
			}
			nDone++
		case <-timeout:
			t.Fatalf("after 20s: %d skipped, %d runs; want a skip while the first 2.5s run lasted, then runs again", nSkip, nDone)
		}
	}
	stop(t, s)

	if m := r.maxSeen.Load(); m != 1 {
		t.Errorf("%d runs of one job at once in one process, want 1", m)
	}
	var nSkipped, nRun int
	for _, row := range runRows(t, st, "slow") {
		switch row.status {
		case store.RunSkipped:
			nSkipped++
			if row.summary == "" {
				t.Error("skipped row does not say why")
			}
		case store.RunSucceeded:
			nRun++
		case store.RunInterrupted: // the run in flight at Stop
		default:
			t.Errorf("unexpected status %q", row.status)
		}
	}
	if nSkipped < 1 || nRun < 2 {
		t.Errorf("history: %d skipped, %d succeeded; want >= 1 skipped and >= 2 runs", nSkipped, nRun)
	}
}

// Two workers (separate processes in production: separate pools and
// schedulers here) on one database run each occurrence exactly once.
func TestTwoSchedulersRunEachOccurrenceOnce(t *testing.T) {
	t.Parallel()
	url := testdb.NewURL(t)
	ctx := context.Background()
	var runners []*storeRunner
	var scheds []*Scheduler
	for range 2 {
		st := testdb.Open(t, url)
		// Work long enough that the loser sometimes finds the lock held
		// and sometimes finds the occurrence already recorded.
		r := &storeRunner{st: st, work: func(ctx context.Context, _ config.Job, _ Occurrence) error {
			time.Sleep(150 * time.Millisecond)
			return nil
		}}
		runners = append(runners, r)
	}
	// Both pools are open before either scheduler starts, so the two start
	// within the same second as a rule (the occurrences below do not rely
	// on it).
	for _, r := range runners {
		scheds = append(scheds, startScheduler(t, Options{Runner: r, History: r.st}, testJob("shared", "@every 1s")))
	}
	check := testdb.Open(t, url)
	// Skipped rows (a scheduler whose previous run was still going when
	// the job fired again) do not take an occurrence: only runs count.
	count := func() (occurrences, rows int) {
		t.Helper()
		if err := check.Pool().QueryRow(ctx, `
SELECT count(DISTINCT scheduled_for), count(*)
  FROM entraprov.sync_runs WHERE job = 'shared' AND status <> 'skipped'`).Scan(&occurrences, &rows); err != nil {
			t.Fatal(err)
		}
		return
	}
	// Poll rather than sleep a fixed time: a loaded CI machine is slow.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if n, _ := count(); n >= 5 {
			break
		}
	}
	// Stop both at once: each stops firing as its Stop begins.
	errs := make(chan error, len(scheds))
	for _, s := range scheds {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			errs <- s.Stop(ctx)
		}()
	}
	for range scheds {
		if err := <-errs; err != nil {
			t.Fatalf("Stop: %v", err)
		}
	}
	occurrences, rows := count()
	if occurrences < 5 {
		t.Fatalf("%d occurrences recorded in 30s of @every 1s, want >= 5", occurrences)
	}
	if rows != occurrences {
		t.Fatalf("%d history rows for %d occurrences: some occurrence ran twice", rows, occurrences)
	}
	// Both schedulers fired every occurrence: the losers must have tried.
	// The first and the last occurrence may have fired in one scheduler
	// only (it started, or stopped, a moment before the other); each one
	// between them was either tried by both runners or skipped by a
	// scheduler whose previous run was still going.
	answered := map[time.Time]int{} // runner calls and skips, by occurrence
	for _, r := range runners {
		for _, o := range r.occurrences() {
			answered[o.ScheduledFor.UTC()]++
		}
	}
	var ran []time.Time
	for _, row := range runRows(t, check, "shared") {
		switch {
		case row.status == store.RunSkipped:
			answered[row.scheduledFor.UTC()]++
		case len(ran) == 0 || !row.scheduledFor.Equal(ran[len(ran)-1]):
			ran = append(ran, row.scheduledFor)
		}
	}
	for _, at := range ran[1 : len(ran)-1] {
		if n := answered[at.UTC()]; n != 2 {
			t.Errorf("occurrence %v: %d runner calls and skips, want one from each scheduler", at, n)
		}
	}
}

// Stop cancels an in-flight run: it ends interrupted, and Stop returns once
// it has.
func TestStopInterruptsInFlightRun(t *testing.T) {
	t.Parallel()
	st := testdb.New(t)
	started := make(chan struct{})
	var once sync.Once
	r := &storeRunner{st: st, work: func(ctx context.Context, _ config.Job, _ Occurrence) error {
		once.Do(func() { close(started) })
		<-ctx.Done()
		time.Sleep(100 * time.Millisecond) // the in-flight batch finishing
		return ctx.Err()
	}}
	s := startScheduler(t, Options{Runner: r, History: st}, testJob("long", "@every 1s"))
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("run did not start")
	}
	// The run ends only when cancelled: Stop returning (before its 10 s
	// deadline) proves it cancelled the run.
	stop(t, s)
	if running := s.Running(); len(running) != 0 {
		t.Errorf("still running after Stop: %v", running)
	}
	// Ticks that came while the run went on (a loaded machine may take a
	// second to start it) are recorded skipped; they are not runs.
	runs := func() []runRow {
		var out []runRow
		for _, row := range runRows(t, st, "long") {
			if row.status != store.RunSkipped {
				out = append(out, row)
			}
		}
		return out
	}
	if rows := runs(); len(rows) != 1 || rows[0].status != store.RunInterrupted {
		t.Fatalf("history after stop: %+v; want one interrupted run", rows)
	}
	// No new occurrence starts after Stop.
	time.Sleep(1200 * time.Millisecond)
	if n := len(runs()); n != 1 {
		t.Errorf("%d runs after Stop, want 1", n)
	}
}

// Stop with a deadline shorter than the run's wind-down names the job.
func TestStopTimesOutNamingRunningJobs(t *testing.T) {
	t.Parallel()
	st := testdb.New(t)
	started := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	r := RunnerFunc(func(ctx context.Context, job config.Job, occ Occurrence) (store.Run, error) {
		once.Do(func() { close(started) })
		<-release // ignores cancellation: a stuck run
		return store.Run{}, nil
	})
	s := startScheduler(t, Options{Runner: r, History: st}, testJob("stuck", "@every 1s"))
	defer close(release)
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := s.Stop(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "stuck") {
		t.Fatalf("Stop = %v; want a deadline error naming job stuck", err)
	}
}

func TestCatchUpRunsTheMissedOccurrenceOnce(t *testing.T) {
	t.Parallel()
	st := testdb.New(t)
	ctx := context.Background()
	now := time.Now()
	// A daily time half a day away: no occurrence falls due while the test
	// runs (an hourly schedule did when the test ran across the hour).
	away := now.Add(12 * time.Hour)
	daily := fmt.Sprintf("%d %d * * *", away.Minute(), away.Hour())
	sched, err := Parse(daily)
	if err != nil {
		t.Fatal(err)
	}
	latest, ok := lastActivation(sched, now.Add(-48*time.Hour), now)
	if !ok {
		t.Fatalf("no activation of %q in two days", daily)
	}

	record := func(job string, at time.Time) {
		run := store.Run{Job: job, Trigger: string(esync.TriggerSchedule), Mode: string(esync.ModeApply), ScheduledFor: &at}
		if err := st.StartRun(ctx, &run); err != nil {
			t.Fatal(err)
		}
		run.Status = store.RunSucceeded
		if err := st.FinishRun(ctx, &run); err != nil {
			t.Fatal(err)
		}
	}
	record("missed", latest.AddDate(0, 0, -3)) // down for three occurrences
	record("uptodate", latest)                 // ran the latest one
	record("nocatchup", latest.AddDate(0, 0, -3))
	// "fresh" has no history: a new job has missed nothing.

	catchUp := func(name string) config.Job { j := testJob(name, daily); j.CatchUp = true; return j }
	r := &storeRunner{st: st}
	results := make(chan Result, 8)
	startScheduler(t, Options{Runner: r, History: st, OnResult: func(res Result) { results <- res }},
		catchUp("missed"), catchUp("uptodate"), catchUp("fresh"), testJob("nocatchup", daily))

	select {
	case res := <-results:
		if res.Job != "missed" || res.Occurrence.Trigger != esync.TriggerCatchUp || !res.Occurrence.ScheduledFor.Equal(latest) || res.Err != nil {
			t.Fatalf("catch-up result %+v; want job missed, trigger catchup, scheduled_for %v", res, latest)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no catch-up run")
	}
	select {
	case res := <-results:
		t.Fatalf("unexpected second run: %+v", res)
	case <-time.After(500 * time.Millisecond):
	}
	rows := runRows(t, st, "missed")
	if last := rows[len(rows)-1]; last.trigger != string(esync.TriggerCatchUp) || !last.scheduledFor.Equal(latest) {
		t.Errorf("last history row %+v; want the catch-up of %v", last, latest)
	}
}

// A reload whose new configuration is broken changes nothing: the old jobs
// keep their schedules and keep running.
func TestReloadWithBrokenScheduleKeepsOldJobs(t *testing.T) {
	t.Parallel()
	st := testdb.New(t)
	var runs atomic.Int32
	r := RunnerFunc(func(ctx context.Context, job config.Job, occ Occurrence) (store.Run, error) {
		runs.Add(1)
		return store.Run{Job: job.Name, Status: store.RunSucceeded}, nil
	})
	s := startScheduler(t, Options{Runner: r, History: st}, testJob("a", "@every 1s"), testJob("b", "0 2 * * *"))

	_, err := s.Reload(context.Background(), []config.Job{testJob("a", "@every 1s"), testJob("b", "0 25 * * *"), testJob("c", "@hourly")})
	if err == nil {
		t.Fatal("reload with hour 25 accepted")
	}
	status := s.Status()
	if len(status) != 2 || status[0].Name != "a" || status[1].Name != "b" || status[1].Schedule != "0 2 * * *" {
		t.Fatalf("jobs after a refused reload: %+v", status)
	}
	// Two more runs: the first may have fired before the reload.
	before := runs.Load()
	for deadline := time.Now().Add(10 * time.Second); runs.Load() < before+2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("job a ran %d times in 10s after a refused reload; want 2 (@every 1s)", runs.Load()-before)
		}
	}

	// A valid reload applies the diff.
	d, err := s.Reload(context.Background(), []config.Job{testJob("a", "@every 2s"), testJob("c", "@hourly")})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(d.Added) != "[c]" || fmt.Sprint(d.Removed) != "[b]" || fmt.Sprint(d.Changed) != "map[a:[schedule]]" {
		t.Errorf("diff = %+v", d)
	}
	names := []string{}
	for _, j := range s.Status() {
		names = append(names, j.Name+" "+j.Schedule)
	}
	if fmt.Sprint(names) != "[a @every 2s c @hourly]" {
		t.Errorf("jobs after reload: %v", names)
	}
}

func TestAliveReflectsLifecycle(t *testing.T) {
	t.Parallel()
	st := testdb.New(t)
	s := New(Options{Runner: &storeRunner{st: st}, History: st, Logger: quietLog()})
	ctx := context.Background()
	if s.Alive(ctx) == nil {
		t.Error("alive before Start")
	}
	if err := s.Start(ctx, []config.Job{testJob("a", "@hourly")}); err != nil {
		t.Fatal(err)
	}
	if err := s.Alive(ctx); err != nil {
		t.Errorf("not alive after Start: %v", err)
	}
	stop(t, s)
	if s.Alive(ctx) == nil {
		t.Error("alive after Stop")
	}
}

// Jitter delays the start, not the occurrence: scheduled_for stays the
// activation time, and the run starts once the delay drawn below the
// jitter (as logged) has passed. A stop during the jitter wait starts
// nothing.
func TestJitterDelaysStartNotOccurrence(t *testing.T) {
	t.Parallel()
	st := testdb.New(t)
	started := make(chan time.Time, 4)
	var occs []Occurrence
	var mu sync.Mutex
	r := RunnerFunc(func(ctx context.Context, job config.Job, occ Occurrence) (store.Run, error) {
		mu.Lock()
		occs = append(occs, occ)
		mu.Unlock()
		started <- time.Now()
		return store.Run{Job: job.Name, Status: store.RunSucceeded}, nil
	})
	job := testJob("jittery", "@every 2s")
	job.Jitter = config.Duration{Duration: 1500 * time.Millisecond}
	var logs lockedBuffer
	s := startScheduler(t, Options{Runner: r, History: st, Logger: slog.New(slog.NewTextHandler(&logs, nil))}, job)
	var at time.Time
	select {
	case at = <-started:
	case <-time.After(15 * time.Second):
		t.Fatal("no run")
	}
	stop(t, s)
	mu.Lock()
	occ := occs[0]
	mu.Unlock()
	if !occ.ScheduledFor.Equal(occ.ScheduledFor.Truncate(2 * time.Second)) {
		t.Errorf("scheduled_for %v is not an activation of @every 2s", occ.ScheduledFor)
	}
	// The job is busy from its first activation on (later ones are
	// skipped): the first delay logged is the first run's. It is logged
	// rounded to the millisecond.
	m := regexp.MustCompile(`msg="waiting for start jitter" .* delay=(\S+)`).FindStringSubmatch(logs.String())
	if m == nil {
		t.Fatalf("no jitter delay logged:\n%s", logs.String())
	}
	delay, err := time.ParseDuration(m[1])
	if err != nil || delay < 0 || delay > 1500*time.Millisecond {
		t.Fatalf("jitter delay %q (%v); want within the 1.5s jitter", m[1], err)
	}
	if d := at.Sub(occ.ScheduledFor); d < delay-time.Millisecond {
		t.Errorf("started %v after the activation; want after the %v jitter delay", d, delay)
	}

	// A scheduler stopped while waiting out a long jitter never starts the
	// run. (A delay drawn below the test's few seconds from 1,000 hours:
	// one chance in a million.)
	var calls atomic.Int32
	slow := testJob("late", "@every 1s")
	slow.Jitter = config.Duration{Duration: 1000 * time.Hour}
	var slowLogs lockedBuffer
	s2 := startScheduler(t, Options{Runner: RunnerFunc(func(ctx context.Context, job config.Job, occ Occurrence) (store.Run, error) {
		calls.Add(1)
		return store.Run{}, nil
	}), History: st, Logger: slog.New(slog.NewTextHandler(&slowLogs, nil))}, slow)
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(slowLogs.String(), `msg="waiting for start jitter"`); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no occurrence of an @every 1s job in 10s")
		}
	}
	stop(t, s2)
	if n := calls.Load(); n != 0 {
		t.Errorf("%d runs started during a 1,000-hour jitter", n)
	}
	if !strings.Contains(slowLogs.String(), "stopped during start jitter; run not started") {
		t.Errorf("the stop during the jitter wait is not logged:\n%s", slowLogs.String())
	}
}

// lockedBuffer is a log sink safe for the scheduler's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
