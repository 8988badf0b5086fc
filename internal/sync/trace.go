package sync

// Provision on demand: a run restricted to one user (RunOptions.User) and
// the trace of its path (RunOptions.Trace), for an operator debugging one
// person: the source row, the mirror's view, the decision, each Graph
// request and its answer, and the history rows written.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/store"
)

// ErrUnknownUser is the error of a one-user run whose external_id is
// neither in the job's source nor linked by the job: there is nothing to
// provision or to take away. No run is recorded.
var ErrUnknownUser = errors.New("neither in the source nor linked by the job")

// TraceKind names a step of a user's path through a run.
type TraceKind string

// Trace event kinds, in the order a user meets them.
const (
	TraceRun      TraceKind = "run"      // the run was recorded (Run)
	TraceSource   TraceKind = "source"   // the source row joined with link and mirror (Row)
	TraceDecision TraceKind = "decision" // the planner's decision (Decision)
	TraceRequest  TraceKind = "request"  // a Graph request handed to the executor (Request)
	TraceAnswer   TraceKind = "answer"   // Graph's final answer to it (Answer)
	TraceHistory  TraceKind = "history"  // history rows written (Operations)
)

// TraceEvent is one step of a user's path. Only the field of its Kind is
// set. Nothing in it is a secret: a create's password is never in a
// request (its attribute list names passwordProfile, not its content).
type TraceEvent struct {
	Kind TraceKind `json:"kind"`
	// Pass is the apply pass (1, or 2 for deferred steps); 0 in plan mode
	// and for the run and history events.
	Pass       int               `json:"pass,omitempty"`
	ExternalID string            `json:"external_id,omitempty"`
	Run        *store.Run        `json:"run,omitempty"`
	Row        *store.SourceRow  `json:"row,omitempty"`
	Decision   *Decision         `json:"decision,omitempty"`
	Request    *TracedRequest    `json:"request,omitempty"`
	Answer     *TracedAnswer     `json:"answer,omitempty"`
	Operations []store.Operation `json:"operations,omitempty"`
}

// TracedRequest is a Graph request as a trace shows it.
type TracedRequest struct {
	Seq    int64  `json:"seq"` // the history row's seq (the batch step's key)
	Action Action `json:"action"`
	Method string `json:"method"`
	Path   string `json:"path"` // relative to the Graph base URL (…/v1.0)
	// Attributes are the names of the properties the body sets, sorted.
	Attributes []string `json:"attributes,omitempty"`
}

// TracedAnswer is Graph's final answer to one request.
type TracedAnswer struct {
	Seq        int64          `json:"seq"`
	Action     Action         `json:"action"`
	Status     store.OpStatus `json:"status"`
	HTTPStatus int            `json:"http_status,omitempty"`
	RequestID  string         `json:"request_id,omitempty"`
	ObjectID   string         `json:"object_id,omitempty"`
	Attempts   int            `json:"attempts,omitempty"`
	LatencyMS  int            `json:"latency_ms,omitempty"`
	ErrorCode  string         `json:"error_code,omitempty"`
	Message    string         `json:"message,omitempty"`
}

// checkUser says whether xid is in the job's source or linked by it (the
// source stream carries linked leavers too), before anything is locked or
// recorded: a typo costs one read, not a run in the history.
func (e *Engine) checkUser(ctx context.Context, job config.Job, xid string) error {
	found := errors.New("found")
	err := e.Store.StreamSource(ctx, job.Name, job.Source, func(row store.SourceRow) error {
		if row.ExternalID == xid {
			return found
		}
		return nil
	})
	switch {
	case errors.Is(err, found):
		return nil
	case err != nil:
		return fmt.Errorf("look for user %s: %w", xid, err)
	}
	return fmt.Errorf("user %q: %w %s (source %s)", xid, ErrUnknownUser, job.Name, job.Source)
}

// streamSource streams the job's source, only the named user's row in a
// one-user run. The filter is applied to the joined stream, not to the
// query, so what depends on the other rows (a UPN wanted twice, a
// duplicated external_id) is judged as in a full run.
func (r *runner) streamSource(ctx context.Context, fn func(store.SourceRow) error) error {
	xid := r.opts.User
	return r.e.Store.StreamSource(ctx, r.job.Name, r.job.Source, func(row store.SourceRow) error {
		if xid != "" && row.ExternalID != xid {
			return nil
		}
		return fn(row)
	})
}

// unbounded is the change budget of a one-user run: every kind lifted, so
// the user's change is neither withheld nor counted against a bound.
func unbounded(cfg config.ChangeBudget) *budget {
	b := newBudget(cfg, 0)
	for _, k := range BudgetKinds {
		b.lifted[k] = true
	}
	return b
}

// trace hands ev to the run's observer, one event at a time (the producer
// and the consumer of a pass both report).
func (r *runner) trace(ev TraceEvent) {
	if r.opts.Trace == nil {
		return
	}
	r.traceMu.Lock()
	defer r.traceMu.Unlock()
	r.opts.Trace(ev)
}

func (r *runner) traceRow(pass int, row store.SourceRow, dec Decision) {
	if r.opts.Trace == nil {
		return
	}
	r.trace(TraceEvent{Kind: TraceSource, Pass: pass, ExternalID: row.ExternalID, Row: &row})
	r.trace(TraceEvent{Kind: TraceDecision, Pass: pass, ExternalID: row.ExternalID, Decision: &dec})
}

func (r *runner) traceRequest(pass int, o outgoing) {
	if r.opts.Trace == nil {
		return
	}
	req := &TracedRequest{Seq: o.op.Key, Action: o.ps.step.Action, Attributes: slices.Sorted(maps.Keys(o.op.Fields))}
	if o.op.Kind == directory.OpCreate && o.op.Password != "" {
		req.Attributes = append(req.Attributes, "passwordProfile")
		slices.Sort(req.Attributes)
	}
	method, path, err := directory.RequestLine(o.op)
	if err != nil {
		method, path = "?", err.Error() // the executor fails it alike
	}
	req.Method, req.Path = method, path
	r.trace(TraceEvent{Kind: TraceRequest, Pass: pass, ExternalID: o.ps.externalID, Request: req})
}

func (r *runner) traceAnswer(pass int, ps *pendingStep, res directory.Result, c store.Operation) {
	if r.opts.Trace == nil {
		return
	}
	r.trace(TraceEvent{Kind: TraceAnswer, Pass: pass, ExternalID: ps.externalID, Answer: &TracedAnswer{
		Seq: c.Seq, Action: ps.step.Action, Status: c.Status, HTTPStatus: c.HTTPStatus, RequestID: c.RequestID,
		ObjectID: res.ObjectID, Attempts: c.Attempts, LatencyMS: c.LatencyMS, ErrorCode: c.ErrorCode, Message: c.Message}})
}

// traceHistory reports rows just written: whole rows when recorded,
// completions (seq, status, answer) when settled.
func (r *runner) traceHistory(ops []store.Operation) {
	if r.opts.Trace == nil || len(ops) == 0 {
		return
	}
	r.trace(TraceEvent{Kind: TraceHistory, Operations: slices.Clone(ops)})
}
