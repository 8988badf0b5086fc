package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/store"
	esync "github.com/entraprov/entraprov/internal/sync"
)

// Options configure a Scheduler. Runner and History are required.
type Options struct {
	Runner  Runner
	History History
	Logger  *slog.Logger
	// OnResult is called after every occurrence (run, skip or lost race),
	// from the goroutine that ran it. Use it for metrics and sd_notify
	// STATUS; it must not block for long.
	OnResult func(Result)
	// OnStart is called when a run of the job starts in this process.
	OnStart func(job string, occ Occurrence)
	// StopGrace is how long Stop lets in-flight runs finish on their own
	// before cancelling them. 0 (the default) cancels at once: the runs
	// finish their in-flight batch and end "interrupted".
	StopGrace time.Duration
	// Location is the time zone of specs without CRON_TZ= (default Local).
	Location *time.Location
	// Quarantine, with Policy.AfterFailures > 0, quarantines jobs whose
	// runs keep failing and skips their occurrences while they wait
	// (quarantine.go). nil: no quarantine.
	Quarantine QuarantineStore
	Policy     Policy
	// MaxConcurrent caps the runs in flight in this process (config
	// max_concurrent_jobs); 0: no cap. A due occurrence beyond the cap
	// waits in a queue and starts when a run ends, oldest scheduled time
	// first (queue.go).
	MaxConcurrent int
	// OnQueued is called with the number of queued occurrences each time
	// it changes, with the scheduler's lock held: it must only publish the
	// number (a gauge) and not call the scheduler.
	OnQueued func(queued int)
}

// Scheduler runs jobs on their schedules. Create it with New.
type Scheduler struct {
	opts Options
	log  *slog.Logger
	cron *cron.Cron

	// runCtx is the parent of every run; cancelRuns interrupts them (Stop).
	runCtx     context.Context
	cancelRuns context.CancelFunc
	wg         sync.WaitGroup // in-flight occurrences

	mu      sync.Mutex
	entries map[string]*entry // by job name
	// busy: the job has an occurrence here, waiting out its jitter,
	// queued or running; the job's next occurrences are skipped meanwhile.
	busy     map[string]bool
	queue    []*pending          // occurrences due but waiting for a run slot (queue.go)
	queued   map[string]*pending // queue by job name
	slots    int                 // runs holding a slot (started, not yet ended)
	limit    int                 // Options.MaxConcurrent, changed by SetMaxConcurrent
	started  bool
	stopping bool
}

type entry struct {
	job   config.Job
	sched cron.Schedule

	mu sync.Mutex
	id cron.EntryID
}

func (e *entry) entryID() cron.EntryID {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.id
}

// New returns a scheduler that is not started yet.
func New(opts Options) *Scheduler {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	loc := opts.Location
	if loc == nil {
		loc = time.Local
	}
	clog := cronLogger{log}
	s := &Scheduler{
		opts:    opts,
		log:     log,
		cron:    cron.New(cron.WithLocation(loc), cron.WithLogger(clog), cron.WithChain(cron.Recover(clog))),
		entries: map[string]*entry{},
		busy:    map[string]bool{},
		queued:  map[string]*pending{},
		limit:   opts.MaxConcurrent,
	}
	s.runCtx, s.cancelRuns = context.WithCancel(context.Background())
	return s
}

// Start validates the jobs' schedules, adds one cron entry per job, starts
// the catch-up runs of jobs that missed an occurrence (catch_up: true) and
// starts scheduling. ctx bounds the history queries of the catch-up check
// only; runs live until Stop.
func (s *Scheduler) Start(ctx context.Context, jobs []config.Job) error {
	if s.opts.Runner == nil || s.opts.History == nil {
		return errors.New("jobs: scheduler needs a Runner and a History")
	}
	parsed, err := parseJobs(jobs)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("jobs: scheduler already started")
	}
	s.started = true
	for _, e := range parsed {
		s.addLocked(e)
	}
	s.mu.Unlock()

	s.cron.Start()
	now := time.Now()
	for _, e := range parsed {
		s.log.Info("job scheduled", "job", e.job.Name, "schedule", e.job.Schedule,
			"next_run", e.sched.Next(now), "catch_up", e.job.CatchUp, "jitter", e.job.Jitter.Duration)
	}
	for _, e := range parsed {
		if e.job.CatchUp {
			s.catchUp(ctx, e)
		}
	}
	return nil
}

