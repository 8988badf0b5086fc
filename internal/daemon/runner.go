package daemon

import (
	"context"
	"fmt"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/jobs"
	"github.com/entraprov/entraprov/internal/store"
	esync "github.com/entraprov/entraprov/internal/sync"
)

// EngineRunner is the jobs.Runner the worker schedules: the reconcile
// engine in apply mode.
func EngineRunner(e *esync.Engine) jobs.Runner { return engineRunner{e} }

// engineRunner adapts esync.Engine to jobs.Runner: scheduled runs apply,
// and a run that lost its occurrence to another worker (the engine answers
// "skipped" without recording a row) becomes jobs.ErrTaken.
type engineRunner struct{ e *esync.Engine }

func (r engineRunner) Run(ctx context.Context, job config.Job, occ jobs.Occurrence) (store.Run, error) {
	opts := esync.RunOptions{Trigger: occ.Trigger, Mode: esync.ModeApply}
	if !occ.ScheduledFor.IsZero() {
		at := occ.ScheduledFor
		opts.ScheduledFor = &at
	}
	run, err := r.e.Run(ctx, job, opts)
	if err == nil && run.Status == store.RunSkipped && run.ID == 0 {
		return run, fmt.Errorf("job %s: %s: %w", job.Name, run.ErrorSummary, jobs.ErrTaken)
	}
	return run, err
}
