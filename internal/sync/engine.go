package sync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	gosync "sync"
	"time"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/profile"
	"github.com/entraprov/entraprov/internal/store"
)

// Source reads a job's desired users joined with its links and mirror.
type Source interface {
	CheckSource(ctx context.Context, relation string) error
	SchemaSource
	StreamSource(ctx context.Context, job, relation string, fn func(store.SourceRow) error) error
}

// History holds the job lock and records runs and operations.
type History interface {
	// LeaseJob takes the job's lock and a new fence (lease.go).
	LeaseJob(ctx context.Context, job string) (lease *store.Lease, ok bool, err error)
	MarkInterrupted(ctx context.Context, job string) (int, error)
	StartRun(ctx context.Context, r *store.Run) error
	FinishRun(ctx context.Context, r *store.Run) error
	RecordOperations(ctx context.Context, ops []store.Operation) error
	CompleteOperations(ctx context.Context, ops []store.Operation) error
	// GetRun and ListOperations read the plan of a blocked run that
	// --approve applies (approve.go).
	GetRun(ctx context.Context, id int64) (store.Run, error)
	ListOperations(ctx context.Context, runID int64, status store.OpStatus) ([]store.Operation, error)
}

// State is what a job keeps between runs: links, the directory mirror and
// the job state (delta link).
type State interface {
	UpsertLinks(ctx context.Context, links []store.Link) error
	UpsertDirectoryUsers(ctx context.Context, job string, users []store.DirectoryUser) error
	DeleteDirectoryUsers(ctx context.Context, job string, objectIDs []string) error
	ResetMirror(ctx context.Context, job string) error
	GetJobState(ctx context.Context, job string) (store.JobState, error)
	SaveJobState(ctx context.Context, st store.JobState) error
	// LinkedObjectsNotInMirror lists linked objects a full read did not
	// return (soft-deleted or purged).
	LinkedObjectsNotInMirror(ctx context.Context, job string) ([]string, error)
	// CountLinks counts the job's links by state: the managed users the
	// change budget's percent bounds refer to.
	CountLinks(ctx context.Context, job string) (map[store.LinkState]int, error)
	// OtherOwner names another job's link to an object (the owner a
	// refused claim lost to).
	OtherOwner(ctx context.Context, job, objectID string) (owner, externalID string, err error)
}

// Backoff holds the per-user back-off rows (backoff.go). It is a required
// part of Store: a store without it would silently stop backing users off.
type Backoff interface {
	UserBackoffs(ctx context.Context, job string) ([]store.UserBackoff, error)
	SaveUserBackoffs(ctx context.Context, bs []store.UserBackoff) error
	DeleteUserBackoffs(ctx context.Context, job string, externalIDs []string) error
}

// Store is everything the engine needs from Postgres (*store.Store).
type Store interface {
	Source
	History
	State
	Backoff
	// ExportSnapshot exports a snapshot the source reads of a run share
	// (approve.go).
	ExportSnapshot(ctx context.Context) (id string, release func(), err error)
	// RekeyLink moves a link to a new external_id (rekey.go).
	RekeyLink(ctx context.Context, job, from, to string) error
}

// Directory is what the engine needs from Graph (*directory.Client).
type Directory interface {
	Execute(ctx context.Context, ops <-chan directory.Operation, results chan<- directory.Result) directory.Stats
	Delta(ctx context.Context, deltaLink string, onReset func(context.Context) error, fn func(directory.User) error) (string, bool, error)
	FindUsers(ctx context.Context, upn, employeeID string) ([]directory.User, error)
	// DeletedUsers returns those of ids found in deleted items (restorable).
	DeletedUsers(ctx context.Context, ids []string) ([]directory.User, error)
	// Stats is the client's cumulative traffic, so that a run counts its
	// delta reads and lookups too, not only its batches.
	Stats() directory.Stats
}