func parseJobs(jobs []config.Job) ([]*entry, error) {
	seen := map[string]bool{}
	var errs []error
	out := make([]*entry, 0, len(jobs))
	for _, j := range jobs {
		if j.Name == "" {
			errs = append(errs, errors.New("a job has no name"))
			continue
		}
		if seen[j.Name] {
			errs = append(errs, fmt.Errorf("job %q: defined twice", j.Name))
			continue
		}
		seen[j.Name] = true
		sched, err := Parse(j.Schedule)
		if err != nil {
			errs = append(errs, fmt.Errorf("job %q: %w", j.Name, err))
			continue
		}
		out = append(out, &entry{job: j, sched: sched})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	return out, nil
}

// addLocked registers e with cron. s.mu is held.
func (s *Scheduler) addLocked(e *entry) {
	e.mu.Lock()
	e.id = s.cron.Schedule(e.sched, cron.FuncJob(func() { s.fire(e) }))
	e.mu.Unlock()
	s.entries[e.job.Name] = e
}

// fire runs on cron's goroutine at each activation of e.
func (s *Scheduler) fire(e *entry) {
	// cron sets Entry.Prev to the activation time right after starting
	// this goroutine and before it serves Entry(); reading it here gives the
	// occurrence this call stands for, not the firing time (which is a few
	// milliseconds later, or much later after a suspend).
	at := s.cron.Entry(e.entryID()).Prev
	if at.IsZero() {
		at = time.Now().Truncate(time.Second)
	}
	s.launch(e, Occurrence{Trigger: esync.TriggerSchedule, ScheduledFor: at})
}

// catchUp starts a run for the latest occurrence missed since the job's last
// recorded scheduled run. A job never run on schedule has missed nothing.
func (s *Scheduler) catchUp(ctx context.Context, e *entry) {
	last, ok, err := s.opts.History.LastScheduledFor(ctx, e.job.Name)
	if err != nil {
		s.log.Warn("catch-up check failed; waiting for the next occurrence", "job", e.job.Name, "err", err)
		return
	}
	if !ok {
		s.log.Info("no scheduled run recorded yet; nothing to catch up", "job", e.job.Name)
		return
	}
	missed, ok := lastActivation(e.sched, last, time.Now())
	if !ok {
		return
	}
	s.log.Info("missed an occurrence while down; catching up", "job", e.job.Name,
		"scheduled_for", missed, "last_recorded", last)
	s.launch(e, Occurrence{Trigger: esync.TriggerCatchUp, ScheduledFor: missed})
}

// launch starts occ of e, or queues it when every run slot is taken,
// unless the job already has an occurrence here (waiting out its jitter,
// queued or running: then occ is recorded as skipped, so a job never runs
// twice at once nor piles up occurrences) or the scheduler is stopping. It
// returns without waiting for the run.
func (s *Scheduler) launch(e *entry, occ Occurrence) {
	job := e.job
	if reason, ok := s.quarantined(job.Name, occ); ok {
		s.skip(e, occ, reason)
		return
	}
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return
	}
	if p := s.queuedLocked(job.Name); p != nil {
		// Skipped too, but recorded only when the queued occurrence
		// starts (queue.go): should the worker stop first, both are
		// missed, and the job's last recorded occurrence must stay older
		// than them for catch_up to run the job at the next start.
		p.later = append(p.later, occ)
		s.mu.Unlock()
		s.log.Info("occurrence skipped: the job's previous occurrence is still queued for a run slot", "job", job.Name,
			"scheduled_for", occ.ScheduledFor, "queued_scheduled_for", p.occ.ScheduledFor)
		return
	}
	if s.busy[job.Name] {
		s.mu.Unlock()
		s.skip(e, occ, "the previous run of this job is still in progress in this process")
		return
	}
	s.busy[job.Name] = true
	s.wg.Add(1)
	s.mu.Unlock()
	if j := job.Jitter.Duration; j > 0 {
		// The jitter spreads the start; it holds no run slot.
		go func() {
			if s.jitter(e, occ, j) {
				s.admit(e, occ)
			}
		}()
		return
	}
	s.admit(e, occ)
}

