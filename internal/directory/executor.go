package directory

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	abs "github.com/microsoft/kiota-abstractions-go"
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
	batchSize := c.job.BatchSize
	if batchSize < 1 || batchSize > 20 {
		batchSize = 20
	}
	maxConc := c.job.MaxConcurrency
	if maxConc < 1 {
		maxConc = 4
	}
	e := &execution{c: c, results: results, ctl: c.controller(maxConc), outer: ctx}
	inflightCtx, cancelInflight := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelInflight()
	stopGrace := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(c.opts.CancelGrace, cancelInflight)
		context.AfterFunc(inflightCtx, func() { t.Stop() })
	})
	defer stopGrace()

	var (
		ready    []*task
		delayed  taskHeap
		inflight int
		done     = make(chan []*task, maxConc)
		wg       sync.WaitGroup
		opsCh    = ops
		timer    = time.NewTimer(time.Hour)
	)
	defer timer.Stop()
	room := func() bool { return len(ready)+delayed.Len() < batchSize*maxConc*2 }
	accept := func(op Operation) {
		if ctx.Err() != nil {
			e.finish(&task{op: op}, NotStarted, 0, "", ctx.Err())
			return
		}
		t := &task{op: op, enqueued: time.Now()}
		req, err := stepRequest(op, c.ep.graphURL)
		if err != nil {
			e.finish(t, Failed, 0, "", fmt.Errorf("%s: %w", op, err))
			return
		}
		t.req = req
		ready = append(ready, t)
	}
	requeue := func(t *task, now time.Time) {
		if ctx.Err() != nil {
			e.cancelled(t)
			return
		}
		if t.notBefore.After(now) {
			heap.Push(&delayed, t)
			return
		}
		t.enqueued = now
		ready = append(ready, t)
	}

	for {
		now := time.Now()
		for delayed.Len() > 0 && !delayed[0].notBefore.After(now) {
			t := heap.Pop(&delayed).(*task)
			t.enqueued = now
			ready = append(ready, t)
		}
		// One reading of ctx per iteration: a cancellation arriving later
		// wakes the select below, never leaves it without a wake-up.
		cancelled := ctx.Err() != nil
		if cancelled {
			for _, t := range ready {
				e.cancelled(t)
			}
			for _, t := range delayed {
				e.cancelled(t)
			}
			ready, delayed = nil, nil
		}
		if opsCh == nil && len(ready) == 0 && delayed.Len() == 0 && inflight == 0 {
			break
		}

		// Top up from ops without blocking so batches go out full.
	fill:
		for opsCh != nil && len(ready) < batchSize && room() {
			select {
			case op, ok := <-opsCh:
				if !ok {
					opsCh = nil
					break fill
				}
				accept(op)
			default:
				break fill
			}
		}
		// The fill may have seen ops close with nothing left to do; the
		// select below would then have nothing to wake it.
		if opsCh == nil && len(ready) == 0 && delayed.Len() == 0 && inflight == 0 {
			break
		}

		wait := time.Duration(-1)
		if !cancelled && len(ready) > 0 && inflight < e.ctl.limit() {
			n := min(batchSize, len(ready))
			partialWait := time.Duration(0)
			if n < batchSize && opsCh != nil && inflight > 0 {
				partialWait = ready[0].enqueued.Add(linger).Sub(now)
			}
			if partialWait > 0 {
				wait = partialWait
			} else if d := e.ctl.delay(now, n); d > 0 {
				wait = d
			} else {
				e.ctl.take(now, n)
				batch := make([]*task, n)
				copy(batch, ready)
				ready = ready[n:]
				inflight++
				wg.Add(1)
				go func() {
					defer wg.Done()
					done <- e.runBatch(inflightCtx, batch)
				}()
				continue
			}
		}
		if delayed.Len() > 0 {
			if d := delayed[0].notBefore.Sub(now); wait < 0 || d < wait {
				wait = d
			}
		}
		var timerC <-chan time.Time
		if wait >= 0 {
			timer.Reset(max(wait, time.Millisecond))
			timerC = timer.C
		}
		var in <-chan Operation
		if opsCh != nil && (room() || cancelled) {
			in = opsCh
		}
		var ctxDone <-chan struct{}
		if !cancelled {
			ctxDone = ctx.Done()
		}
		select {
		case op, ok := <-in:
			if !ok {
				opsCh = nil
			} else {
				accept(op)
			}
		case retry := <-done:
			inflight--
			now := time.Now()
			for _, t := range retry {
				requeue(t, now)
			}
		case <-timerC:
		case <-ctxDone:
		}
		if timerC != nil && !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
	wg.Wait()
	return e.stats.snapshot()
}