// ConsentRecorder is a Directory that signed in and records what its
// sign-in found (the roles granted) once told which permissions the job
// needs (the worker's client: internal/tenants records tenant_consent for
// `worker tenants`). A run tells it once it has read its source, since what
// a job needs depends on the attributes it owns and whether it manages
// group memberships (directory.RequiredPermissions). Recording never fails
// the run: a missing role is recorded, and Graph's 403 then says which
// request needed it.
type ConsentRecorder interface {
	RecordConsent(ctx context.Context, required []string)
}

// Trigger says why a run started (sync_runs.trigger). This package owns
// the names; the scheduler (internal/jobs) uses them.
type Trigger string

// Run triggers.
const (
	TriggerSchedule Trigger = "schedule"
	TriggerCatchUp  Trigger = "catchup"
	TriggerManual   Trigger = "manual"
	TriggerStartup  Trigger = "startup"
)

// Mode says whether a run applies its plan or only records it
// (sync_runs.mode).
type Mode string

// Run modes.
const (
	ModeApply Mode = "apply"
	ModePlan  Mode = "plan"
)

// RunOptions say why and how a run happens.
type RunOptions struct {
	Trigger Trigger // default TriggerManual
	Mode    Mode    // default ModeApply
	// ScheduledFor is the cron occurrence served (nil for manual runs); two
	// workers never both run the same occurrence.
	ScheduledFor *time.Time
	// AllowDeletes lifts the disable and delete bounds of the job's change
	// budget for this run, without a reviewed plan (kept for scripts; it is
	// logged as a warning and recorded on the run). Prefer Approve.
	AllowDeletes bool
	// Approve is the id of a blocked run of the job whose stored plan an
	// operator reviewed: its destructive changes are applied whatever the
	// budget, provided this run's plan holds no destructive change that
	// plan did not (otherwise the run is blocked, listing what changed).
	Approve int64
	// RetryStuck tries every user the per-user back-off leaves alone
	// (backoff.go), whatever its next attempt time.
	RetryStuck bool
	// User, when set, restricts the run to the user of this external_id
	// (provision on demand, trace.go): the rest of the job is neither
	// planned nor sent. Such a run still holds the job lease, is recorded
	// like any other (its counts are that one user's), tries the user
	// whatever its back-off, and is never blocked or withheld by the change
	// budget (one user is not a mass event), nor does it change the job's
	// health (job_state's last success and failure count, quarantine).
	// A user neither in the source nor linked is ErrUnknownUser, before
	// any run is recorded.
	User string
	// Trace, if set, is told each step of the run's path for its users
	// (trace.go); it is meant for one-user runs. It is called from the
	// run's goroutines one event at a time and must not block.
	Trace func(TraceEvent)
}

// Progress is a snapshot of a running run for a progress line.
type Progress struct {
	RunID   int64
	Pass    int  // 1, or 2 for deferred manager/group steps
	Rows    int  // source rows planned so far in this pass
	Planned int  // operations to send so far in this pass
	Done    int  // operations with a final result in this pass
	Failed  int  // of Done, failed
	Final   bool // the pass has planned every row: Planned is the total
	Elapsed time.Duration
}

// Engine runs jobs. Its zero value is not usable: set Store and Connect.
type Engine struct {
	Store Store
	// Connect builds the Graph client of a job (directory.New in the worker).
	Connect func(ctx context.Context, job config.Job) (Directory, error)
	Logger  *slog.Logger
	// Now is the clock (time.Now by default); the planner gets one reading
	// per run.
	Now func() time.Time
	// Progress, if set, is called about twice a second during the apply
	// passes and once at the end of each; it must not block.
	Progress func(Progress)
	// FlushSize bounds how many operations are recorded (and links
	// written) per database round trip; default config.DefaultFlushSize.
	FlushSize int
	// FlushInterval bounds how long a finished result waits before its
	// history row and link are written; default
	// config.DefaultFlushInterval.
	FlushInterval time.Duration
}

