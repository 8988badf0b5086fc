package directory

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"github.com/entraprov/entraprov/internal/config"
	"sync"
	"time"
)

// linger is how long a partial batch waits for more operations while other
// batches are in flight; request count matters less than latency here.
const linger = 20 * time.Millisecond

// task is one operation on its way through the executor.
type task struct {
	op         Operation
	req        batchStep
	attempts   int
	throttles  int
	notFound   int
	authRetry  int
	first      time.Time
	notBefore  time.Time
	enqueued   time.Time
	ambiguous  bool // an earlier attempt may have been applied (5xx, lost answer)
	lastErr    error
	lastStatus int
	requestID  string
}

// Execute sends operations as $batch requests until ops is closed and
// answers each with exactly one Result on results (Succeeded, Failed or
// NotStarted). It returns after the last result is sent; it does not close
// results, and the caller must keep reading results while it runs.
//
// When ctx is cancelled no new batch starts; batches in flight get
// Options.CancelGrace to finish (their real outcome is reported), then are
// aborted and reported Failed. Queued operations and those still arriving on
// ops are reported NotStarted (the caller should stop producing and close
// ops). A step that was sent and awaited a retry is reported Failed with the
// cancellation and its last error.
func (c *Client) Execute(ctx context.Context, ops <-chan Operation, results chan<- Result) Stats {
	batchSize, maxConc := c.batchLimits()
	pc := c.pacing.join(c.pkey, maxConc, time.Now())
	defer c.pacing.leave(pc)
	e := &execution{c: c, results: results, pace: pc, ctl: pc.ctl, outer: ctx}
	inflightCtx, stop := graceContext(ctx, c.opts.CancelGrace)
	defer stop()
	q := &dispatcher{e: e, ctx: ctx, inflightCtx: inflightCtx, ops: ops,
		batchSize: batchSize, maxConc: maxConc,
		done: make(chan []*task, maxConc), timer: time.NewTimer(time.Hour)}
	defer q.timer.Stop()
	defer q.dropTurn()
	q.run()
	// run returns once no batch is in flight; the goroutines that sent them
	// may still be between their last send on done and their exit.
	q.wg.Wait()
	return e.stats.snapshot()
}

// batchLimits are the job's steps per $batch (Graph takes at most 20) and
// batches in flight; a job built in code without them gets config's
// defaults (config.DefaultJob), which are the one place they live.
func (c *Client) batchLimits() (batchSize, maxConc int) {
	def := config.DefaultJob()
	batchSize = c.job.BatchSize
	if batchSize < 1 || batchSize > maxBatchSteps {
		batchSize = def.BatchSize
	}
	maxConc = c.job.MaxConcurrency
	if maxConc < 1 {
		maxConc = def.MaxConcurrency
	}
	return batchSize, maxConc
}

// maxBatchSteps is Graph's limit of requests in one $batch.
const maxBatchSteps = 20

// graceContext returns the context of the batches in flight. It is not
// cancelled with ctx but grace later, so an answer already on its way is
// still reported as what it is; stop ends it and releases its timers.
func graceContext(ctx context.Context, grace time.Duration) (context.Context, func()) {
	inflightCtx, cancelInflight := context.WithCancel(context.WithoutCancel(ctx))
	stopGrace := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(grace, cancelInflight)
		context.AfterFunc(inflightCtx, func() { t.Stop() })
	})
	return inflightCtx, func() {
		stopGrace()
		cancelInflight()
	}
}

// dispatcher is the queue of one Execute call: operations wait in ready
// (sendable now) or delayed (a retry waiting for its notBefore) until they
// leave in a batch. It is owned by the Execute goroutine alone, so it needs
// no lock; the batch goroutines share only the execution and report back on
// done.
type dispatcher struct {
	e           *execution
	ctx         context.Context // the caller's: once cancelled no batch starts
	inflightCtx context.Context // of batches on the wire (see graceContext)
	ops         <-chan Operation
	batchSize   int
	maxConc     int

	ready    []*task
	delayed  taskHeap
	inflight int          // batches on the wire
	done     chan []*task // a finished batch's steps to retry

	// The next batch's turn: a slot among the batches in flight of all
	// jobs sharing the pacer (slot; granted is closed when a queued
	// request for one is served), then its reserved send time (turnAt,
	// for turnN steps).
	slot    bool
	granted <-chan struct{}
	turnAt  time.Time
	turnN   int
	wg      sync.WaitGroup // the batch goroutines
	timer   *time.Timer
}

