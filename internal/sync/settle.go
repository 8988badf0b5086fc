package sync

// The settle stage of an apply pass: one executor result in, the
// completion of its history row out, and, once it was the user's last step
// of the pass, the user's new link. It runs in the pass's single consumer.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	gosync "sync"
	"time"

	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/store"
)

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

// inflight maps the key of each operation handed to the executor to its
// step: the producer adds, the consumer takes.
type inflight struct {
	mu gosync.Mutex
	m  map[int64]*pendingStep
}

func (f *inflight) put(key int64, ps *pendingStep) {
	f.mu.Lock()
	f.m[key] = ps
	f.mu.Unlock()
}

func (f *inflight) take(key int64) *pendingStep {
	f.mu.Lock()
	defer f.mu.Unlock()
	ps := f.m[key]
	delete(f.m, key)
	return ps
}

// settle turns one executor result into the completion of its history row
// and, when it was the user's last step, the user's new link.
func (p *applyPass) settle(res directory.Result) (store.Operation, *store.Link) {
	r := p.r
	ps := p.inflight.take(res.Key)
	p.progress.done.Add(1)
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
	if outcome == directory.Failed && ps.step.Kind == directory.OpRemoveMember && directory.NotMember(res.Err) {
		// The membership is gone: removed by an earlier run that was killed
		// or lost the answer before its link write, or by hand. That is what
		// the source wants; failing would repeat the removal, and fail it, in
		// every run. The link forgets the group.
		outcome = directory.Succeeded
		c.Message = "not a member (already removed)"
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
		p.settleFailure(res, ps, &c)
	}
	r.countStatus(c.Status, 1)
	r.traceAnswer(p.pass, ps, res, c)
	u := ps.user
	if c.Status != store.OpSucceeded {
		u.failed = true
	}
	u.remaining--
	if u.remaining == 0 && u.backoff {
		p.bo.settle(ps.externalID, u.hash, u.fail, !u.failed)
	}
	if u.remaining == 0 && u.dirty {
		l := u.link
		return c, &l
	}
	return c, nil
}

// settleFailure fills the row c of a step Graph refused or never answered:
// Graph's error, the user's failure for the back-off, and the run's count.
func (p *applyPass) settleFailure(res directory.Result, ps *pendingStep, c *store.Operation) {
	r := p.r
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
	if c.Status != store.OpFailed {
		return
	}
	if u := ps.user; u.backoff && countsForBackoff(status, u.justCreated) && (u.fail == nil || res.Key < u.fail.seq) {
		u.fail = &failure{seq: res.Key, action: ps.step.Action, httpStatus: status, code: c.ErrorCode,
			message: c.Message, requestID: c.RequestID}
	}
	p.progress.failed.Add(1)
	r.noteFailure(ps.externalID, fmt.Sprintf("%s: %s", ps.step.Action, c.Message), true)
	r.log.WarnContext(p.ctx, "operation failed", "external_id", ps.externalID, "action", ps.step.Action,
		"status", res.HTTPStatus, "code", c.ErrorCode, "request_id", c.RequestID, "err", c.Message)
}

// ApplyToLink returns the link after step s succeeded. objectID is the
// object the step created or acted on; d the desired user (nil for a leaver).
func ApplyToLink(l store.Link, s Step, objectID string, d *store.DesiredUser, now time.Time) store.Link {
	if objectID == "" {
		objectID = s.ObjectID
	}
	if objectID != "" {
		l.ObjectID = objectID
	}
	switch s.LinkState {
	case store.LinkActive:
		l.State, l.DisabledAt, l.DeletedAt = store.LinkActive, nil, nil
	case store.LinkDisabled:
		if l.State != store.LinkDisabled || l.DisabledAt == nil {
			t := now
			l.DisabledAt = &t
		}
		l.State, l.DeletedAt = store.LinkDisabled, nil
	case store.LinkDeleted:
		t := now
		l.State, l.DeletedAt = store.LinkDeleted, &t
	}
	switch s.Kind {
	case directory.OpCreate, directory.OpUpdate:
		if d != nil {
			if upn, ok := s.Fields["userPrincipalName"].(string); ok {
				l.UserPrincipalName = upn
			} else if l.UserPrincipalName == "" {
				l.UserPrincipalName = d.UPN()
			}
			l.AppliedHash = AppliedHash(d)
		}
	case directory.OpSetManager:
		l.ManagerObjectID = s.RelatedID
	case directory.OpRemoveManager:
		l.ManagerObjectID = ""
	case directory.OpAddMember:
		if !slices.ContainsFunc(l.Groups, func(g string) bool { return strings.EqualFold(g, s.RelatedID) }) {
			l.Groups = append(slices.Clip(l.Groups), s.RelatedID)
		}
	case directory.OpRemoveMember:
		l.Groups = slices.DeleteFunc(slices.Clone(l.Groups), func(g string) bool { return strings.EqualFold(g, s.RelatedID) })
	}
	if s.Action == ActAdopt && d != nil {
		l.UserPrincipalName = d.UPN()
		l.AppliedHash = AppliedHash(d)
	}
	return l
}