func (e *Engine) logger() *slog.Logger {
	if e.Logger != nil {
		return e.Logger
	}
	return slog.Default()
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

// dbTimeout bounds the database writes that close a run after its context
// was cancelled (SIGTERM): they must still happen, but not hang.
const dbTimeout = 30 * time.Second

// finalBackoff is the wait before each retry of a run's closing writes:
// about 6 s in all, enough for a restarted PostgreSQL to accept
// connections again, short enough not to hold a stopping worker.
var finalBackoff = []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond,
	800 * time.Millisecond, 1600 * time.Millisecond, 3200 * time.Millisecond}

// retryFinal runs one of the writes that close a run (FinishRun, which also
// settles the run's pending operations, and the job state), retrying it
// after a short backoff. When the database restarted mid-run, the pool's
// connections are dead and the first attempts fail on them; each failed
// attempt drops its connection, so a retry gets a fresh one. Without this
// the run row would read "running" until the next run marks it
// interrupted. The writes are idempotent; ctx must outlive the run's
// cancellation.
func (e *Engine) retryFinal(ctx context.Context, log *slog.Logger, what string, write func(context.Context) error) error {
	var err error
	for i := 0; ; i++ {
		if err = write(ctx); err == nil || errors.Is(err, store.ErrNotFound) || i == len(finalBackoff) {
			return err
		}
		log.WarnContext(ctx, "closing write of the run failed; retrying", "write", what, "attempt", i+1, "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(finalBackoff[i]):
		}
	}
}

// Run performs one run of job: lock, record, refresh the mirror, plan every
// user, check the change budget, apply, and record the outcome. The
// returned run is final; its Status says how it went (skipped when another
// worker holds the job). The error is non-nil when the run could not be
// recorded or did not complete (failed, interrupted); a blocked or partial
// run is not an error.
func (e *Engine) Run(ctx context.Context, job config.Job, opts RunOptions) (store.Run, error) {
	phases := newPhaseTimer()
	opts, err := e.runOptions(ctx, job, opts)
	if err != nil {
		return store.Run{}, err
	}
	log := e.logger().With("job", job.Name)
	if opts.User != "" {
		log = log.With("user", opts.User)
	}
	// Building the Graph client costs CPU, not requests (the token is
	// fetched by the first call): build it while the run is recorded.
	connect := e.connectAhead(ctx, job)
	// Before taking the lock: stale runs are those whose lock nobody holds.
	if n, err := e.Store.MarkInterrupted(ctx, job.Name); err != nil {
		return store.Run{}, fmt.Errorf("run job %s: %w", job.Name, err)
	} else if n > 0 {
		log.WarnContext(ctx, "marked runs of a dead worker interrupted", "runs", n)
	}
	lease, ok, err := e.Store.LeaseJob(ctx, job.Name)
	if err != nil {
		return store.Run{}, fmt.Errorf("run job %s: %w", job.Name, err)
	}
	if !ok {
		log.InfoContext(ctx, "job is running elsewhere; skipping")
		return store.Run{Job: job.Name, Trigger: string(opts.Trigger), Mode: string(opts.Mode), ScheduledFor: opts.ScheduledFor,
			Status: store.RunSkipped, ErrorSummary: "another worker is running this job"}, nil
	}
	defer lease.Release()
	ctx = store.Fenced(ctx, lease) // every write of the run holds the job's fence

	run := &store.Run{Job: job.Name, TenantID: job.TenantID, Trigger: string(opts.Trigger), Mode: string(opts.Mode),
		ScheduledFor: opts.ScheduledFor}
	if err := e.Store.StartRun(ctx, run); err != nil {
		if errors.Is(err, store.ErrOccurrenceTaken) {
			log.InfoContext(ctx, "occurrence already run by another worker; skipping", "scheduled_for", opts.ScheduledFor)
			run.Status = store.RunSkipped
			run.ErrorSummary = "occurrence already run"
			return *run, nil
		}
		return store.Run{}, fmt.Errorf("run job %s: %w", job.Name, err)
	}
	log = log.With("run_id", run.ID, "mode", opts.Mode)
	log.InfoContext(ctx, "run started", "trigger", opts.Trigger)
	phases.mark("started")

	r := &runner{e: e, job: job, opts: opts, run: run, log: log, policy: PolicyFor(job), now: e.now(),
		wctx: context.WithoutCancel(ctx), phases: phases, connect: connect}
	if opts.Trace != nil {
		started := *run // the run as recorded; it changes as it goes
		r.trace(TraceEvent{Kind: TraceRun, Run: &started})
	}
	// The run's overall deadline stops it like a cancellation (in-flight
	// batches get their grace, the history is written, status interrupted)
	// whatever Graph or a proxy does: answers that trickle in, throttling
	// that never ends. The cause tells the operator which key to raise.
	limit := runDeadline(job)
	rctx, cancelRun := context.WithTimeoutCause(ctx, limit, &DeadlineError{Job: job.Name, Limit: limit})
	runErr := e.underLease(rctx, lease, r)
	r.finish(rctx, runErr)
	cancelRun()

	return e.closeRun(ctx, r)
}

