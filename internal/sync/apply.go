package sync

import (
	"context"
	"errors"
	"fmt"
	"strings"
	gosync "sync"
	"sync/atomic"
	"time"

	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/store"
)

// execReturnGrace is how long the executor may take to return once every
// operation it took has been answered.
const execReturnGrace = 2 * time.Second

func (e *Engine) flushSize() int {
	if e.FlushSize > 0 {
		return e.FlushSize
	}
	return 256
}

func (e *Engine) flushInterval() time.Duration {
	if e.FlushInterval > 0 {
		return e.FlushInterval
	}
	return 500 * time.Millisecond
}

// pendingUser gathers the effects of one user's steps in a pass, so the
// user's link is written once, after the last of them is final.
type pendingUser struct {
	link      store.Link
	desired   *store.DesiredUser
	remaining int
	dirty     bool

	// Back-off (pass 1 only, when the job backs users off): what the
	// user's steps ask (hash), the counted failure of lowest seq, whether
	// every step succeeded, and whether a 404 may be replication lag.
	backoff     bool
	hash        string
	fail        *failure
	failed      bool
	justCreated bool
}

// pendingStep is a step handed to the executor and not yet answered.
type pendingStep struct {
	user       *pendingUser
	step       Step
	externalID string
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

	mu       gosync.Mutex
	inflight map[int64]*pendingStep

	rows, planned, done, failed atomic.Int64
	planningDone                atomic.Bool
	// sent counts operations the executor took; answered the results it
	// gave; synthetic the NotStarted results the producer made up for
	// operations it recorded but could not hand over.
	sent, answered, synthetic atomic.Int64
	stopExec                  context.CancelFunc
	allAnswered               chan struct{}
	answeredOnce              gosync.Once
	started                   time.Time

	deferred map[string]struct{}

	// bo is the per-user back-off of pass 1 (nil: pass 2, or off).
	bo        *backoffPass
	succeeded atomic.Int64
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
		inflight: map[int64]*pendingStep{}, started: time.Now(), deferred: map[string]struct{}{}}
	if pass == 1 {
		bo, err := r.newBackoffPass(ctx)
		if err != nil {
			return nil, err
		}
		p.bo = bo
	}

	// The executor gets its own context, ended once every operation it
	// took has its answer: it must then return even if it missed the close
	// of ops (it costs nothing when it did not).
	ectx, stopExec := context.WithCancel(pctx)
	defer stopExec()
	p.stopExec = stopExec
	p.allAnswered = make(chan struct{})
	execDone := make(chan directory.Stats, 1)
	go func() { execDone <- r.dir.Execute(ectx, p.ops, p.results) }()
	consumed := make(chan error, 1)
	go func() { consumed <- p.consume() }()

	prodErr := p.produce(only) // closes p.ops
	p.maybeStopExec()
	var stats directory.Stats
	select {
	case stats = <-execDone:
	case <-p.allAnswered:
		// Every operation has its answer, so the executor has nothing left
		// to send. It should return at once; if it does not (a missed
		// wake-up after ops closed), do not let it hold the run hostage.
		select {
		case stats = <-execDone:
		case <-time.After(execReturnGrace):
			r.log.WarnContext(ctx, "batch executor did not return after answering every operation; continuing without it")
		}
	}
	close(p.results) // the executor and the producer are both done sending
	consErr := <-consumed
	r.addExecStats(stats)
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

func (r *runner) addExecStats(s directory.Stats) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.execStats.Requests += s.Requests
	r.execStats.Batches += s.Batches
	r.execStats.Throttled += s.Throttled
	r.execStats.Retried += s.Retried
}

// outgoing is an operation recorded in this flush, to be sent after it.
type outgoing struct {
	op directory.Operation
	ps *pendingStep
}

