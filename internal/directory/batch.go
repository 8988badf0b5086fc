package directory

// One $batch on the wire and how its answer settles each step. The answer
// falls in one of three cases: none (transport error, noAnswer), the $batch
// request itself refused (batchRefused), or one answer per step
// (stepAnswers, settleStep). Every case ends each step in exactly one of
// two ways: its Result is sent (finish, succeed) or it is returned to the
// dispatcher with notBefore set (schedule).

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	abs "github.com/microsoft/kiota-abstractions-go"
)

// runBatch sends one $batch and settles each step: success and final
// failures are reported, retriable steps are returned with notBefore set.
// The answer falls in one of three cases, each settled by its own method:
// no answer (transport error), the $batch request itself refused, or one
// answer per step.
func (e *execution) runBatch(ctx context.Context, batch []*task) []*task {
	sent := time.Now()
	body, err := e.encode(batch, sent)
	if err != nil { // cannot happen with JSON-safe Fields; report, don't loop
		e.failAll(batch, fmt.Errorf("encode $batch: %w", err))
		return nil
	}
	resp, err := e.c.send(ctx, abs.POST, e.c.ep.graphURL+"/$batch", body, nil)
	now := time.Now()
	switch {
	case err != nil:
		return e.noAnswer(ctx, batch, err, now)
	case resp.status != http.StatusOK:
		return e.batchRefused(ctx, batch, resp, sent, now)
	default:
		return e.stepAnswers(ctx, batch, resp, sent, now)
	}
}