// connectAhead starts building the Graph client of job and returns the
// function that waits for it.
func (e *Engine) connectAhead(ctx context.Context, job config.Job) func() (Directory, error) {
	ready := make(chan struct{})
	var dir Directory
	var err error
	go func() {
		defer close(ready)
		dir, err = e.Connect(ctx, job)
	}()
	return func() (Directory, error) {
		<-ready
		return dir, err
	}
}

// runOptions applies the defaults of opts and refuses what a one-user run
// cannot take; an unknown user is refused before anything is recorded.
func (e *Engine) runOptions(ctx context.Context, job config.Job, opts RunOptions) (RunOptions, error) {
	if opts.Trigger == "" {
		opts.Trigger = TriggerManual
	}
	if opts.Mode == "" {
		opts.Mode = ModeApply
	}
	if opts.User != "" {
		if opts.Approve != 0 || opts.AllowDeletes {
			return opts, fmt.Errorf("run job %s for user %s: a one-user run is never held by the change budget, so it takes neither an approval nor --allow-deletes", job.Name, opts.User)
		}
		opts.RetryStuck = true // the operator asks for this user now
		if err := e.checkUser(ctx, job, opts.User); err != nil {
			return opts, fmt.Errorf("run job %s: %w", job.Name, err)
		}
	}
	return opts, nil
}

// closeRun writes the final run row and job state (even after a
// cancellation), logs the run's one summary line and returns the run with
// its error.
func (e *Engine) closeRun(ctx context.Context, r *runner) (store.Run, error) {
	run, job, log := r.run, r.job, r.log
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dbTimeout)
	defer cancel()
	closing := r.phases.time("close")
	if err := e.retryFinal(fctx, log, "finish run", func(ctx context.Context) error { return e.Store.FinishRun(ctx, run) }); err != nil {
		return *run, fmt.Errorf("run %d of job %s: %w", run.ID, job.Name, err)
	}
	if err := e.retryFinal(fctx, log, "save job state", r.saveOutcome); err != nil {
		log.WarnContext(ctx, "could not update job state", "err", err)
	}
	closing()
	dur := time.Duration(0)
	if run.FinishedAt != nil {
		dur = run.FinishedAt.Sub(run.StartedAt)
	}
	log.InfoContext(ctx, "run finished", "status", run.Status, "duration", dur.Round(time.Millisecond).String(),
		"counts", run.Counts.Map(), "requests", run.Stats.Requests, "batches", run.Stats.Batches,
		"throttled", run.Stats.Throttled, "retried", run.Stats.Retried, "error", run.ErrorSummary, r.phases.attr())
	switch run.Status {
	case store.RunFailed, store.RunInterrupted:
		return *run, &RunError{RunID: run.ID, Job: job.Name, Status: run.Status, Summary: run.ErrorSummary, Err: r.cause}
	}
	return *run, nil
}