// jitter waits a random delay below j; false (the occurrence released)
// when the scheduler stops meanwhile: the run never started, as if missed.
func (s *Scheduler) jitter(e *entry, occ Occurrence, j time.Duration) bool {
	log := s.log.With("job", e.job.Name, "trigger", occ.Trigger, "scheduled_for", occ.ScheduledFor)
	d := rand.N(j)
	log.Info("waiting for start jitter", "delay", d.Round(time.Millisecond))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.runCtx.Done():
		log.Info("stopped during start jitter; run not started")
		s.mu.Lock()
		s.releaseLocked(e.job.Name)
		s.mu.Unlock()
		return false
	}
}

// releaseLocked ends the job's occurrence here (run ended, or dropped
// before it started). s.mu is held.
func (s *Scheduler) releaseLocked(job string) {
	delete(s.busy, job)
	s.wg.Done()
}

// execute runs occ, which holds a run slot; queued is how long it waited
// for it, later the job's occurrences that fell due meanwhile (recorded as
// skipped now). When the run ends, the slot goes to the oldest queued
// occurrence.
func (s *Scheduler) execute(e *entry, occ Occurrence, queued time.Duration, later []Occurrence) {
	job := e.job
	defer s.endRun(job.Name)
	for _, o := range later {
		s.skip(e, o, fmt.Sprintf("the previous occurrence of this job (scheduled for %s) was still queued for a run slot (max_concurrent_jobs); it ran instead",
			occ.ScheduledFor.Format(time.RFC3339)))
	}
	log := s.log.With("job", job.Name, "trigger", occ.Trigger, "scheduled_for", occ.ScheduledFor)
	if s.opts.OnStart != nil {
		s.opts.OnStart(job.Name, occ)
	}
	if queued > 0 {
		log.Info("run starting", "queued_for", queued.Round(time.Millisecond))
	} else {
		log.Info("run starting")
	}
	started := time.Now()
	run, err := s.opts.Runner.Run(s.runCtx, job, occ)
	next := e.sched.Next(time.Now())
	res := Result{Job: job.Name, Occurrence: occ, Run: run, Err: err, Next: next, Queued: queued}
	switch {
	case errors.Is(err, ErrTaken):
		log.Info("occurrence handled by another worker; nothing recorded here", "next_run", next)
	case err != nil:
		log.Error("run failed", "run_id", run.ID, "status", run.Status, "err", err,
			"duration", time.Since(started).Round(time.Millisecond), "next_run", next)
	default:
		log.Info("run finished", "run_id", run.ID, "status", run.Status,
			"duration", time.Since(started).Round(time.Millisecond), "next_run", next)
	}
	if !errors.Is(err, ErrTaken) && run.ID != 0 && run.Mode == string(esync.ModeApply) && run.Status != store.RunRunning {
		res.Quarantine = s.afterRun(e, occ, run, log)
	}
	if s.opts.OnResult != nil {
		s.opts.OnResult(res)
	}
}

