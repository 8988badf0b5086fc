package sync

// The apply path is a pipeline of three parts, one file each:
//
//	source row ─admit (admit.go)─▶ pending operations ─executor─▶ results
//	results ─settle (settle.go)─▶ completed operations and links
//
// and a recorder (recorder.go) that buffers and writes links and operation
// rows for both ends. This file wires them for one pass.

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/store"
)

func (e *Engine) flushSize() int {
	if e.FlushSize > 0 {
		return e.FlushSize
	}
	return config.DefaultFlushSize
}

func (e *Engine) flushInterval() time.Duration {
	if e.FlushInterval > 0 {
		return e.FlushInterval
	}
	return config.DefaultFlushInterval
}

// applyPass is one streaming pass over the source: plan, record, send,
// and write back results while later users are still being planned.
type applyPass struct {
	r      *runner
	pass   int
	ctx    context.Context // cancelled on the run's cancellation or a pass error
	cancel context.CancelCauseFunc
	ops    chan directory.Operation
	// results is written by the executor, and by the producer for the
	// operations it recorded but could not hand over (cancellation).
	results chan directory.Result

	inflight inflight
	progress passProgress

	// deferred are the users pass 2 must send (pass 1 only; producer only).
	deferred map[string]struct{}
	// bo is the per-user back-off of pass 1 (nil: pass 2, or off).
	bo        *backoffPass
	succeeded atomic.Int64 // operations of the pass Graph applied
}

// passProgress is what the progress line shows of a pass.
type passProgress struct {
	started                     time.Time
	rows, planned, done, failed atomic.Int64
	planningDone                atomic.Bool
}

// nextSeq numbers operations across the passes of a run.
func (r *runner) nextSeq() int64 {
	r.seq++
	return r.seq
}

// apply runs one pass. Pass 1 plans every user and returns the external ids
// whose steps had to wait for objects created in it; pass 2 (only those
// users) sends them.
func (r *runner) apply(ctx context.Context, pass int, only map[string]struct{}) (map[string]struct{}, error) {
	size := r.e.flushSize()
	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	p := &applyPass{r: r, pass: pass, ctx: pctx, cancel: cancel,
		ops: make(chan directory.Operation, size), results: make(chan directory.Result, size),
		inflight: inflight{m: map[int64]*pendingStep{}}, deferred: map[string]struct{}{}}
	p.progress.started = time.Now()
	defer r.phases.time(fmt.Sprintf("pass%d", pass))()
	if pass == 1 {
		bo, err := r.newBackoffPass(ctx)
		if err != nil {
			return nil, err
		}
		p.bo = bo
	}

	// The executor returns once ops is closed and every operation it took
	// has its result (directory.Client.Execute, tested in
	// internal/directory/contract_test.go); the run's cancellation makes it
	// answer what is left within its grace.
	execDone := make(chan struct{})
	go func() {
		defer close(execDone)
		r.dir.Execute(pctx, p.ops, p.results)
	}()
	consumed := make(chan error, 1)
	go func() { consumed <- p.consume() }()
	var follow *follower
	if r.opts.User == "" {
		follow = r.followMirror(pctx, r.writesSoFar)
	}

	prodErr := p.produce(only) // closes p.ops
	follow.sourceDone()
	r.phases.mark(fmt.Sprintf("pass%d_planned", pass))
	<-execDone
	r.phases.mark(fmt.Sprintf("pass%d_answered", pass))
	r.mirrorFresh = follow.stop(pctx)
	close(p.results) // the executor and the producer are both done sending
	consErr := <-consumed
	p.report(true)
	p.saveBackoff(ctx, prodErr == nil && consErr == nil && pctx.Err() == nil)

	if err := errors.Join(prodErr, consErr); err != nil {
		return nil, err
	}
	if ctx.Err() != nil {
		return nil, context.Cause(ctx)
	}
	return p.deferred, nil
}