// RunError is the error of a run that failed or was interrupted. Its text
// is the run's summary; it wraps the cause, so a caller can tell a
// cancellation (errors.Is(err, context.Canceled)), the run's deadline or
// a lost job lease (store.ErrJobLockLost) from a failure.
type RunError struct {
	RunID   int64
	Job     string
	Status  store.RunStatus
	Summary string
	Err     error // nil when the run failed without one (every operation refused)
}

func (e *RunError) Error() string {
	return fmt.Sprintf("run %d of job %s %s: %s", e.RunID, e.Job, e.Status, e.Summary)
}

func (e *RunError) Unwrap() error { return e.Err }

// DeadlineError is the cause of a run stopped by its job's
// max_run_duration. It matches context.DeadlineExceeded.
type DeadlineError struct {
	Job   string
	Limit time.Duration
}

func (e *DeadlineError) Error() string {
	return fmt.Sprintf("the run's deadline passed: it ran for jobs[%s].max_run_duration (%s); what was sent is recorded and the next run resumes, but raise max_run_duration if runs of this job legitimately take longer",
		e.Job, e.Limit)
}

func (e *DeadlineError) Unwrap() error { return context.DeadlineExceeded }

// runDeadline is the job's max_run_duration; a Job built in code without
// one (config validation refuses less than a minute) gets the default,
// so no run is unbounded.
func runDeadline(job config.Job) time.Duration {
	if d := job.MaxRunDuration.Duration; d > 0 {
		return d
	}
	return config.DefaultJob().MaxRunDuration.Duration
}

// runner is the state of one run.
type runner struct {
	e      *Engine
	job    config.Job
	opts   RunOptions
	run    *store.Run
	log    *slog.Logger
	policy Policy
	now    time.Time
	// wctx outlives cancellation: the history of what happened is written
	// even while the run is being stopped.
	wctx context.Context
	// phases times the parts of the run for its summary line.
	phases *phaseTimer
	// mirrorFresh says the last apply pass's follower read every write of
	// the pass back into the mirror (follow.go).
	mirrorFresh bool
	// connect waits for the run's Graph client (connectAhead).
	connect func() (Directory, error)

	// lost is why the run's job lease was lost (ErrJobLockLost), if it was.
	lost error
	// cause is what failed or interrupted the run (finish), wrapped by
	// the RunError that Run returns.
	cause error

	dir       Directory
	budget    *budget         // the change budget of the apply passes (apply mode)
	baseStats directory.Stats // the client's traffic before the run

	traceMu gosync.Mutex // serialises opts.Trace

	mu           gosync.Mutex // guards the counters below and run.Counts
	seq          int64
	blocked      string // threshold message when blocked
	writes       int    // operations that reached a final success
	failures     int    // operations that ended failed
	graphFails   int    // of failures, answered or lost by Graph (not validation)
	firstFailure string
}

// count changes the run's counts under the runner's lock.
func (r *runner) count(f func(c *store.RunCounts)) {
	r.mu.Lock()
	f(&r.run.Counts)
	r.mu.Unlock()
}

func (r *runner) countStatus(s store.OpStatus, n int) {
	r.count(func(c *store.RunCounts) { c.AddStatus(s, n) })
}

func (r *runner) countAction(a Action) {
	r.count(func(c *store.RunCounts) { c.AddAction(string(a), 1) })
}