// produce streams the source, plans each user and feeds the executor. It
// always closes p.ops.
func (p *applyPass) produce(only map[string]struct{}) (err error) {
	r := p.r
	var (
		links []store.Link
		rows  []store.Operation
		sends []outgoing
	)
	defer close(p.ops)
	flush := func() error {
		if len(links)+len(rows)+len(sends) == 0 {
			return nil
		}
		if err := p.ctx.Err(); err != nil {
			return context.Cause(p.ctx)
		}
		// Not cancelled by the run's context: a write cut short by a
		// cancellation might still commit, leaving rows nobody completes.
		wctx, cancel := context.WithTimeout(r.wctx, dbTimeout)
		defer cancel()
		// Links first: a create's "creating" marker must be durable before
		// the create can reach Graph. A link the database refuses fails its
		// user alone.
		refused, err := r.upsertLinks(wctx, links)
		if err != nil {
			return fmt.Errorf("write links: %w", err)
		}
		if len(refused) > 0 {
			rows, sends = p.failRefused(refused, rows, sends)
		}
		if err := r.e.Store.RecordOperations(wctx, rows); err != nil {
			return fmt.Errorf("record operations: %w", err)
		}
		links, rows = links[:0], rows[:0]
		for i, o := range sends {
			p.mu.Lock()
			p.inflight[o.op.Key] = o.ps
			p.mu.Unlock()
			select {
			case p.ops <- o.op:
				p.sent.Add(1)
			case <-p.ctx.Done():
				// Recorded but never handed over: answer them ourselves so
				// each row still gets its final status.
				p.synthetic.Add(int64(len(sends[i:])))
				for _, rest := range sends[i:] {
					p.results <- directory.Result{Key: rest.op.Key, Kind: rest.op.Kind, Outcome: directory.NotStarted, Err: context.Cause(p.ctx)}
				}
				sends = sends[:0]
				return context.Cause(p.ctx)
			}
		}
		sends = sends[:0]
		return nil
	}

	err = r.e.Store.StreamSource(p.ctx, r.job.Name, r.job.Source, func(row store.SourceRow) error {
		if only != nil {
			if _, ok := only[row.ExternalID]; !ok {
				return nil
			}
		}
		p.rows.Add(1)
		var dec Decision
		planned := false
		if p.pass == 1 {
			if b, ok := p.bo.waiting(row.ExternalID); ok {
				// A user left alone this run costs no Graph lookup: if the
				// plan without it asks what failed, it is skipped anyway
				// (a directory user that appeared since is in the mirror
				// and changes the plan).
				if d := Plan(row, r.policy, r.now); DesiredHash(d) == b.DesiredHash {
					dec, planned = d, true
				}
			}
			if !planned {
				if err := r.lookupLostCreate(p.ctx, &row); err != nil {
					return err
				}
			}
		}
		if !planned {
			dec = Plan(row, r.policy, r.now)
		}
		if dec.Rekey != nil && p.pass == 1 {
			if msg := r.moveLink(p.ctx, dec.Rekey); msg != "" {
				dec = Decision{ExternalID: dec.ExternalID, UPN: dec.UPN,
					Steps: []Step{{Action: ActRekey, ObjectID: dec.Steps[0].ObjectID, Failure: msg, Changes: dec.Steps[0].Changes}}}
			} else {
				// The old id's history says where its account went.
				st := dec.Steps[0]
				rows = append(rows, store.Operation{RunID: r.run.ID, Seq: r.nextSeq(), ExternalID: dec.Rekey.From, ObjectID: st.ObjectID,
					Action: ActRekey, Changes: st.Changes, Message: st.Message, Status: store.OpSucceeded})
			}
		}
		if p.pass == 1 {
			for _, n := range dec.Notes {
				r.log.InfoContext(p.ctx, "source row note", "external_id", row.ExternalID, "note", n)
			}
		}
		if p.pass == 2 {
			switch dec.Primary() {
			case ActCreate, ActRestore, ActAdopt, ActSkip:
				return nil // pass 1 did not get this user into the directory
			}
		}
		hash := DesiredHash(dec)
		if p.pass == 1 {
			if b, skip := p.bo.check(row.ExternalID, dec, hash); skip {
				st := dec.Steps[0]
				rows = append(rows, store.Operation{RunID: r.run.ID, Seq: r.nextSeq(), ExternalID: row.ExternalID,
					ObjectID: st.ObjectID, Action: st.Action, Changes: st.Changes, Status: store.OpSkipped,
					Message: backingOffMessage(b, r.job.Name), DesiredHash: hash})
				r.count(store.CountBackingOff, 1)
				r.count(store.OpSkipped, 1)
				r.log.DebugContext(p.ctx, "user backing off", "external_id", row.ExternalID, "upn", dec.UPN,
					"failures", b.Failures, "next_attempt_at", b.NextAttemptAt)
				if len(rows)+len(links) >= r.e.flushSize() {
					return flush()
				}
				return nil
			}
		}
		if p.pass == 1 && dec.Primary() == ActRestore {
			// A restored user comes back as it was deleted (disabled, old
			// attributes): pass 2 plans it again against the directory.
			p.deferred[row.ExternalID] = struct{}{}
		}
		if dec.Unchanged() {
			if p.pass == 1 {
				r.count("unchanged", 1)
			}
			if dec.Link != nil {
				dec.Link.Job = r.job.Name
				links = append(links, *dec.Link)
			}
		} else {
			base := store.Link{Job: r.job.Name, ExternalID: row.ExternalID}
			if row.Link != nil {
				base = *row.Link
			}
			if dec.Link != nil {
				base = *dec.Link
			}
			base.Job = r.job.Name
			if dec.Link != nil {
				links = append(links, base)
			}
			u := &pendingUser{link: base, desired: dec.Desired, backoff: p.bo != nil, hash: hash,
				justCreated: row.Link != nil && row.Link.State == store.LinkCreating || dec.Primary() == ActAdopt}
			for _, st := range dec.Steps {
				op := store.Operation{RunID: r.run.ID, ExternalID: row.ExternalID, ObjectID: st.ObjectID,
					Action: st.Action, Changes: st.Changes, Message: st.Message, DesiredHash: hash}
				if st.Deferred && p.pass == 1 {
					p.deferred[row.ExternalID] = struct{}{}
					continue
				}
				if st.Deferred {
					st.Failure = deferredFailure(st, r.job.Name)
				}
				op.Seq = r.nextSeq()
				r.count(st.Action, 1)
				withheld := p.withhold(row.ExternalID, st)
				switch {
				case withheld != "":
					op.Status, op.Message = store.OpPlanned, withheld
					r.count(store.OpPlanned, 1)
					r.count(CountWithheld, 1)
				case st.Failure != "":
					op.Status, op.Message = store.OpFailed, st.Failure
					r.count(store.OpFailed, 1)
					r.noteFailure(row.ExternalID, st.Failure, false)
					r.log.InfoContext(p.ctx, "user not provisioned", "external_id", row.ExternalID, "upn", dec.UPN,
						"action", st.Action, "reason", st.Failure)
				case st.Kind == "":
					// Nothing to send (an adoption needing no change).
					op.Status = store.OpSucceeded
					r.count(store.OpSucceeded, 1)
					u.link = ApplyToLink(u.link, st, "", u.desired, r.now)
					u.dirty = true
				default:
					op.Status = store.OpPending
					dop := directory.Operation{Key: op.Seq, Kind: st.Kind, ObjectID: st.ObjectID, RelatedID: st.RelatedID,
						Fields: st.Fields, Recent: recentlyWritten(row.Link, r.now)}
					if st.Kind == directory.OpCreate {
						pw, err := NewPassword(r.job.Password.Length)
						if err != nil {
							return err
						}
						dop.Password, dop.ForceChangePassword = pw, r.policy.ForceChangePassword
					}
					u.remaining++
					sends = append(sends, outgoing{op: dop, ps: &pendingStep{user: u, step: st, externalID: row.ExternalID}})
					p.planned.Add(1)
				}
				rows = append(rows, op)
			}
			if u.remaining == 0 && u.dirty {
				links = append(links, u.link)
			}
		}
		if len(rows)+len(links) >= r.e.flushSize() {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	} else if len(sends) > 0 {
		// Recorded rows (if any) of a flush that never happened are not in
		// the database; nothing to answer. Drop them.
		sends = nil
	}
	p.planningDone.Store(true)
	if err != nil && p.ctx.Err() != nil {
		return nil // the run's cancellation, reported by Run as interrupted
	}
	if err != nil {
		p.cancel(err)
		return fmt.Errorf("pass %d: %w", p.pass, err)
	}
	return nil
}

// withhold asks the change budget whether step st of user xid may be
// sent; when it may not, it returns the message recorded on the withheld
// operation (planned, never sent) and logs the first refusal of each kind.
func (p *applyPass) withhold(xid string, st Step) string {
	r := p.r
	if r.budget == nil || st.Failure != "" {
		return ""
	}
	ok, kind := r.budget.admit(xid, st)
	if ok {
		return ""
	}
	limit, _ := r.budget.limit(kind)
	if r.budget.withheld[kind] == 1 {
		r.log.WarnContext(p.ctx, "change budget reached while applying: withholding further operations of this kind",
			"kind", kind, "sent", r.budget.count[kind], "bound", limit, "managed", r.budget.managed, "pass", p.pass)
	}
	return fmt.Sprintf("withheld: jobs[%s].change_budget.%s allows %d users for %d managed users and this run reached it; not sent",
		r.job.Name, kind, limit, r.budget.managed)
}

func deferredFailure(st Step, job string) string {
	if st.Action == ActManager {
		return fmt.Sprintf("manager_external_id %q: no user with this external_id is provisioned by job %s "+
			"(it is not in the source, or its own provisioning failed); the manager was not set", st.ManagerExternalID, job)
	}
	if st.Action == ActUpdate {
		return "rename: the UPN is still held by another user of this job whose own rename did not complete in this run; " +
			"the user keeps its temporary UPN and the rename is tried again at the next run"
	}
	return "the user was not provisioned in this run, so this step could not be sent"
}

// consume writes results back: operation rows, links, counts. It reads
// until results is closed, whatever happens, so the executor never blocks.
func (p *applyPass) consume() error {
	r := p.r
	var (
		comps    []store.Operation
		links    []store.Link
		firstErr error
	)
	flush := func() {
		if firstErr != nil || len(comps)+len(links) == 0 {
			comps, links = comps[:0], links[:0]
			return
		}
		ctx, cancel := context.WithTimeout(r.wctx, dbTimeout)
		defer cancel()
		refused, err := r.upsertLinks(ctx, links)
		for xid, lerr := range refused {
			// Graph did it; only our record of it failed. The user fails
			// alone, and the next run plans it again from the directory.
			r.noteFailure(xid, fmt.Sprintf("the link could not be written: %v", lerr), false)
		}
		if err == nil {
			err = r.e.Store.CompleteOperations(ctx, comps)
		}
		if err != nil {
			firstErr = fmt.Errorf("write results: %w", err)
			p.cancel(firstErr)
		}
		comps, links = comps[:0], links[:0]
	}
	tick := time.NewTicker(r.e.flushInterval())
	defer tick.Stop()
	lastReport := time.Now()
	for {
		select {
		case res, ok := <-p.results:
			if !ok {
				flush()
				return firstErr
			}
			c, link := p.handle(res)
			p.maybeStopExec()
			comps = append(comps, c)
			if link != nil {
				links = append(links, *link)
			}
			if len(comps) >= r.e.flushSize() {
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

// maybeStopExec ends the executor's context once planning is over and every
// operation handed to it has been answered.
func (p *applyPass) maybeStopExec() {
	if p.planningDone.Load() && p.answered.Load()-p.synthetic.Load() >= p.sent.Load() {
		p.stopExec()
		p.answeredOnce.Do(func() { close(p.allAnswered) })
	}
}

// handle turns one executor result into the completion of its history row
// and, when it was the user's last step, the user's new link.
func (p *applyPass) handle(res directory.Result) (store.Operation, *store.Link) {
	r := p.r
	p.mu.Lock()
	ps := p.inflight[res.Key]
	delete(p.inflight, res.Key)
	p.mu.Unlock()
	p.done.Add(1)
	p.answered.Add(1)
	c := store.Operation{RunID: r.run.ID, Seq: res.Key, ObjectID: res.ObjectID, HTTPStatus: res.HTTPStatus,
		RequestID: res.RequestID, Attempts: res.Attempts, LatencyMS: int(res.Latency / time.Millisecond)}
	if ps == nil {
		// Cannot happen unless the executor invents keys; record it loudly.
		c.Status, c.Message = store.OpFailed, "internal: result for an operation the engine did not send"
		r.log.ErrorContext(p.ctx, "executor answered an unknown operation", "seq", res.Key)
		return c, nil
	}
	outcome := res.Outcome
	if outcome == directory.Failed && ps.step.Kind == directory.OpAddMember && directory.AlreadyMember(res.Err) {
		// The membership exists (added by an earlier run whose link write
		// was lost, or by hand): the desired state holds, and from now on
		// the worker manages it.
		outcome = directory.Succeeded
		c.Message = "already a member"
	}
	switch outcome {
	case directory.Succeeded:
		c.Status = store.OpSucceeded
		if ps.step.Message != "" && c.Message == "" {
			c.Message = ps.step.Message
		}
		if res.Recovered {
			c.Message = strings.TrimPrefix(c.Message+"; an earlier attempt had been applied (its answer was lost)", "; ")
		}
		ps.user.link = ApplyToLink(ps.user.link, ps.step, res.ObjectID, ps.user.desired, r.now)
		ps.user.dirty = true
		p.succeeded.Add(1)
		r.mu.Lock()
		r.writes++
		r.mu.Unlock()
	case directory.NotStarted:
		c.Status = store.OpNotStarted
		c.Message = "not sent: the run was stopped first"
	default:
		c.Status = store.OpFailed
		if errors.Is(res.Err, context.Canceled) || errors.Is(res.Err, context.DeadlineExceeded) {
			c.Status = store.OpInterrupted
		}
		status := res.HTTPStatus
		var ge *directory.GraphError
		if errors.As(res.Err, &ge) {
			c.ErrorCode, c.Message = ge.Code, ge.Message
			if c.RequestID == "" {
				c.RequestID = ge.RequestID
			}
			if ge.Status != 0 {
				status = ge.Status
			}
		} else if res.Err != nil {
			c.Message = res.Err.Error()
		}
		if u := ps.user; c.Status == store.OpFailed && u.backoff && countsForBackoff(status, u.justCreated) &&
			(u.fail == nil || res.Key < u.fail.seq) {
			u.fail = &failure{seq: res.Key, action: ps.step.Action, httpStatus: status, code: c.ErrorCode,
				message: c.Message, requestID: c.RequestID}
		}
		if c.Status == store.OpFailed {
			p.failed.Add(1)
			r.noteFailure(ps.externalID, fmt.Sprintf("%s: %s", ps.step.Action, c.Message), true)
			r.log.WarnContext(p.ctx, "operation failed", "external_id", ps.externalID, "action", ps.step.Action,
				"status", res.HTTPStatus, "code", c.ErrorCode, "request_id", c.RequestID, "err", c.Message)
		}
	}
	r.count(c.Status, 1)
	if c.Status != store.OpSucceeded {
		ps.user.failed = true
	}
	ps.user.remaining--
	if ps.user.remaining == 0 && ps.user.backoff {
		p.bo.settle(ps.externalID, ps.user.hash, ps.user.fail, !ps.user.failed)
	}
	if ps.user.remaining == 0 && ps.user.dirty {
		l := ps.user.link
		return c, &l
	}
	return c, nil
}

func (p *applyPass) report(final bool) {
	if p.r.e.Progress == nil {
		return
	}
	p.r.e.Progress(Progress{RunID: p.r.run.ID, Pass: p.pass, Rows: int(p.rows.Load()), Planned: int(p.planned.Load()),
		Done: int(p.done.Load()), Failed: int(p.failed.Load()), Final: final || p.planningDone.Load(),
		Elapsed: time.Since(p.started)})
}

// recordPlan plans every user and records the steps with the given status
// (planned) without sending anything: worker plan, and a blocked run.
func (r *runner) recordPlan(ctx context.Context, status string) error {
	// Read only: a dry run says which users a sync would leave alone, and
	// never changes their back-off.
	bo, err := r.newBackoffPass(ctx)
	if err != nil {
		return err
	}
	var rows []store.Operation
	flush := func() error {
		if err := r.e.Store.RecordOperations(ctx, rows); err != nil {
			return fmt.Errorf("record the plan: %w", err)
		}
		rows = rows[:0]
		return nil
	}
	err = r.e.Store.StreamSource(ctx, r.job.Name, r.job.Source, func(row store.SourceRow) error {
		if err := r.lookupLostCreate(ctx, &row); err != nil {
			return err
		}
		dec := Plan(row, r.policy, r.now)
		if dec.Unchanged() {
			r.count("unchanged", 1)
		}
		hash := DesiredHash(dec)
		waiting := ""
		if b, ok := bo.waiting(row.ExternalID); ok && b.DesiredHash == hash && sendable(dec) {
			waiting = "a sync now would skip this user: " + backingOffMessage(b, r.job.Name)
			r.count(store.CountBackingOff, 1)
		}
		for _, st := range dec.Steps {
			op := store.Operation{RunID: r.run.ID, Seq: r.nextSeq(), ExternalID: row.ExternalID, ObjectID: st.ObjectID,
				Action: st.Action, Changes: st.Changes, Status: status, Message: st.Message, DesiredHash: hash}
			if waiting != "" {
				op.Message = waiting
			}
			if st.Failure != "" {
				op.Status, op.Message = store.OpFailed, st.Failure
				r.noteFailure(row.ExternalID, st.Failure, false)
			} else if st.Deferred && op.Message == "" {
				op.Message = "sent once the user (or its manager) exists"
			}
			r.count(st.Action, 1)
			r.count(op.Status, 1)
			rows = append(rows, op)
		}
		if len(rows) >= r.e.flushSize() {
			return flush()
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("plan: %w", err)
	}
	return flush()
}

// recentlyWritten says whether the user's object was written by the worker
// so recently (a run minutes ago) that a 404 on it may be replication lag
// rather than a user deleted by hand.
func recentlyWritten(l *store.Link, now time.Time) bool {
	return l != nil && !l.UpdatedAt.IsZero() && now.Sub(l.UpdatedAt) < directory.FreshFor
}