// run moves operations from ops through the queue into batches. It returns
// once ops is closed, the queue is empty and no batch is in flight: every
// operation has had its Result.
func (q *dispatcher) run() {
	for {
		now := time.Now()
		q.promote(now)
		// One reading of ctx per iteration: a cancellation arriving later
		// wakes the select in await, never leaves it without a wake-up.
		cancelled := q.ctx.Err() != nil
		if cancelled {
			q.cancelQueued()
			q.dropTurn()
		}
		if q.drained() {
			return
		}
		q.fill()
		// The fill may have seen ops close with nothing left to do; await
		// would then have nothing to wake it.
		if q.drained() {
			return
		}
		sent, wait := q.trySend(now, cancelled)
		if sent {
			continue
		}
		q.await(now, wait, cancelled)
	}
}

// drained says whether the work is over: ops closed, nothing queued,
// nothing in flight.
func (q *dispatcher) drained() bool {
	return q.ops == nil && len(q.ready) == 0 && q.delayed.Len() == 0 && q.inflight == 0
}

// room says whether the queue takes another operation from ops; the bound
// keeps a fast producer from queueing a whole run in memory.
func (q *dispatcher) room() bool {
	return len(q.ready)+q.delayed.Len() < q.batchSize*q.maxConc*2
}

// promote moves the delayed tasks that are due to ready.
func (q *dispatcher) promote(now time.Time) {
	for q.delayed.Len() > 0 && !q.delayed[0].notBefore.After(now) {
		t := heap.Pop(&q.delayed).(*task)
		t.enqueued = now
		q.ready = append(q.ready, t)
	}
}

// cancelQueued reports every queued task once ctx is cancelled.
func (q *dispatcher) cancelQueued() {
	for _, t := range q.ready {
		q.e.cancelled(t)
	}
	for _, t := range q.delayed {
		q.e.cancelled(t)
	}
	q.ready, q.delayed = nil, nil
}

// fill tops up ready from ops without blocking, so batches go out full.
func (q *dispatcher) fill() {
	for q.ops != nil && len(q.ready) < q.batchSize && q.room() {
		select {
		case op, ok := <-q.ops:
			if !ok {
				q.ops = nil
				return
			}
			q.accept(op)
		default:
			return
		}
	}
}

// accept queues a new operation, or answers it at once when ctx is
// cancelled or it cannot be turned into a step.
func (q *dispatcher) accept(op Operation) {
	if q.ctx.Err() != nil {
		q.e.finish(&task{op: op}, NotStarted, 0, "", q.ctx.Err())
		return
	}
	t := &task{op: op, enqueued: time.Now()}
	req, err := stepRequest(op, q.e.c.ep.graphURL)
	if err != nil {
		q.e.finish(t, Failed, 0, "", fmt.Errorf("%s: %w", op, err))
		return
	}
	t.req = req
	q.ready = append(q.ready, t)
}

// requeue takes back a step a batch returned for another attempt.
func (q *dispatcher) requeue(t *task, now time.Time) {
	if q.ctx.Err() != nil {
		q.e.cancelled(t)
		return
	}
	if t.notBefore.After(now) {
		heap.Push(&q.delayed, t)
		return
	}
	t.enqueued = now
	q.ready = append(q.ready, t)
}

// trySend starts the next batch when the concurrency limits, the linger
// of a partial batch and the pacer all allow it. Otherwise it returns how
// long until they may (-1: not before something arrives). The batch first
// takes a slot among the shared pacer's batches in flight, then reserves
// its send time from every budget; reservations are served in order, so
// jobs sharing a budget take turns instead of racing for it.
func (q *dispatcher) trySend(now time.Time, cancelled bool) (sent bool, wait time.Duration) {
	if cancelled || len(q.ready) == 0 || q.inflight >= q.maxConc {
		return false, -1
	}
	n := min(q.batchSize, len(q.ready))
	if q.turnAt.IsZero() && n < q.batchSize && q.ops != nil && q.inflight > 0 {
		if w := q.ready[0].enqueued.Add(linger).Sub(now); w > 0 {
			return false, w
		}
	}
	if !q.slot {
		if q.granted == nil {
			ok, granted := q.e.ctl.acquire()
			if !ok {
				q.granted = granted
				return false, -1
			}
		} else {
			select {
			case <-q.granted:
			default:
				return false, -1 // still queued; await wakes on granted
			}
		}
		q.slot, q.granted = true, nil
	}
	if q.turnAt.IsZero() {
		q.turnAt, q.turnN = q.e.pace.reserve(now, n), n
	}
	// A 429 met since the reservation holds it too.
	if at := later(q.turnAt, q.e.pace.holdUntil()); at.After(now) {
		return false, at.Sub(now)
	}
	if n > q.turnN {
		// More steps arrived while the batch waited: charge them too.
		q.e.pace.reserve(now, n-q.turnN)
	}
	q.turnAt, q.turnN, q.slot = time.Time{}, 0, false
	batch := make([]*task, n)
	copy(batch, q.ready)
	q.ready = q.ready[n:]
	q.inflight++
	q.wg.Add(1)
	go func() {
		defer q.wg.Done()
		retry := q.e.runBatch(q.inflightCtx, batch)
		q.e.ctl.release()
		q.done <- retry
	}()
	return true, 0
}

