package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/directory"
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

// secretExpiryReader is a runner that can tell when a job's client secret
// expires. The daemon asks only runners that implement it: the engine's
// reads the app registration through the job's Graph client, a test's fake
// runner (which talks to no Graph) is not asked.
type secretExpiryReader interface {
	SecretExpiry(ctx context.Context, job config.Job) (time.Time, error)
}

// SecretExpiry reads the app registration's latest client secret end date
// (zero: none with an end date) with the engine's Graph client for job.
func (r engineRunner) SecretExpiry(ctx context.Context, job config.Job) (time.Time, error) {
	if r.e.Connect == nil {
		return time.Time{}, errors.New("no Graph connection configured")
	}
	d, err := r.e.Connect(ctx, job)
	if err != nil {
		return time.Time{}, err
	}
	c, ok := d.(interface {
		AppCredentials(context.Context) (directory.AppCredentials, error)
	})
	if !ok {
		return time.Time{}, errors.New("the Graph client cannot read the app registration")
	}
	creds, err := c.AppCredentials(ctx)
	if err != nil {
		return time.Time{}, err
	}
	end, _ := creds.LatestSecretEnd()
	return end, nil
}
