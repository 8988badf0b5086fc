package sync

import (
	"context"
	"errors"
	"time"

	"github.com/entraprov/entraprov/internal/store"
)

// underLease executes the run while a watchdog checks its job lease every
// second. If the lease is lost (the lock's session died, or another worker
// took the job), the run's context is cancelled with the loss as its cause:
// the executor dispatches no further batch, and the store refuses the run's
// writes once the new holder's fence is in place (store.Fenced).
//
// When the previous holder never released the job, it may be a run that
// lost its lock and is still stopping: wait until any such run has seen the
// loss and stopped sending before this one can send, so that two workers
// never write for the same job at the same time.
func (e *Engine) underLease(ctx context.Context, lease *store.Lease, r *runner) error {
	wctx, stop := lease.Watch(ctx)
	defer func() { r.lost = stop() }()
	if lease.TookOver && r.opts.Mode == ModeApply {
		r.log.WarnContext(ctx, "the job's previous run did not release it; waiting until it has surely stopped writing",
			"wait", store.LeaseTakeoverGrace.String(), "fence", lease.Fence)
		select {
		case <-wctx.Done():
			return context.Cause(wctx)
		case <-time.After(store.LeaseTakeoverGrace):
		}
	}
	return r.execute(wctx)
}

// lockLost returns why the run stopped if it stopped because it lost its
// job lease: the watchdog saw the loss, or a write was refused by a newer
// holder's fence first. A run that failed for another reason first (a
// database that went away ends the lock's session too) is judged by that
// error, and one that completed before the loss was seen by what it did.
func (r *runner) lockLost(runErr error) error {
	switch {
	case runErr == nil:
		return nil
	case r.lost != nil && (errors.Is(runErr, store.ErrJobLockLost) || errors.Is(runErr, context.Canceled)):
		return r.lost
	case errors.Is(runErr, store.ErrJobLockLost):
		return runErr
	}
	return nil
}