// dropTurn gives back the slot of a batch that will not be sent (the run
// is cancelled or over). Its reserved writes stay spent: the budgets err
// on the safe side.
func (q *dispatcher) dropTurn() {
	if q.slot {
		q.e.ctl.release()
	}
	if q.granted != nil {
		q.e.ctl.cancelWait(q.granted)
	}
	q.slot, q.granted, q.turnAt, q.turnN = false, nil, time.Time{}, 0
}

// grantedC is the channel await watches for a queued slot request: only
// while the dispatcher has something to send with it (nil blocks).
func (q *dispatcher) grantedC() <-chan struct{} {
	if q.slot {
		return nil
	}
	return q.granted
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// await blocks until something may change what can be sent: an operation
// arrives (while there is room) or ops closes, a batch comes back, wait
// (when >= 0) or the next delayed task is due, or ctx is cancelled.
func (q *dispatcher) await(now time.Time, wait time.Duration, cancelled bool) {
	if q.delayed.Len() > 0 {
		if d := q.delayed[0].notBefore.Sub(now); wait < 0 || d < wait {
			wait = d
		}
	}
	var timerC <-chan time.Time
	if wait >= 0 {
		q.timer.Reset(max(wait, time.Millisecond))
		timerC = q.timer.C
	}
	var in <-chan Operation
	if q.ops != nil && (q.room() || cancelled) {
		in = q.ops
	}
	var ctxDone <-chan struct{}
	if !cancelled {
		ctxDone = q.ctx.Done()
	}
	select {
	case op, ok := <-in:
		if !ok {
			q.ops = nil
		} else {
			q.accept(op)
		}
	case retry := <-q.done:
		q.inflight--
		now := time.Now()
		for _, t := range retry {
			q.requeue(t, now)
		}
	case <-timerC:
	case <-q.grantedC():
	case <-ctxDone:
	}
	if timerC != nil && !q.timer.Stop() {
		select {
		case <-q.timer.C:
		default:
		}
	}
}

// execution is the state one Execute call shares with its batch goroutines.
type execution struct {
	c       *Client
	results chan<- Result
	pace    *pacer      // shared with the jobs of the app and tenant
	ctl     *controller // pace.ctl as the Execute began
	outer   context.Context
	stats   statCounters
}

func (e *execution) add(f func(*statCounters)) {
	f(&e.stats)
	f(&e.c.stats)
}

// finish sends the one Result of a task.
func (e *execution) finish(t *task, outcome Outcome, status int, objectID string, err error) {
	r := Result{Key: t.op.Key, Kind: t.op.Kind, Outcome: outcome, HTTPStatus: status, ObjectID: objectID,
		Err: err, RequestID: t.requestID, Attempts: t.attempts}
	if r.ObjectID == "" && t.op.Kind != OpCreate {
		r.ObjectID = t.op.ObjectID
	}
	if !t.first.IsZero() {
		r.Latency = time.Since(t.first)
	}
	if outcome == Failed {
		e.add(func(s *statCounters) { s.failed.Add(1) })
	}
	if m := e.c.opts.Metrics; m != nil {
		m.StepDone(t.op.Kind, outcome, status)
	}
	e.results <- r
}

func (e *execution) succeed(t *task, status int, objectID string, recovered bool) {
	r := Result{Key: t.op.Key, Kind: t.op.Kind, Outcome: Succeeded, HTTPStatus: status, ObjectID: objectID,
		RequestID: t.requestID, Attempts: t.attempts, Latency: time.Since(t.first), Recovered: recovered}
	if r.ObjectID == "" {
		r.ObjectID = t.op.ObjectID
	}
	if t.op.Kind == OpCreate || t.op.Kind == OpRestore {
		e.c.fresh.add(r.ObjectID, time.Now())
	}
	if m := e.c.opts.Metrics; m != nil {
		m.StepDone(t.op.Kind, Succeeded, status)
	}
	e.results <- r
}

// cancelled reports a task the cancellation caught before its next send.
func (e *execution) cancelled(t *task) {
	if t.attempts == 0 {
		e.finish(t, NotStarted, 0, "", e.outer.Err())
		return
	}
	e.finish(t, Failed, t.lastStatus, "", errors.Join(e.outer.Err(), t.lastErr))
}

// taskHeap orders delayed tasks by notBefore.
type taskHeap []*task

func (h taskHeap) Len() int           { return len(h) }
func (h taskHeap) Less(i, j int) bool { return h[i].notBefore.Before(h[j].notBefore) }
func (h taskHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *taskHeap) Push(x any)        { *h = append(*h, x.(*task)) }
func (h *taskHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	*h = old[:len(old)-1]
	return t
}
