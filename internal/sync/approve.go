package sync

import (
	"context"
	"errors"
	"fmt"

	"github.com/entraprov/entraprov/internal/store"
)

// shareSnapshot exports a snapshot of the database for the reads of the
// source that must agree (the budget's planning read, the stored plan and
// pass 1) and returns a context carrying it. A table truncated and
// reloaded between them, or rows deleted by an ETL mid-run, then cannot
// make pass 1 see a different source from the one the budget judged.
// Volatile functions and foreign tables escape any snapshot: the budget in
// the apply pass covers them. Without a snapshot (none exported, or the
// export failed) the run goes on as before, with a warning. release is
// idempotent; the snapshot stays usable until it is called.
func (r *runner) shareSnapshot(ctx context.Context) (context.Context, func()) {
	id, release, err := r.e.Store.ExportSnapshot(ctx)
	if err != nil {
		r.log.WarnContext(ctx, "could not export a snapshot for the source reads; each pass reads the source afresh (the change budget still bounds what is sent)", "err", err)
		return ctx, func() {}
	}
	return store.WithSnapshot(ctx, id), release
}

// startBudget sets up the change budget of the apply passes: the managed
// users the percent bounds refer to (counted from the links, not from a
// read of the source that may be the faulty one), the bounds lifted by
// --allow-deletes and the plan approved by --approve.
func (r *runner) startBudget(ctx context.Context) error {
	counts, err := r.e.Store.CountLinks(ctx, r.job.Name)
	if err != nil {
		return fmt.Errorf("change budget: %w", err)
	}
	managed := counts[store.LinkActive] + counts[store.LinkDisabled]
	b := newBudget(r.job.Budget, managed)
	if r.opts.AllowDeletes {
		b.lifted[KindDisable], b.lifted[KindDelete] = true, true
		r.count(func(c *store.RunCounts) { c.AllowDeletes = 1 })
		r.log.WarnContext(ctx, "--allow-deletes: the change budget's disable and delete bounds are lifted for this run, without a reviewed plan; "+
			"prefer `worker sync --approve RUN` (it applies only the plan an operator reviewed)", "job", r.job.Name)
	}
	if r.opts.Approve != 0 {
		reviewed, err := r.reviewedPlan(ctx, r.opts.Approve)
		if err != nil {
			return err
		}
		b.approved = reviewed
		r.count(func(c *store.RunCounts) { c.ApprovedRun = int(r.opts.Approve) })
		r.log.InfoContext(ctx, "applying the reviewed plan of a blocked run, if the plan has not grown since", "approved_run", r.opts.Approve)
	}
	r.budget = b
	return nil
}

// ErrNotApprovable is returned (wrapped) when --approve names a run that is
// not a blocked apply run of the job.
var ErrNotApprovable = errors.New("not an approvable run")

// CheckApprovable says whether run (read with GetRun) may be approved for
// job: a blocked apply run of that job.
func CheckApprovable(run store.Run, job string) error {
	switch {
	case run.Job != job:
		return fmt.Errorf("run %d is of job %s, not %s: %w", run.ID, run.Job, job, ErrNotApprovable)
	case run.Mode != string(ModeApply) || run.Status != store.RunBlocked:
		return fmt.Errorf("run %d is a %s run that ended %s; only a blocked run has a plan to approve (worker history --job %s --status blocked): %w",
			run.ID, run.Mode, run.Status, job, ErrNotApprovable)
	}
	return nil
}

// reviewedPlan reads the destructive changes a blocked run recorded as
// planned: the plan the operator approves.
func (r *runner) reviewedPlan(ctx context.Context, id int64) (destructiveSet, error) {
	run, err := r.e.Store.GetRun(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("--approve %d: %w", id, err)
	}
	if err := CheckApprovable(run, r.job.Name); err != nil {
		return nil, fmt.Errorf("--approve %d: %w", id, err)
	}
	ops, err := r.e.Store.ListOperations(ctx, id, store.OpPlanned)
	if err != nil {
		return nil, fmt.Errorf("--approve %d: %w", id, err)
	}
	set := destructiveSet{}
	for _, o := range ops {
		for _, k := range DestructiveKinds(Action(o.Action), o.Changes) {
			set.add(k, o.ExternalID)
		}
	}
	return set, nil
}

// checkBudget plans every user without writing anything and returns a
// message when the plan is over the change budget, or when it holds
// destructive changes the approved run's plan did not.
func (r *runner) checkBudget(ctx context.Context) (string, error) {
	b := r.budget
	if r.opts.Approve == 0 && b.unbounded() {
		// Nothing the plan holds can be over a bound: the planning read
		// would only delay the first write.
		return "", nil
	}
	plan := newBudget(b.cfg, b.managed)
	plan.lifted, plan.approved = b.lifted, b.approved
	set := destructiveSet{}
	err := r.e.Store.StreamSource(ctx, r.job.Name, r.job.Source, func(row store.SourceRow) error {
		for _, st := range Plan(row, r.policy, r.now).Steps {
			plan.note(row.ExternalID, st)
			for _, k := range stepKinds(st) {
				set.add(k, row.ExternalID)
			}
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("plan for the change budget: %w", err)
	}
	if r.opts.Approve != 0 {
		if added := set.addedTo(b.approved); len(added) > 0 {
			return fmt.Sprintf("blocked: approval of run %d refused: the plan changed since it was reviewed: %s not in run %d's plan. "+
				"Nothing was written. This run's plan is stored: review it (worker show %d), then approve it with `worker sync --job %s --approve %d`",
				r.opts.Approve, describeAdded(added), r.opts.Approve, r.run.ID, r.job.Name, r.run.ID), nil
		}
	}
	if over := plan.over(); len(over) > 0 {
		return plan.blockedMessage(r.job.Name, r.run.ID, over), nil
	}
	return "", nil
}