// skip records that occ was not run because the job is busy here.
func (s *Scheduler) skip(e *entry, occ Occurrence, reason string) {
	now := time.Now()
	at := occ.ScheduledFor
	run := store.Run{
		Job: e.job.Name, TenantID: e.job.TenantID, Trigger: string(occ.Trigger), Mode: string(esync.ModeApply),
		ScheduledFor: &at, StartedAt: now, FinishedAt: &now, Status: store.RunSkipped,
		ErrorSummary: reason, PID: os.Getpid(),
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.runCtx), 10*time.Second)
	defer cancel()
	err := s.opts.History.RecordSkipped(ctx, &run)
	next := e.sched.Next(now)
	log := s.log.With("job", e.job.Name, "trigger", occ.Trigger, "scheduled_for", at, "next_run", next)
	if err != nil {
		log.Error("occurrence skipped; recording the skip failed", "reason", reason, "err", err)
	} else {
		log.Warn("occurrence skipped", "run_id", run.ID, "reason", reason)
	}
	if s.opts.OnResult != nil {
		s.opts.OnResult(Result{Job: e.job.Name, Occurrence: occ, Run: run, Err: err, Skipped: true, Reason: reason, Next: next})
	}
}

// Diff is what a Reload changed, by job name.
type Diff struct {
	Added, Removed []string
	// Changed maps a job to the names of its changed settings (yaml keys).
	Changed   map[string][]string
	Unchanged int
}

// Empty reports whether the reload changed nothing.
func (d Diff) Empty() bool { return len(d.Added)+len(d.Removed)+len(d.Changed) == 0 }

// Reload replaces the job list. Every new schedule is validated first; on
// any error nothing changes and the old jobs keep running. A changed or
// removed job's in-flight run goes on (with its old settings) and the job
// still never overlaps itself. Added jobs with catch_up get their catch-up.
func (s *Scheduler) Reload(ctx context.Context, jobs []config.Job) (Diff, error) {
	parsed, err := parseJobs(jobs)
	if err != nil {
		s.log.Error("reload refused; keeping the current jobs", "err", err)
		return Diff{}, err
	}
	s.mu.Lock()
	if !s.started || s.stopping {
		s.mu.Unlock()
		return Diff{}, errors.New("jobs: reload of a scheduler that is not running")
	}
	d := Diff{Changed: map[string][]string{}}
	next := map[string]*entry{}
	var added []*entry
	for _, e := range parsed {
		next[e.job.Name] = e
		old, ok := s.entries[e.job.Name]
		switch {
		case !ok:
			d.Added = append(d.Added, e.job.Name)
			s.addLocked(e)
			added = append(added, e)
		case reflect.DeepEqual(old.job, e.job):
			d.Unchanged++
		default:
			d.Changed[e.job.Name] = changedKeys(old.job, e.job)
			s.cron.Remove(old.entryID())
			s.addLocked(e)
			// A queued occurrence has not started: it runs with the
			// new settings.
			if p := s.queuedLocked(e.job.Name); p != nil {
				p.e = e
			}
		}
	}
	for name, old := range s.entries {
		if _, ok := next[name]; !ok {
			d.Removed = append(d.Removed, name)
			s.cron.Remove(old.entryID())
			delete(s.entries, name)
			if p := s.dropQueuedLocked(name); p != nil {
				s.log.Info("job removed: its queued occurrence will not run", "job", name,
					"scheduled_for", p.occ.ScheduledFor, "queued_for", time.Since(p.since).Round(time.Millisecond))
			}
		}
	}
	s.mu.Unlock()
	sort.Strings(d.Added)
	sort.Strings(d.Removed)
	if len(d.Changed) == 0 {
		d.Changed = nil
	}
	s.log.Info("configuration reloaded", "added", d.Added, "removed", d.Removed,
		"changed", d.Changed, "unchanged", d.Unchanged)
	now := time.Now()
	for _, e := range parsed {
		if _, changed := d.Changed[e.job.Name]; changed || slices.Contains(d.Added, e.job.Name) {
			s.log.Info("job scheduled", "job", e.job.Name, "schedule", e.job.Schedule, "next_run", e.sched.Next(now))
		}
	}
	for _, e := range added {
		if e.job.CatchUp {
			s.catchUp(ctx, e)
		}
	}
	return d, nil
}