// encode counts a new attempt of every step of batch and builds the
// $batch body.
func (e *execution) encode(batch []*task, sent time.Time) ([]byte, error) {
	steps := make([]batchStep, len(batch))
	retried := 0
	for i, t := range batch {
		steps[i] = t.req
		t.attempts++
		if t.first.IsZero() {
			t.first = sent
		}
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
	return encodeBatch(steps)
}

// failAll reports every step of batch Failed with err, no status.
func (e *execution) failAll(batch []*task, err error) {
	for _, t := range batch {
		e.finish(t, Failed, 0, "", err)
	}
}

// noAnswer settles a batch that got no answer. A credential failure fails
// every step (another attempt cannot fix it); a batch aborted when the
// cancel grace ran out has an unknown outcome and fails. Otherwise each
// step may or may not have been applied: it is retried as ambiguous.
func (e *execution) noAnswer(ctx context.Context, batch []*task, err error, now time.Time) []*task {
	var ae *AuthError
	if errors.As(err, &ae) {
		e.failAll(batch, err)
		return nil
	}
	if ctx.Err() != nil {
		e.failAll(batch, fmt.Errorf("%w: batch aborted in flight, outcome unknown", e.outer.Err()))
		return nil
	}
	e.c.log.DebugContext(ctx, "$batch transport error", "steps", len(batch), "err", err)
	var retry []*task
	for _, t := range batch {
		t.lastErr, t.lastStatus = fmt.Errorf("$batch: %w", err), 0
		t.ambiguous = true
		if e.schedule(t, retryTransient, 0, now) {
			retry = append(retry, t)
		}
	}
	return retry
}

// batchRefused settles a batch whose $batch request was answered with an
// error status: every step shares that answer. A 429 is one throttle event
// for the pacer, which holds every send for its Retry-After.
func (e *execution) batchRefused(ctx context.Context, batch []*task, resp *rawResponse, sent, now time.Time) []*task {
	ge := e.c.graphError(ctx, resp.status, resp.header, resp.body, now)
	class := classify("batch", resp.status)
	e.c.log.DebugContext(ctx, "$batch refused", "status", resp.status, "code", ge.Code, "request_id", ge.RequestID)
	if class == retryThrottled {
		e.throttled(1)
		var tally stepTally
		for range batch {
			tally.count(resp.status, ge)
		}
		e.pace.observe(sent, now, 0, &tally)
	}
	var retry []*task
	for _, t := range batch {
		t.lastErr, t.lastStatus, t.requestID = ge, resp.status, ge.RequestID
		if e.retryOrFail(t, class, ge, now) {
			retry = append(retry, t)
		}
	}
	return retry
}

// stepAnswers settles a batch Graph answered step by step, then tells the
// pacer what the batch showed of the quota.
func (e *execution) stepAnswers(ctx context.Context, batch []*task, resp *rawResponse, sent, now time.Time) []*task {
	batchReqID := resp.header.Get("request-id")
	answers, err := decodeBatch(resp.body, len(batch))
	if err != nil {
		answers = make([]*batchStepResponse, len(batch))
	}
	var tally stepTally
	var retry []*task
	for i, t := range batch {
		if e.settleStep(ctx, t, answers[i], batchReqID, now, &tally) {
			retry = append(retry, t)
		}
	}
	if tally.throttled > 0 {
		e.throttled(tally.throttled)
	}
	e.pace.observe(sent, now, tally.accepted, &tally)
	e.c.log.DebugContext(ctx, "$batch", "steps", len(batch), "accepted", tally.accepted, "throttled", tally.throttled,
		"retry", len(retry), "request_id", batchReqID, "latency", now.Sub(sent))
	return retry
}

// stepTally is what the step answers of one batch tell the pacer.
type stepTally struct {
	accepted  int // steps that spent quota: 2xx, and 4xx other than 429
	throttled int // 429 steps
	// The 429 steps per budget their x-ms-throttle-scope names, and the
	// shortest Retry-After each asked for.
	byScope [3]int
	pause   [3]time.Duration
}

// count tallies one answer; ge is its parsed error (nil for a success).
func (s *stepTally) count(status int, ge *GraphError) {
	switch {
	case status == http.StatusTooManyRequests:
		s.throttled++
		sc := parseThrottleScope(ge.throttleScope)
		s.byScope[sc]++
		if ra := ge.RetryAfter; s.pause[sc] == 0 || (ra > 0 && ra < s.pause[sc]) {
			s.pause[sc] = ra
		}
	case status < 500:
		s.accepted++
	}
}

// settleStep settles one step by its answer a (nil when the $batch answer
// left the step out) and says whether the step goes back to the queue.
func (e *execution) settleStep(ctx context.Context, t *task, a *batchStepResponse, batchReqID string, now time.Time, tally *stepTally) bool {
	if a == nil {
		t.lastErr = errors.New("$batch: step not answered")
		t.lastStatus = 0
		t.ambiguous = true
		return e.schedule(t, retryTransient, 0, now)
	}
	t.lastStatus = a.Status
	if a.Status >= 200 && a.Status < 300 {
		tally.count(a.Status, nil)
		t.requestID = firstNonEmpty(a.header().Get("request-id"), batchReqID)
		id := ""
		if t.op.Kind == OpCreate {
			id = createdID(a.Body)
		}
		e.succeed(t, a.Status, id, false)
		return false
	}
	ge := e.c.graphError(ctx, a.Status, a.header(), a.Body, now)
	if ge.RequestID == "" {
		ge.RequestID = batchReqID
	}
	t.requestID, t.lastErr = ge.RequestID, ge
	tally.count(a.Status, ge)
	if t.ambiguous && e.alreadyDone(t, ge) {
		e.recovered(ctx, t, ge)
		return false
	}
	return e.retryOrFail(t, classify(t.op.Kind, a.Status), ge, now)
}

// retryOrFail settles a step Graph refused with ge: reported Failed when the
// refusal is final, else scheduled by its retry class. It says whether the
// step goes back to the queue.
func (e *execution) retryOrFail(t *task, class retryClass, ge *GraphError, now time.Time) bool {
	if class == noRetry {
		e.finish(t, Failed, ge.Status, "", e.c.auth.denied(ge, t.op.Kind))
		return false
	}
	if class == retryTransient {
		t.ambiguous = true
	}
	return e.schedule(t, class, ge.RetryAfter, now)
}

// recovered reports a step whose earlier attempt, of unknown outcome, the
// refusal ge shows was applied. A create needs the id of the user it made.
func (e *execution) recovered(ctx context.Context, t *task, ge *GraphError) {
	if t.op.Kind != OpCreate {
		e.succeed(t, ge.Status, "", true)
		return
	}
	id, err := e.lookupCreated(ctx, t)
	if err != nil {
		e.finish(t, Failed, ge.Status, "", fmt.Errorf("create retried after an unknown outcome met a conflict, and the lookup failed: %w (conflict: %v)", err, ge))
		return
	}
	e.succeed(t, ge.Status, id, true)
}

func (e *execution) throttled(n int) {
	e.add(func(s *statCounters) { s.throttled.Add(int64(n)) })
	if m := e.c.opts.Metrics; m != nil {
		m.Throttled(n)
	}
}

// schedule decides the next attempt of a failed step and says whether it
// goes back to the queue (notBefore set), or reports it Failed when its
// retries are spent.
func (e *execution) schedule(t *task, class retryClass, retryAfter time.Duration, now time.Time) bool {
	o := e.c.opts
	var wait time.Duration
	switch class {
	case retryThrottled:
		t.throttles++
		if t.throttles > o.MaxThrottled {
			e.finish(t, Failed, t.lastStatus, "", t.lastErr)
			return false
		}
		wait = retryAfter
		if wait <= 0 {
			wait = backoff(t.throttles, o.MinBackoff, o.MaxBackoff)
		}
	case retryTransient:
		if t.attempts-t.throttles >= o.MaxAttempts {
			e.finish(t, Failed, t.lastStatus, "", gaveUp(t, now))
			return false
		}
		wait = max(backoff(t.attempts-t.throttles, o.MinBackoff, o.MaxBackoff), retryAfter)
	case retryNotYet:
		t.notFound++
		again, after := e.c.notFoundRetry(t.op, t.notFound, now)
		if !again || t.attempts-t.throttles >= o.MaxAttempts {
			e.finish(t, Failed, t.lastStatus, "", t.lastErr)
			return false
		}
		wait = after
	case retryAuth:
		t.authRetry++
		if t.authRetry > 1 {
			e.finish(t, Failed, t.lastStatus, "", t.lastErr)
			return false
		}
	}
	t.notBefore = now.Add(wait)
	return true
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
			return users[0].ObjectID, nil
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