// saveBackoff writes what pass 1 learnt about failing users. A failure to
// write is logged, not fatal: the history holds the truth, and the worst
// outcome is one more attempt of a user that should have waited.
func (p *applyPass) saveBackoff(ctx context.Context, complete bool) {
	if p.bo == nil {
		return
	}
	r := p.r
	wctx, cancel := context.WithTimeout(r.wctx, dbTimeout)
	defer cancel()
	saved, deleted, err := p.bo.save(wctx, complete, p.succeeded.Load() > 0)
	if err != nil {
		r.log.WarnContext(ctx, "could not record user back-offs", "err", err)
		return
	}
	if saved+deleted+p.bo.skipped > 0 {
		r.log.InfoContext(ctx, "user back-off", "backing_off", p.bo.skipped, "failing_recorded", saved, "cleared", deleted)
	}
}

// produce streams the source through the admit stage and feeds the
// executor: each batch of pending operations is recorded (links first)
// before any of it is handed over. It always closes p.ops.
func (p *applyPass) produce(only map[string]struct{}) error {
	r := p.r
	defer close(p.ops)
	var sends []outgoing
	rec := newRecorder(r, "write links", "record operations", r.e.Store.RecordOperations)
	// A link the database refuses fails its user before anything of it is
	// sent: its rows become failed and its requests are dropped.
	rec.onRefused = func(refused map[string]error, ops []store.Operation) {
		sends = p.failRefused(refused, ops, sends)
	}
	flush := func() error {
		if rec.empty() && len(sends) == 0 {
			return nil
		}
		if err := p.ctx.Err(); err != nil {
			return context.Cause(p.ctx)
		}
		if err := rec.flush(); err != nil {
			return err
		}
		err := p.handOver(sends)
		sends = sends[:0]
		return err
	}

	// The executor idles until the first flush is handed over, so the
	// first flushes are small (about a batch of requests: a created user
	// is a row and a link) and then double up to the flush size, which
	// amortises the round trips once the executor has work.
	size := r.e.flushSize()
	flushAt := min(size, 2*max(r.job.BatchSize, 1))
	err := r.streamSource(p.ctx, func(row store.SourceRow) error {
		if only != nil {
			if _, ok := only[row.ExternalID]; !ok {
				return nil
			}
		}
		u, err := p.admit(row)
		if err != nil {
			return err
		}
		rec.add(u.ops, u.links...)
		sends = append(sends, u.sends...)
		if rec.fullAt(flushAt) {
			flushAt = min(2*flushAt, size)
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	// On an error, the rows of a flush that never happened are not in the
	// database and their requests were never handed over: nothing to answer.
	p.progress.planningDone.Store(true)
	if err != nil && p.ctx.Err() != nil {
		return nil // the run's cancellation, reported by Run as interrupted
	}
	if err != nil {
		p.cancel(err)
		return fmt.Errorf("pass %d: %w", p.pass, err)
	}
	return nil
}

// handOver gives the executor recorded operations. Those it cannot take
// because the pass stopped are answered here as not started, so that each
// recorded row still gets its final status.
func (p *applyPass) handOver(sends []outgoing) error {
	if len(sends) > 0 {
		p.r.phases.mark(fmt.Sprintf("pass%d_first_send", p.pass))
	}
	for i, o := range sends {
		p.inflight.put(o.op.Key, o.ps)
		p.r.traceRequest(p.pass, o)
		select {
		case p.ops <- o.op:
		case <-p.ctx.Done():
			for _, rest := range sends[i:] {
				p.results <- directory.Result{Key: rest.op.Key, Kind: rest.op.Kind, Outcome: directory.NotStarted, Err: context.Cause(p.ctx)}
			}
			return context.Cause(p.ctx)
		}
	}
	return nil
}

// consume settles results and writes them back: operation rows, links,
// counts. It reads until results is closed, whatever happens, so the
// executor never blocks.
func (p *applyPass) consume() error {
	r := p.r
	rec := newRecorder(r, "write results", "write results", r.e.Store.CompleteOperations)
	rec.onRefused = func(refused map[string]error, _ []store.Operation) {
		for xid, lerr := range refused {
			// Graph did it; only our record of it failed. The user fails
			// alone, and the next run plans it again from the directory
			// (a create whose account another job linked first: its
			// "creating" link stays, and the next run's row fails naming
			// that job).
			msg := fmt.Sprintf("the link could not be written: %v", lerr)
			var oc *ownerConflict
			if errors.As(lerr, &oc) {
				msg = oc.afterCreate()
			}
			r.noteFailure(xid, msg, false)
		}
	}
	// A failed write stops the pass; the recorder keeps the error and
	// drops what comes after, while results are still drained.
	flush := func() {
		if err := rec.flush(); err != nil {
			p.cancel(err)
		}
	}
	tick := time.NewTicker(r.e.flushInterval())
	defer tick.Stop()
	lastReport := time.Now()
	for {
		select {
		case res, ok := <-p.results:
			if !ok {
				flush()
				return rec.err
			}
			c, link := p.settle(res)
			if link != nil {
				rec.add([]store.Operation{c}, *link)
			} else {
				rec.add([]store.Operation{c})
			}
			if len(rec.ops) >= r.e.flushSize() {
				flush()
			}
			if time.Since(lastReport) >= 500*time.Millisecond {
				p.report(false)
				lastReport = time.Now()
			}
		case <-tick.C:
			flush()
			p.report(false)
			lastReport = time.Now()
		}
	}
}

func (p *applyPass) report(final bool) {
	if p.r.e.Progress == nil {
		return
	}
	pp := &p.progress
	p.r.e.Progress(Progress{RunID: p.r.run.ID, Pass: p.pass, Rows: int(pp.rows.Load()), Planned: int(pp.planned.Load()),
		Done: int(pp.done.Load()), Failed: int(pp.failed.Load()), Final: final || pp.planningDone.Load(),
		Elapsed: time.Since(pp.started)})
}

// recordPlan plans every user and records the steps with the given status
// (planned) without sending anything: worker plan, and a blocked run.
func (r *runner) recordPlan(ctx context.Context, status store.OpStatus) error {
	// Read only: a dry run says which users a sync would leave alone, and
	// never changes their back-off.
	bo, err := r.newBackoffPass(ctx)
	if err != nil {
		return err
	}
	rec := newRecorder(r, "write links", "record the plan", r.e.Store.RecordOperations)
	rec.wctx = ctx // a plan is not worth writing once the run is stopped
	err = r.streamSource(ctx, func(row store.SourceRow) error {
		if err := r.lookupLostCreate(ctx, &row); err != nil {
			return err
		}
		dec := Plan(row, r.policy, r.now)
		r.traceRow(0, row, dec)
		if dec.Unchanged() {
			r.count(func(c *store.RunCounts) { c.Unchanged++ })
		}
		hash := DesiredHash(dec)
		waiting := ""
		if b, ok := bo.waiting(row.ExternalID); ok && b.DesiredHash == hash && sendable(dec) {
			waiting = "a sync now would skip this user: " + backingOffMessage(b, r.job.Name)
			r.count(func(c *store.RunCounts) { c.BackingOff++ })
		}
		for _, st := range dec.Steps {
			op := store.Operation{RunID: r.run.ID, Seq: r.nextSeq(), ExternalID: row.ExternalID, ObjectID: st.ObjectID,
				Action: string(st.Action), Changes: st.Changes, Status: status, Message: st.Message, DesiredHash: hash}
			if waiting != "" {
				op.Message = waiting
			}
			if st.Failure != "" {
				op.Status, op.Message = store.OpFailed, st.Failure
				r.noteFailure(row.ExternalID, st.Failure, false)
			} else if st.Deferred && op.Message == "" {
				op.Message = "sent once the user (or its manager) exists"
			}
			r.countAction(st.Action)
			r.countStatus(op.Status, 1)
			rec.add([]store.Operation{op})
		}
		if rec.full() {
			return rec.flush()
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("plan: %w", err)
	}
	return rec.flush()
}
