// Package jobs runs the configured provisioning jobs on their cron schedules
// (robfig/cron/v3) inside the worker daemon.
//
// It owns when a job runs: one cron entry per job, optional start jitter,
// no overlap of a job inside one process (the occurrence is skipped and the
// skip recorded), a cap on the runs in flight at once with a queue served
// oldest-due first (queue.go), catch-up of a missed occurrence at start-up,
// reload of the job list (SIGHUP), a bounded, cancelling stop (SIGTERM), and the
// quarantine of a job whose runs keep failing (quarantine.go: its
// occurrences are skipped while a doubling wait passes). It must not
// know how a run works: a Runner does the run and owns the cross-process
// guarantees (the job's advisory lock and the unique (job, scheduled_for)
// row in sync_runs), reporting a lost race as ErrTaken.
//
//	s := jobs.New(jobs.Options{Runner: runner, History: st, Logger: log})
//	if err := s.Start(ctx, cfg.Jobs); err != nil { ... }
//	<-ctx.Done()
//	stopCtx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
//	defer cancel()
//	_ = s.Stop(stopCtx) // cancels in-flight runs; they end "interrupted"
package jobs

import (
	"context"
	"errors"
	"time"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/store"
	esync "github.com/entraprov/entraprov/internal/sync"
)

// ErrTaken is returned (wrapped) by a Runner when another process holds the
// job's lock or already recorded this occurrence: the run lost the race and
// recorded nothing. The scheduler logs it at debug level and moves on.
var ErrTaken = errors.New("occurrence taken by another worker")

// Occurrence says why a run starts.
type Occurrence struct {
	Trigger esync.Trigger // esync.TriggerSchedule | TriggerCatchUp | TriggerManual
	// ScheduledFor is the cron activation time this run serves (unique per
	// job in sync_runs); zero for a manual run.
	ScheduledFor time.Time
}

// Runner performs one run of a job and returns the finished sync_runs row.
// It must stop promptly when ctx is cancelled (finishing the in-flight
// batch and recording the run as interrupted) and wrap ErrTaken when the
// occurrence belongs to another process.
type Runner interface {
	Run(ctx context.Context, job config.Job, occ Occurrence) (store.Run, error)
}

// RunnerFunc adapts a function to Runner.
type RunnerFunc func(ctx context.Context, job config.Job, occ Occurrence) (store.Run, error)

// Run calls f.
func (f RunnerFunc) Run(ctx context.Context, job config.Job, occ Occurrence) (store.Run, error) {
	return f(ctx, job, occ)
}

// History is what the scheduler reads and writes in the run history
// (implemented by *store.Store).
type History interface {
	// RecordSkipped records an occurrence that was not run as a sync_runs
	// row with status skipped and the reason in its error summary. A skip
	// does not take the occurrence (another process may still run it).
	RecordSkipped(ctx context.Context, run *store.Run) error
	// LastScheduledFor is the latest scheduled_for recorded for job, any
	// status; ok is false when the job never had a scheduled run.
	LastScheduledFor(ctx context.Context, job string) (t time.Time, ok bool, err error)
}

// Result is what the scheduler reports after each occurrence (OnResult).
type Result struct {
	Job        string
	Occurrence Occurrence
	// Run is the finished run (Runner's answer, or the skipped row).
	Run store.Run
	// Err is the Runner's error; errors.Is(Err, ErrTaken) means another
	// process handled the occurrence.
	Err error
	// Skipped is true when this process skipped the occurrence because the
	// job was still running; Reason says so.
	Skipped bool
	Reason  string
	// Next is the job's next scheduled time after this occurrence.
	Next time.Time
	// Quarantine is the job's quarantine state after a run of it ended
	// here; nil when no quarantine check ran (no run, a skip, quarantine
	// off, or the check failed).
	Quarantine *QuarantineDecision
	// Queued is how long the occurrence waited for a run slot
	// (max_concurrent_jobs) before it started; 0 when it started at once.
	Queued time.Duration
}