// changedKeys names the top-level settings (yaml keys) that differ. Values
// are not reported: they may name secret files or credentials.
func changedKeys(a, b config.Job) []string {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	t := va.Type()
	var keys []string
	for i := range t.NumField() {
		if reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			continue
		}
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name == "" {
			name = t.Field(i).Name
		}
		keys = append(keys, name)
	}
	return keys
}

// JobStatus is one job as the scheduler sees it now.
type JobStatus struct {
	Name     string
	Schedule string
	Next     time.Time
	Running  bool
	// Queued: an occurrence is due and waits for a run slot.
	Queued bool
}

// Status lists the scheduled jobs, soonest next run first.
func (s *Scheduler) Status() []JobStatus {
	now := time.Now()
	s.mu.Lock()
	out := make([]JobStatus, 0, len(s.entries))
	for name, e := range s.entries {
		queued := s.queuedLocked(name) != nil
		out = append(out, JobStatus{Name: name, Schedule: e.job.Schedule, Next: e.sched.Next(now),
			Running: s.busy[name] && !queued, Queued: queued})
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Next.Equal(out[j].Next) {
			return out[i].Next.Before(out[j].Next)
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Running names the jobs with a run in flight in this process (or waiting
// out its start jitter), not those queued for a run slot.
func (s *Scheduler) Running() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.busy))
	for name := range s.busy {
		if s.queuedLocked(name) == nil {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// Errors of Alive.
var (
	ErrNotStarted = errors.New("scheduler not started")
	ErrStopping   = errors.New("scheduler stopping")
)

// Alive reports an error unless the scheduler is started, not stopping, and
// its cron loop answers within ctx (for /healthz).
func (s *Scheduler) Alive(ctx context.Context) error {
	s.mu.Lock()
	started, stopping := s.started, s.stopping
	s.mu.Unlock()
	switch {
	case !started:
		return ErrNotStarted
	case stopping:
		return ErrStopping
	}
	done := make(chan struct{})
	go func() {
		s.cron.Entries() // served by cron's loop: proves it is not stuck
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("scheduler loop not answering: %w", ctx.Err())
	}
}

// Stop stops scheduling, lets in-flight runs finish on their own for
// Options.StopGrace, then cancels them (each finishes its in-flight batch
// and records itself interrupted) and waits for them until ctx ends. On
// timeout it returns an error naming the jobs still running.
func (s *Scheduler) Stop(ctx context.Context) error {
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return nil
	}
	s.stopping = true
	dropped := s.drainLocked()
	s.mu.Unlock()
	s.cron.Stop()
	for _, p := range dropped {
		// As for an occurrence missed while the worker was down, nothing
		// is recorded: with catch_up the next start runs the latest
		// missed occurrence (the job's last recorded one is older).
		s.log.Warn("stopping: queued occurrence never started; it counts as missed", "job", p.e.job.Name,
			"scheduled_for", p.occ.ScheduledFor, "queued_for", time.Since(p.since).Round(time.Millisecond),
			"later_occurrences", len(p.later), "catch_up", p.e.job.CatchUp)
	}

	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	if running := s.Running(); len(running) > 0 {
		s.log.Info("stopping: runs in progress", "jobs", running, "grace", s.opts.StopGrace)
	}
	if g := s.opts.StopGrace; g > 0 {
		t := time.NewTimer(g)
		select {
		case <-done:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	s.cancelRuns()
	select {
	case <-done:
		s.log.Info("scheduler stopped")
		return nil
	case <-ctx.Done():
		running := s.Running()
		return fmt.Errorf("jobs: stop: runs still in progress for %s: %w", strings.Join(running, ", "), ctx.Err())
	}
}

// cronLogger sends robfig/cron's chatter to slog at debug level and its
// errors (a recovered panic) at error level.
type cronLogger struct{ log *slog.Logger }

func (l cronLogger) Info(msg string, kv ...any) {
	l.log.Debug("cron: "+msg, kv...)
}

func (l cronLogger) Error(err error, msg string, kv ...any) {
	l.log.Error("cron: "+msg, append(kv, "err", err)...)
}
