package jobs

import (
	"context"
	"fmt"
	"slices"
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

// The queue tests do not wait for cron: the jobs' schedules never fire
// during a test (once a year) and the test hands the scheduler its due
// occurrences itself (due), as cron's tick does. Each run holds its slot
// until the test opens the job's gate, so what runs when is decided by the
// test, not by timing.

// never is a schedule that does not fire while a test runs.
const never = "0 0 1 1 *"

// gates lets a test decide when each run (one per job) ends.
type gates struct {
	mu      sync.Mutex
	ch      map[string]chan struct{}
	started chan string // job names, as their runs start
	seen    map[string]config.Job
}

func newGates() *gates {
	return &gates{ch: map[string]chan struct{}{}, started: make(chan string, 256), seen: map[string]config.Job{}}
}

func (g *gates) gate(job string) chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	c, ok := g.ch[job]
	if !ok {
		c = make(chan struct{})
		g.ch[job] = c
	}
	return c
}

func (g *gates) open(job string) { close(g.gate(job)) }

// work is a storeRunner's work: say the run started, hold the slot until
// the gate opens or the run is cancelled.
func (g *gates) work(ctx context.Context, job config.Job, _ Occurrence) error {
	g.mu.Lock()
	g.seen[job.Name] = job
	g.mu.Unlock()
	g.started <- job.Name
	select {
	case <-g.gate(job.Name):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// next is the next run to start; it fails the test if none starts.
func (g *gates) next(t *testing.T) string {
	t.Helper()
	select {
	case name := <-g.started:
		return name
	case <-time.After(10 * time.Second):
		t.Fatal("no run started")
		return ""
	}
}

// none waits until exactly running runs hold a slot (the runs whose gate
// opened have ended) and checks that no run started that the test did not
// receive: every start is decided when a slot is taken, so once the slot
// count settles, a start not reported yet would show as an extra slot.
func (g *gates) none(t *testing.T, s *Scheduler, running int) {
	t.Helper()
	waitSlots(t, s, running)
	select {
	case name := <-g.started:
		t.Fatalf("run of %s started; want none", name)
	default:
	}
}

// waitSlots waits until exactly n runs hold a slot. A run frees its slot
// (and its job) only after OnResult returned, so a test that saw a result
// waits here before it hands the job its next occurrence, or stops the
// scheduler.
func waitSlots(t testing.TB, s *Scheduler, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		slots := s.slots
		s.mu.Unlock()
		if slots == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d run slots held, want %d", slots, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// due hands s an occurrence of job scheduled for at, as cron's tick does.
func due(s *Scheduler, job string, at time.Time) {
	s.mu.Lock()
	e := s.entries[job]
	s.mu.Unlock()
	s.launch(e, Occurrence{Trigger: esync.TriggerSchedule, ScheduledFor: at})
}

// gauge records what OnQueued published.
type gauge struct{ last, peak atomic.Int32 }

func (g *gauge) set(n int) {
	g.last.Store(int32(n))
	if int32(n) > g.peak.Load() {
		g.peak.Store(int32(n))
	}
}

func jobsNamed(names ...string) []config.Job {
	out := make([]config.Job, len(names))
	for i, n := range names {
		out[i] = testJob(n, never)
	}
	return out
}

// With max_concurrent_jobs N, never more than N runs are in flight (counted
// by the runner itself); the first N due start at once, and each slot that
// frees goes to the oldest due occurrence, ties by job name.
func TestRunCapHoldsAndOldestDueStartsFirst(t *testing.T) {
	t.Parallel()
	st := testdb.New(t)
	base := time.Date(2026, 11, 30, 2, 0, 0, 0, time.UTC)
	at := func(min int) time.Time { return base.Add(time.Duration(min) * time.Minute) }
	type occ struct {
		job string
		at  time.Time
	}
	for _, tt := range []struct {
		name  string
		cap   int
		due   []occ    // in the order they fall due here
		first []string // start at once (any order)
		then  []string // start one by one as the earliest run ends
	}{
		{"cap 3 of 8: oldest due next", 3,
			[]occ{{"a", at(5)}, {"b", at(5)}, {"c", at(5)}, {"d", at(9)}, {"e", at(7)}, {"f", at(1)}, {"g", at(7)}, {"h", at(3)}},
			[]string{"a", "b", "c"}, []string{"f", "h", "e", "g", "d"}},
		{"cap 1 serialises; ties by job name", 1,
			[]occ{{"z", at(0)}, {"y", at(2)}, {"x", at(2)}, {"w", at(2)}, {"v", at(1)}},
			[]string{"z"}, []string{"v", "w", "x", "y"}},
		{"cap above the jobs: all at once", 12,
			[]occ{{"a", at(0)}, {"b", at(1)}, {"c", at(2)}},
			[]string{"a", "b", "c"}, nil},
		{"no cap (0): all at once", 0,
			[]occ{{"a", at(0)}, {"b", at(1)}, {"c", at(2)}, {"d", at(3)}},
			[]string{"a", "b", "c", "d"}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := newGates()
			var q gauge
			r := &storeRunner{st: st, work: g.work}
			var names []string
			for _, o := range tt.due {
				names = append(names, o.job)
			}
			// Job names are unique per subtest: they share the database.
			prefix := strings.ReplaceAll(tt.name[:5], " ", "") + "-"
			jobs := jobsNamed(names...)
			for i := range jobs {
				jobs[i].Name = prefix + jobs[i].Name
			}
			s := startScheduler(t, Options{Runner: r, History: st, MaxConcurrent: tt.cap, OnQueued: q.set}, jobs...)
			for _, o := range tt.due {
				due(s, prefix+o.job, o.at)
			}
			var first []string
			for range tt.first {
				first = append(first, strings.TrimPrefix(g.next(t), prefix))
			}
			slices.Sort(first)
			if fmt.Sprint(first) != fmt.Sprint(tt.first) {
				t.Fatalf("started at once: %v, want %v", first, tt.first)
			}
			g.none(t, s, len(tt.first))
			if n := s.Queued(); n != len(tt.then) {
				t.Fatalf("%d queued, want %d", n, len(tt.then))
			}
			// End the runs in the order they started: each end starts
			// exactly one queued occurrence, the oldest due.
			ending := append([]string(nil), tt.first...)
			var then []string
			for len(then) < len(tt.then) {
				g.open(prefix + ending[0])
				ending = ending[1:]
				name := strings.TrimPrefix(g.next(t), prefix)
				then = append(then, name)
				ending = append(ending, name)
			}
			if fmt.Sprint(then) != fmt.Sprint(tt.then) {
				t.Errorf("queued occurrences started in the order %v, want %v (oldest due first, then job name)", then, tt.then)
			}
			for _, name := range ending {
				g.open(prefix + name)
			}
			// Stop only once every run has ended: a run whose gate and
			// cancellation are both ready may take either, and would be
			// recorded interrupted.
			g.none(t, s, 0)
			stop(t, s)
			if m, want := int(r.maxSeen.Load()), len(tt.first); m != want {
				t.Errorf("at most %d runs in flight at once, want %d", m, want)
			}
			if p, l := int(q.peak.Load()), q.last.Load(); p != len(tt.then) || l != 0 {
				t.Errorf("queued gauge peaked at %d and ended at %d; want %d and 0", p, l, len(tt.then))
			}
			// Each ran once, as its own occurrence.
			for _, o := range tt.due {
				rows := runRows(t, st, prefix+o.job)
				if len(rows) != 1 || rows[0].status != store.RunSucceeded || !rows[0].scheduledFor.Equal(o.at) {
					t.Errorf("job %s history %+v; want one succeeded run scheduled for %v", o.job, rows, o.at)
				}
			}
		})
	}
}

// A later tick of a job whose occurrence is queued is skipped (and the skip
// recorded when the queued occurrence starts, as when its run is still in
// progress); the queued occurrence then runs once, as itself.
func TestQueuedOccurrenceIsNotDuplicatedByLaterTicks(t *testing.T) {
	t.Parallel()
	st := testdb.New(t)
	g := newGates()
	r := &storeRunner{st: st, work: g.work}
	s := startScheduler(t, Options{Runner: r, History: st, MaxConcurrent: 1}, jobsNamed("dup-a", "dup-b")...)
	t1 := time.Date(2026, 11, 30, 2, 0, 0, 0, time.UTC)
	t2, t3 := t1.Add(time.Hour), t1.Add(2*time.Hour)

	due(s, "dup-a", t1)
	if g.next(t) != "dup-a" {
		t.Fatal("dup-a did not start")
	}
	due(s, "dup-b", t1) // queued behind dup-a
	due(s, "dup-b", t2) // later ticks while it waits
	due(s, "dup-b", t3)
	due(s, "dup-a", t2) // and one of the running job
	g.none(t, s, 1)
	if n := s.Queued(); n != 1 {
		t.Fatalf("%d queued, want dup-b's first occurrence only", n)
	}
	if st := s.Status(); !st[1].Queued || st[1].Running || !st[0].Running {
		t.Errorf("status %+v; want dup-a running, dup-b queued", st)
	}
	g.open("dup-a")
	if g.next(t) != "dup-b" {
		t.Fatal("dup-b did not start after dup-a")
	}
	g.open("dup-b")
	g.none(t, s, 0)
	stop(t, s)

	var calls []time.Time
	for _, o := range r.occurrences() {
		calls = append(calls, o.ScheduledFor)
	}
	if fmt.Sprint(calls) != fmt.Sprint([]time.Time{t1, t1}) {
		t.Errorf("runner called for %v; want dup-a and dup-b once each, for %v", calls, t1)
	}
	rows := runRows(t, st, "dup-b")
	if len(rows) != 3 || rows[0].status != store.RunSucceeded || !rows[0].scheduledFor.Equal(t1) {
		t.Fatalf("dup-b history %+v; want the run of %v, then two skips", rows, t1)
	}
	for _, row := range rows[1:] {
		if row.status != store.RunSkipped || !strings.Contains(row.summary, "was still queued for a run slot (max_concurrent_jobs); it ran instead") {
			t.Errorf("later tick recorded as %+v; want skipped because the previous occurrence is queued", row)
		}
	}
	if rows := runRows(t, st, "dup-a"); len(rows) != 2 || rows[1].status != store.RunSkipped || !strings.Contains(rows[1].summary, "still in progress") {
		t.Errorf("dup-a history %+v; want its run and a skip of the tick that came while it ran", rows)
	}
}

// A queued occurrence that never started when the worker stops is recorded
// nowhere, nor are the ticks that came while it waited, like occurrences
// missed while the worker was down: the next start's catch-up runs it.
func TestQueuedOccurrenceAtStopIsCaughtUpAtNextStart(t *testing.T) {
	t.Parallel()
	st := testdb.New(t)
	ctx := context.Background()
	sched, _ := Parse(never)
	now := time.Now()
	latest, ok := lastActivation(sched, now.AddDate(-2, 0, 0), now)
	if !ok {
		t.Fatal("no activation of the yearly schedule in two years")
	}
	// stop-b ran its previous occurrence.
	prev := latest.AddDate(-1, 0, 0)
	run := store.Run{Job: "stop-b", Trigger: string(esync.TriggerSchedule), Mode: string(esync.ModeApply), ScheduledFor: &prev}
	if err := st.StartRun(ctx, &run); err != nil {
		t.Fatal(err)
	}
	run.Status = store.RunSucceeded
	if err := st.FinishRun(ctx, &run); err != nil {
		t.Fatal(err)
	}

	g := newGates()
	r := &storeRunner{st: st, work: g.work}
	// No catch-up in this first process: its start would run the
	// occurrence at once.
	s := startScheduler(t, Options{Runner: r, History: st, MaxConcurrent: 1}, jobsNamed("stop-a", "stop-b")...)
	due(s, "stop-a", latest)
	if g.next(t) != "stop-a" {
		t.Fatal("stop-a did not start")
	}
	due(s, "stop-b", latest)
	due(s, "stop-b", latest.Add(time.Hour)) // a tick while it waits
	g.none(t, s, 1)
	stop(t, s) // SIGTERM: stop-a is interrupted, stop-b never started
	if rows := runRows(t, st, "stop-a"); len(rows) != 1 || rows[0].status != store.RunInterrupted {
		t.Errorf("stop-a history %+v; want its run interrupted", rows)
	}
	if rows := runRows(t, st, "stop-b"); len(rows) != 1 {
		t.Fatalf("stop-b history %+v; want only its previous run: the queued occurrence and the tick while it waited record nothing", rows)
	}
	if n := s.Queued(); n != 0 {
		t.Errorf("%d still queued after Stop", n)
	}

	// The next start catches it up, as the occurrence it was.
	results := make(chan Result, 4)
	close(g.gate("stop-b"))
	b := testJob("stop-b", never)
	b.CatchUp = true
	startScheduler(t, Options{Runner: r, History: st, MaxConcurrent: 1, OnResult: func(res Result) { results <- res }}, b)
	select {
	case res := <-results:
		if res.Job != "stop-b" || res.Occurrence.Trigger != esync.TriggerCatchUp || !res.Occurrence.ScheduledFor.Equal(latest) || res.Err != nil {
			t.Fatalf("result %+v; want stop-b caught up for %v", res, latest)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the queued occurrence was not caught up at the next start")
	}
}

// A reload that removes a job drops its queued occurrence (it never runs);
// one that changes a job runs its queued occurrence with the new settings;
// a job it adds queues like the others, by its due time.
func TestReloadDropsRemovedJobsQueuedOccurrence(t *testing.T) {
	t.Parallel()
	st := testdb.New(t)
	g := newGates()
	var q gauge
	r := &storeRunner{st: st, work: g.work}
	s := startScheduler(t, Options{Runner: r, History: st, MaxConcurrent: 1, OnQueued: q.set},
		jobsNamed("rl-a", "rl-b", "rl-c")...)
	at := time.Date(2026, 11, 30, 2, 0, 0, 0, time.UTC)
	due(s, "rl-a", at)
	g.next(t)
	due(s, "rl-b", at)
	due(s, "rl-c", at)
	if n := q.last.Load(); n != 2 {
		t.Fatalf("queued gauge %d, want 2", n)
	}

	changed := testJob("rl-c", never)
	changed.Source = "hr.contractors"
	d, err := s.Reload(context.Background(), []config.Job{testJob("rl-a", never), changed, testJob("rl-d", never)})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(d.Removed) != "[rl-b]" || fmt.Sprint(d.Added) != "[rl-d]" {
		t.Fatalf("diff %+v; want rl-b removed", d)
	}
	if n, l := s.Queued(), q.last.Load(); n != 1 || l != 1 {
		t.Fatalf("%d queued (gauge %d) after removing rl-b, want 1", n, l)
	}
	due(s, "rl-d", at.Add(-time.Minute)) // the added job, due before rl-c
	g.open("rl-a")
	if name := g.next(t); name != "rl-d" {
		t.Fatalf("%s started after rl-a; want the added rl-d (due first; rl-b was removed)", name)
	}
	g.open("rl-d")
	if name := g.next(t); name != "rl-c" {
		t.Fatalf("%s started after rl-d; want rl-c", name)
	}
	g.open("rl-c")
	g.none(t, s, 0)
	stop(t, s)
	if rows := runRows(t, st, "rl-b"); len(rows) != 0 {
		t.Errorf("removed job rl-b ran: %+v", rows)
	}
	g.mu.Lock()
	src := g.seen["rl-c"].Source
	g.mu.Unlock()
	if src != "hr.contractors" {
		t.Errorf("rl-c ran with source %q; want the reloaded hr.contractors", src)
	}
	// A job added back under the removed name is free to run again.
	if running := s.Running(); len(running) != 0 {
		t.Errorf("still busy after stop: %v", running)
	}
}

// Raising the cap (a reload of max_concurrent_jobs) starts queued
// occurrences at once; lowering it starts none until the runs fit.
func TestSetMaxConcurrentAppliesToTheQueue(t *testing.T) {
	t.Parallel()
	st := testdb.New(t)
	g := newGates()
	r := &storeRunner{st: st, work: g.work}
	s := startScheduler(t, Options{Runner: r, History: st, MaxConcurrent: 1}, jobsNamed("set-a", "set-b", "set-c", "set-d")...)
	at := time.Date(2026, 11, 30, 2, 0, 0, 0, time.UTC)
	for i, name := range []string{"set-a", "set-b", "set-c", "set-d"} {
		due(s, name, at.Add(time.Duration(i)*time.Minute))
	}
	g.next(t)
	s.SetMaxConcurrent(3)
	got := []string{g.next(t), g.next(t)}
	slices.Sort(got)
	if fmt.Sprint(got) != "[set-b set-c]" {
		t.Fatalf("raising the cap to 3 started %v; want set-b and set-c", got)
	}
	g.none(t, s, 3)
	s.SetMaxConcurrent(1)
	g.open("set-a")
	g.open("set-b")
	g.none(t, s, 1) // set-c still runs: the cap of 1 is full
	g.open("set-c")
	if name := g.next(t); name != "set-d" {
		t.Fatalf("%s started; want set-d", name)
	}
	g.open("set-d")
	g.none(t, s, 0)
	stop(t, s)
	if m := r.maxSeen.Load(); m != 3 {
		t.Errorf("at most %d in flight, want 3", m)
	}
}