// execute does the work; its error is the reason a run failed or stopped.
func (r *runner) execute(ctx context.Context) error {
	done := r.phases.time("connect")
	dir, err := r.connect()
	done()
	if err != nil {
		return fmt.Errorf("connect to Graph: %w", err)
	}
	r.dir = dir
	r.baseStats = dir.Stats()
	// The job owns the attributes its source has columns for (a schema-7
	// one only when a row fills it): the mirror reads, the stream reads
	// and the planner compares only those, decided here once for the whole
	// run (every pass).
	done = r.phases.time("check_source")
	ctx, facts, err := JobSchema(ctx, r.e.Store, r.job)
	done()
	if err != nil {
		return err
	}
	schema := facts.Schema
	r.policy.Schema = schema
	if c, ok := dir.(ConsentRecorder); ok {
		// Only now is it known what the job needs of its tenant: the
		// sign-in's roles are judged against the same requirement as
		// `worker check`'s.
		c.RecordConsent(ctx, directory.RequiredPermissions(schema, facts.Groups))
	}
	if cols := schema.Unfilled(); len(cols) > 0 {
		// After an upgrade (migration 007 added the columns to
		// desired_users), or a join that broke and emptied a column that
		// was filled: say why those attributes are not cleared.
		r.log.InfoContext(ctx, "source columns present but NULL in every row: not managed until filled (never read, written or cleared)",
			"columns", strings.Join(cols, ", "))
	}
	done = r.phases.time("mirror")
	err = r.refreshMirror(ctx)
	done()
	if err != nil {
		return err
	}
	if r.opts.Mode == ModePlan {
		return r.recordPlan(ctx, store.OpPlanned)
	}
	// The planning read, the stored plan and pass 1 read one snapshot of
	// the source where it is a table or view (not of a volatile function
	// or a foreign table: the budget in the apply pass is what holds then).
	sctx, release := r.shareSnapshot(ctx)
	defer release()
	if r.opts.User != "" {
		// One user: no mass event to guard against, and its change must
		// not spend or trip the budget meant for one.
		r.budget = unbounded(r.job.Budget)
		deferred, err := r.apply(sctx, 1, nil)
		release()
		if err != nil {
			return err
		}
		return r.afterPass1(ctx, deferred)
	}
	if err := r.startBudget(ctx); err != nil {
		return err
	}
	done = r.phases.time("budget_plan")
	msg, err := r.checkBudget(sctx)
	done()
	if err != nil {
		return err
	}
	if msg != "" {
		r.blocked = msg
		return r.recordPlan(sctx, store.OpPlanned)
	}
	deferred, err := r.apply(sctx, 1, nil)
	release()
	if err != nil {
		return err
	}
	return r.afterPass1(ctx, deferred)
}

// afterPass1 sends the deferred steps (pass 2), notes what the budget
// withheld, and reads the run's own writes back into the mirror.
func (r *runner) afterPass1(ctx context.Context, deferred map[string]struct{}) error {
	if len(deferred) > 0 {
		// Pass 2 plans against the directory as pass 1 left it (which
		// pass 1's follower may have read already).
		if !r.mirrorFresh {
			done := r.phases.time("mirror_pass2")
			err := r.refreshMirror(ctx)
			done()
			if err != nil {
				return err
			}
		}
		if _, err := r.apply(ctx, 2, deferred); err != nil {
			return err
		}
	}
	if len(r.budget.withheld) > 0 {
		r.blocked = r.budget.stoppedMessage(r.job.Name, r.run.ID)
	}
	if r.writes > 0 && !r.mirrorFresh {
		// Read our own changes now, so the next run's delta carries only
		// what others changed: a quiet night costs one request (the last
		// pass's follower did, unless mirrorFresh is false).
		done := r.phases.time("mirror_after")
		err := r.refreshMirror(ctx)
		done()
		if err != nil {
			return err
		}
	}
	return nil
}