// controller returns the client's pace controller. It outlives one Execute
// because the quota it learns belongs to the app and tenant: a second phase
// of the same run starts at the learnt pace instead of re-learning it with
// a burst of 429s. After a long idle period the bucket has refilled, so the
// controller starts over unpaced.
func (c *Client) controller(maxInflight int) *controller {
	c.ctlMu.Lock()
	defer c.ctlMu.Unlock()
	if c.ctl == nil || c.ctl.idleSince(time.Now()) > controllerIdleReset || int(c.ctl.maxInflight) != maxInflight {
		c.ctl = newController(maxInflight)
	}
	return c.ctl
}

const controllerIdleReset = 30 * time.Second

// execution is the state one Execute call shares with its batch goroutines.
type execution struct {
	c       *Client
	results chan<- Result
	ctl     *controller
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

// runBatch sends one $batch and settles each step: success and final
// failures are reported, retriable steps are returned with notBefore set.
func (e *execution) runBatch(ctx context.Context, batch []*task) []*task {
	c := e.c
	sent := time.Now()
	steps := make([]batchStep, len(batch))
	for i, t := range batch {
		steps[i] = t.req
		t.attempts++
		if t.first.IsZero() {
			t.first = sent
		}
	}
	retried := 0
	for _, t := range batch {
		if t.attempts > 1 {
			retried++
		}
	}
	e.add(func(s *statCounters) {
		s.batches.Add(1)
		s.steps.Add(int64(len(batch)))
		s.retried.Add(int64(retried))
	})
	e.stats.requests.Add(1) // the client's counter is bumped by send
	body, err := encodeBatch(steps)
	if err != nil { // cannot happen with JSON-safe Fields; report, don't loop
		for _, t := range batch {
			e.finish(t, Failed, 0, "", fmt.Errorf("encode $batch: %w", err))
		}
		return nil
	}
	resp, err := c.send(ctx, abs.POST, c.ep.graphURL+"/$batch", body, nil)
	now := time.Now()
	var retry []*task
	if err != nil {
		var ae *AuthError
		if errors.As(err, &ae) {
			for _, t := range batch {
				e.finish(t, Failed, 0, "", err)
			}
			return nil
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("%w: batch aborted in flight, outcome unknown", e.outer.Err())
			for _, t := range batch {
				e.finish(t, Failed, 0, "", err)
			}
			return nil
		}
		c.log.DebugContext(ctx, "$batch transport error", "steps", len(batch), "err", err)
		for _, t := range batch {
			t.lastErr, t.lastStatus = fmt.Errorf("$batch: %w", err), 0
			t.ambiguous = true
			retry = e.schedule(t, retryTransient, 0, now, retry)
		}
		return retry
	}
	batchReqID := resp.header.Get("request-id")
	if resp.status != http.StatusOK {
		ge := c.graphError(ctx, resp.status, resp.header, resp.body, now)
		class := classify("batch", resp.status)
		c.log.DebugContext(ctx, "$batch refused", "status", resp.status, "code", ge.Code, "request_id", ge.RequestID)
		if class == retryThrottled {
			e.throttled(1)
			e.ctl.observe(sent, now, 0, len(batch))
			if ge.RetryAfter > 0 {
				e.ctl.pause(now, now.Add(ge.RetryAfter))
			}
		}
		for _, t := range batch {
			t.lastErr, t.lastStatus, t.requestID = ge, resp.status, ge.RequestID
			if class == retryTransient {
				t.ambiguous = true
			}
			if class == noRetry {
				e.finish(t, Failed, resp.status, "", c.auth.denied(ge, t.op.Kind))
				continue
			}
			retry = e.schedule(t, class, ge.RetryAfter, now, retry)
		}
		return retry
	}
	answers, err := decodeBatch(resp.body, len(batch))
	if err != nil {
		answers = make([]*batchStepResponse, len(batch))
	}
	accepted, throttled := 0, 0
	var pauseFor time.Duration
	for i, t := range batch {
		a := answers[i]
		if a == nil {
			t.lastErr = errors.New("$batch: step not answered")
			t.lastStatus = 0
			t.ambiguous = true
			retry = e.schedule(t, retryTransient, 0, now, retry)
			continue
		}
		t.lastStatus = a.Status
		if a.Status >= 200 && a.Status < 300 {
			accepted++
			t.requestID = firstNonEmpty(a.header().Get("request-id"), batchReqID)
			id := ""
			if t.op.Kind == OpCreate {
				id = createdID(a.Body)
			}
			e.succeed(t, a.Status, id, false)
			continue
		}
		ge := c.graphError(ctx, a.Status, a.header(), a.Body, now)
		if ge.RequestID == "" {
			ge.RequestID = batchReqID
		}
		t.requestID, t.lastErr = ge.RequestID, ge
		if a.Status == http.StatusTooManyRequests {
			throttled++
			if pauseFor == 0 || (ge.RetryAfter > 0 && ge.RetryAfter < pauseFor) {
				pauseFor = ge.RetryAfter
			}
		} else if a.Status < 500 {
			accepted++
		}
		if t.ambiguous && e.alreadyDone(t, ge) {
			if t.op.Kind == OpCreate {
				if id, err := e.lookupCreated(ctx, t); err == nil {
					e.succeed(t, a.Status, id, true)
				} else {
					e.finish(t, Failed, a.Status, "", fmt.Errorf("create retried after an unknown outcome met a conflict, and the lookup failed: %w (conflict: %v)", err, ge))
				}
				continue
			}
			e.succeed(t, a.Status, "", true)
			continue
		}
		class := classify(t.op.Kind, a.Status)
		if class == noRetry {
			e.finish(t, Failed, a.Status, "", c.auth.denied(ge, t.op.Kind))
			continue
		}
		if class == retryTransient {
			t.ambiguous = true
		}
		retry = e.schedule(t, class, ge.RetryAfter, now, retry)
	}
	if throttled > 0 {
		e.throttled(throttled)
		if pauseFor > 0 {
			e.ctl.pause(now, now.Add(pauseFor))
		}
	}
	e.ctl.observe(sent, now, accepted, throttled)
	c.log.DebugContext(ctx, "$batch", "steps", len(batch), "accepted", accepted, "throttled", throttled,
		"retry", len(retry), "request_id", batchReqID, "latency", now.Sub(sent))
	return retry
}

func (e *execution) throttled(n int) {
	e.add(func(s *statCounters) { s.throttled.Add(int64(n)) })
	if m := e.c.opts.Metrics; m != nil {
		m.Throttled(n)
	}
}

// schedule decides the next attempt of a failed step, or reports it Failed
// when its retries are spent.
func (e *execution) schedule(t *task, class retryClass, retryAfter time.Duration, now time.Time, retry []*task) []*task {
	o := e.c.opts
	var wait time.Duration
	switch class {
	case retryThrottled:
		t.throttles++
		if t.throttles > o.MaxThrottled {
			e.finish(t, Failed, t.lastStatus, "", t.lastErr)
			return retry
		}
		wait = retryAfter
		if wait <= 0 {
			wait = backoff(t.throttles, o.MinBackoff, o.MaxBackoff)
		}
	case retryTransient:
		if t.attempts-t.throttles >= o.MaxAttempts {
			e.finish(t, Failed, t.lastStatus, "", gaveUp(t, now))
			return retry
		}
		wait = max(backoff(t.attempts-t.throttles, o.MinBackoff, o.MaxBackoff), retryAfter)
	case retryNotYet:
		t.notFound++
		again, after := e.c.notFoundRetry(t.op, t.notFound, now)
		if !again || t.attempts-t.throttles >= o.MaxAttempts {
			e.finish(t, Failed, t.lastStatus, "", t.lastErr)
			return retry
		}
		wait = after
	case retryAuth:
		t.authRetry++
		if t.authRetry > 1 {
			e.finish(t, Failed, t.lastStatus, "", t.lastErr)
			return retry
		}
	}
	t.notBefore = now.Add(wait)
	return append(retry, t)
}

// gaveUp is the error of a step whose transient retries ran out, in the
// words an operator acts on. A step Graph never answered (network, TLS,
// DNS) says Graph was unreachable and for how long, so an outage is not
// mistaken for a bad user; the cause stays wrapped for errors.As.
func gaveUp(t *task, now time.Time) error {
	if t.lastStatus != 0 || t.lastErr == nil {
		return t.lastErr
	}
	return fmt.Errorf("Graph unreachable: %d attempts over %s got no answer (%w); check the network path to Graph (proxy, firewall, DNS, TLS inspection); nothing is lost, the next run plans this user again",
		t.attempts, now.Sub(t.first).Round(time.Second), t.lastErr)
}

// alreadyDone says whether a failure of a retried step whose earlier
// attempt may have been applied shows that it was: the user exists (create
// conflict), the object or reference is already gone, the member is
// already there.
func (e *execution) alreadyDone(t *task, ge *GraphError) bool {
	switch t.op.Kind {
	case OpCreate:
		return isUPNConflict(ge)
	case OpDelete, OpRemoveManager, OpRemoveMember, OpRestore:
		return ge.Status == http.StatusNotFound
	case OpAddMember:
		return isMemberConflict(ge)
	}
	return false
}

// lookupCreated finds the user an ambiguous create made, by its UPN. The
// new user may not be visible at once (eventual consistency), so a miss is
// retried a few times.
func (e *execution) lookupCreated(ctx context.Context, t *task) (string, error) {
	upn, _ := t.op.Fields["userPrincipalName"].(string)
	if upn == "" {
		return "", errors.New("create has no userPrincipalName")
	}
	for i := 1; ; i++ {
		e.stats.requests.Add(1)
		users, err := e.c.FindUsers(ctx, upn, "")
		if err != nil {
			return "", err
		}
		if len(users) == 1 {
			return users[0].ID, nil
		}
		if len(users) > 1 || i >= 5 {
			return "", fmt.Errorf("lookup of %s found %d users", upn, len(users))
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(backoff(i, e.c.opts.MinBackoff, e.c.opts.MaxBackoff)):
		}
	}
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
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