// finish sets the run's final status, counts, stats and summary.
func (r *runner) finish(ctx context.Context, runErr error) {
	run := r.run
	if r.dir != nil {
		st := r.dir.Stats()
		run.Stats = store.RunStats{
			Requests:  int(st.Requests - r.baseStats.Requests),
			Batches:   int(st.Batches - r.baseStats.Batches),
			Throttled: int(st.Throttled - r.baseStats.Throttled),
			Retried:   int(st.Retried - r.baseStats.Retried),
		}
	}
	lost := r.lockLost(runErr)
	switch {
	case lost != nil:
		run.Status = store.RunInterrupted
		run.ErrorSummary = "interrupted: " + lost.Error()
		r.cause = lost
	case ctx.Err() != nil:
		run.Status = store.RunInterrupted
		run.ErrorSummary = "interrupted: " + context.Cause(ctx).Error()
		r.cause = context.Cause(ctx)
	case runErr != nil:
		run.Status = store.RunFailed
		run.ErrorSummary = runErr.Error()
		r.cause = runErr
	case r.blocked != "":
		run.Status = store.RunBlocked
		run.ErrorSummary = r.blocked
	case r.failures > 0 && r.writes == 0 && r.graphFails > 0 && r.graphFails == r.failures:
		// Every request Graph saw was refused: a systemic problem
		// (permissions, throttling) rather than a few bad users.
		run.Status = store.RunFailed
		run.ErrorSummary = fmt.Sprintf("all %d operations failed; first: %s", r.failures, r.firstFailure)
	case r.failures > 0:
		run.Status = store.RunPartial
		run.ErrorSummary = fmt.Sprintf("%d operations failed; first: %s", r.failures, r.firstFailure)
	case r.opts.Mode == ModeApply && run.Counts.BackingOff > 0:
		// A failure that will recur identically is not a success: the run
		// says the job is not converged (issue 19), without counting as a
		// failed run for quarantine (nothing was sent and refused).
		run.Status = store.RunPartial
		run.ErrorSummary = fmt.Sprintf("%d users left alone after repeated identical failures (backing off); "+
			"list them with `worker show --stuck --job %s`", run.Counts.BackingOff, r.job.Name)
	default:
		run.Status = store.RunSucceeded
	}
	if runErr != nil && run.Status == store.RunInterrupted && lost == nil && !errors.Is(runErr, context.Canceled) && !errors.Is(runErr, context.DeadlineExceeded) {
		run.ErrorSummary += "; " + runErr.Error()
	}
}

// saveOutcome updates job_state after the run row is final.
func (r *runner) saveOutcome(ctx context.Context) error {
	st, err := r.e.Store.GetJobState(ctx, r.job.Name)
	if err != nil {
		return err
	}
	if r.opts.Mode == ModePlan || r.opts.User != "" {
		// A dry run says nothing about the job's health, and neither does
		// one user's.
		return nil
	}
	st.LastRunID = r.run.ID
	switch r.run.Status {
	case store.RunSucceeded, store.RunPartial:
		t := r.now
		if r.run.FinishedAt != nil {
			t = *r.run.FinishedAt
		}
		st.LastSuccessAt = &t
		st.ConsecutiveFailures = 0
	case store.RunFailed:
		st.ConsecutiveFailures++
	}
	return r.e.Store.SaveJobState(ctx, st)
}

func (r *runner) noteFailure(externalID, msg string, graph bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failures++
	if graph {
		r.graphFails++
	} else {
		// Failed before any request (a bad row, a UPN an unmanaged user
		// holds): quarantine judges a job by what Graph refused, so one
		// HR typo cannot hold back every other user's changes.
		r.run.Counts.FailedUnsent++
	}
	if r.firstFailure == "" {
		r.firstFailure = externalID + ": " + msg
	}
}

// refreshMirror brings the job's directory mirror up to date through delta
// and stores the new delta link. The first run (or an expired link, or a
// link from before delta selected the manager) reads the whole tenant
// after emptying the mirror; a full read is followed by a look into deleted
// items for the linked objects it did not return.
func (r *runner) refreshMirror(ctx context.Context) error {
	st, err := r.e.Store.GetJobState(ctx, r.job.Name)
	if err != nil {
		return err
	}
	pending := map[string]directory.User{}
	flush := func() error { return r.writeMirror(ctx, pending) }
	n := 0
	link, full, err := r.dir.Delta(ctx, st.DeltaLink,
		func(ctx context.Context) error {
			clear(pending)
			return r.e.Store.ResetMirror(ctx, r.job.Name)
		},
		func(u directory.User) error {
			n++
			pending[u.ObjectID] = u // a user may appear twice: the last one wins
			if len(pending) >= 1000 {
				return flush()
			}
			return nil
		})
	if err != nil {
		return fmt.Errorf("refresh the directory mirror: %w", err)
	}
	if err := flush(); err != nil {
		return fmt.Errorf("refresh the directory mirror: %w", err)
	}
	if full {
		if err := r.findDeleted(ctx); err != nil {
			return fmt.Errorf("refresh the directory mirror: %w", err)
		}
	}
	st.DeltaLink = link
	if err := r.e.Store.SaveJobState(ctx, st); err != nil {
		return err
	}
	r.log.DebugContext(ctx, "directory mirror refreshed", "users", n, "full", full)
	return nil
}

// writeMirror writes delta items into the mirror (a deleted one is removed)
// and empties pending.
func (r *runner) writeMirror(ctx context.Context, pending map[string]directory.User) error {
	var ups []store.DirectoryUser
	var dels []string
	for id, u := range pending {
		if u.Purged {
			dels = append(dels, id)
			continue
		}
		ups = append(ups, MirrorUser(u))
	}
	clear(pending)
	if err := r.e.Store.UpsertDirectoryUsers(ctx, r.job.Name, ups); err != nil {
		return err
	}
	return r.e.Store.DeleteDirectoryUsers(ctx, r.job.Name, dels)
}

// findDeleted puts the linked users a full read left out, because they are
// soft-deleted, into the mirror as deleted: the planner then restores a
// wanted one instead of creating it again (a new object, a second
// account), and a leaver's link is marked deleted. Objects not in deleted
// items are purged: their rows stay absent (the planner creates again).
// It costs one read per missing link, only after a full read.
func (r *runner) findDeleted(ctx context.Context) error {
	ids, err := r.e.Store.LinkedObjectsNotInMirror(ctx, r.job.Name)
	if err != nil || len(ids) == 0 {
		return err
	}
	users, err := r.dir.DeletedUsers(ctx, ids)
	if err != nil {
		return err
	}
	rows := make([]store.DirectoryUser, 0, len(users))
	for _, u := range users {
		m := MirrorUser(u)
		m.Deleted = true
		rows = append(rows, m)
	}
	r.log.InfoContext(ctx, "linked users missing from the full read", "missing", len(ids), "in_deleted_items", len(users))
	return r.e.Store.UpsertDirectoryUsers(ctx, r.job.Name, rows)
}

// MirrorUser is a directory user in the shape the planner compares (a row
// of the job's mirror). internal/audit uses it on live reads too, so the
// audit and a run judge a user alike.
func MirrorUser(u directory.User) store.DirectoryUser { return u }

// SchemaSource learns from a job's source what the job owns and manages
// (store.Store.InspectSource).
type SchemaSource interface {
	InspectSource(ctx context.Context, job, relation string, base *profile.Schema) (store.SourceFacts, error)
}

// JobSchema discovers what job owns and manages: the attributes (its
// config's attribute set restricted to its source's columns, an
// OwnedWhenFilled one only when a source row fills it; checking the source
// contract) and whether it manages group memberships. It returns ctx
// carrying the schema for the store and the directory client. It reads the
// source once (an aggregate), so a caller computes it once per run.
func JobSchema(ctx context.Context, src SchemaSource, job config.Job) (context.Context, store.SourceFacts, error) {
	base, err := job.Profile()
	if err != nil {
		return ctx, store.SourceFacts{}, err
	}
	facts, err := src.InspectSource(ctx, job.Name, job.Source, base)
	if err != nil {
		return ctx, store.SourceFacts{}, fmt.Errorf("source %s: %w", job.Source, err)
	}
	return profile.WithSchema(ctx, facts.Schema), facts, nil
}
