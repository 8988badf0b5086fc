package sync

// The admit stage of an apply pass: one source row in, the user's pending
// operations out (rows to record, links to write, requests to send). It
// plans the row, asks the back-off whether the user sits this run out,
// performs a re-key, and asks the change budget about each step. It runs
// in the pass's single producer.

import (
	"time"

	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/store"
)

// admitted is what the admit stage makes of one source row: links and
// rows to write before the requests are handed to the executor.
type admitted struct {
	links []store.Link
	ops   []store.Operation
	sends []outgoing
}

// outgoing is a recorded operation to send once its batch is written.
type outgoing struct {
	op directory.Operation
	ps *pendingStep
}

// admit turns one source row into the user's pending operations.
func (p *applyPass) admit(row store.SourceRow) (admitted, error) {
	r := p.r
	var out admitted
	p.progress.rows.Add(1)
	dec, err := p.decide(&row)
	if err != nil {
		return out, err
	}
	r.traceRow(p.pass, row, dec)
	if p.pass == 1 {
		if dec.Rekey != nil {
			var moved *store.Operation
			if dec, moved = p.rekey(dec); moved != nil {
				out.ops = append(out.ops, *moved)
			}
		}
		for _, n := range dec.Notes {
			r.log.InfoContext(p.ctx, "source row note", "external_id", row.ExternalID, "note", n)
		}
	} else {
		switch dec.Primary() {
		case ActCreate, ActRestore, ActAdopt, ActSkip:
			return out, nil // pass 1 did not get this user into the directory
		}
	}
	hash := DesiredHash(dec)
	if op, skip := p.backingOff(row.ExternalID, dec, hash); skip {
		out.ops = append(out.ops, op)
		return out, nil
	}
	if p.pass == 1 && dec.Primary() == ActRestore {
		// A restored user comes back as it was deleted (disabled, old
		// attributes): pass 2 plans it again against the directory.
		p.deferred[row.ExternalID] = struct{}{}
	}
	if dec.Unchanged() {
		if p.pass == 1 {
			r.count(func(c *store.RunCounts) { c.Unchanged++ })
		}
		if dec.Link != nil {
			l := *dec.Link
			l.Job = r.job.Name
			out.links = append(out.links, l)
		}
		return out, nil
	}
	return out, p.admitSteps(row, dec, hash, &out)
}

// decide plans the row. In pass 1 a user the back-off leaves alone costs no
// Graph lookup: if the plan without it asks what failed, it is skipped
// anyway (a directory user that appeared since is in the mirror and
// changes the plan).
func (p *applyPass) decide(row *store.SourceRow) (Decision, error) {
	r := p.r
	if p.pass == 1 {
		if b, ok := p.bo.waiting(row.ExternalID); ok {
			if d := Plan(*row, r.policy, r.now); DesiredHash(d) == b.DesiredHash {
				return d, nil
			}
		}
		if err := r.lookupLostCreate(p.ctx, row); err != nil {
			return Decision{}, err
		}
	}
	return Plan(*row, r.policy, r.now), nil
}

// rekey moves the link of a re-keyed user before anything of it is written
// or sent. When the move fails the user fails alone with the reason;
// otherwise the old id's history row says where its account went.
func (p *applyPass) rekey(dec Decision) (Decision, *store.Operation) {
	r := p.r
	st := dec.Steps[0]
	if msg := r.moveLink(p.ctx, dec.Rekey); msg != "" {
		return Decision{ExternalID: dec.ExternalID, UPN: dec.UPN,
			Steps: []Step{{Action: ActRekey, ObjectID: st.ObjectID, Failure: msg, Changes: st.Changes}}}, nil
	}
	return dec, &store.Operation{RunID: r.run.ID, Seq: r.nextSeq(), ExternalID: dec.Rekey.From, ObjectID: st.ObjectID,
		Action: string(ActRekey), Changes: st.Changes, Message: st.Message, Status: store.OpSucceeded}
}

// backingOff returns the skipped row of a user the back-off leaves alone
// this run (pass 1 only).
func (p *applyPass) backingOff(xid string, dec Decision, hash string) (store.Operation, bool) {
	if p.pass != 1 {
		return store.Operation{}, false
	}
	b, skip := p.bo.check(xid, dec, hash)
	if !skip {
		return store.Operation{}, false
	}
	r := p.r
	st := dec.Steps[0]
	r.count(func(c *store.RunCounts) { c.BackingOff++ })
	r.countStatus(store.OpSkipped, 1)
	r.log.DebugContext(p.ctx, "user backing off", "external_id", xid, "upn", dec.UPN,
		"failures", b.Failures, "next_attempt_at", b.NextAttemptAt)
	return store.Operation{RunID: r.run.ID, Seq: r.nextSeq(), ExternalID: xid, ObjectID: st.ObjectID,
		Action: string(st.Action), Changes: st.Changes, Status: store.OpSkipped,
		Message: backingOffMessage(b, r.job.Name), DesiredHash: hash}, true
}

// admitSteps records each step of a changed user: a row per step, and a
// request for each step that has one to send.
func (p *applyPass) admitSteps(row store.SourceRow, dec Decision, hash string, out *admitted) error {
	r := p.r
	base := store.Link{Job: r.job.Name, ExternalID: row.ExternalID}
	if row.Link != nil {
		base = *row.Link
	}
	if dec.Link != nil {
		base = *dec.Link
	}
	base.Job = r.job.Name
	claim, claims := claimLink(base, row, dec)
	if claims {
		base = claim
	}
	if dec.Link != nil || claims {
		out.links = append(out.links, base)
	}
	u := &pendingUser{link: base, desired: dec.Desired, backoff: p.bo != nil, hash: hash,
		justCreated: row.Link != nil && row.Link.State == store.LinkCreating || dec.Primary() == ActAdopt}
	for _, st := range dec.Steps {
		if st.Deferred && p.pass == 1 {
			p.deferred[row.ExternalID] = struct{}{}
			continue
		}
		if st.Deferred {
			st.Failure = deferredFailure(st, r.job.Name)
		}
		op := store.Operation{RunID: r.run.ID, Seq: r.nextSeq(), ExternalID: row.ExternalID, ObjectID: st.ObjectID,
			Action: string(st.Action), Changes: st.Changes, Message: st.Message, DesiredHash: hash}
		r.countAction(st.Action)
		send, err := p.admitStep(dec.UPN, st, u, &op)
		if err != nil {
			return err
		}
		if send != nil {
			out.sends = append(out.sends, *send)
		}
		out.ops = append(out.ops, op)
	}
	if u.remaining == 0 && u.dirty {
		out.links = append(out.links, u.link)
	}
	return nil
}

// claimLink returns the user's link naming the object its first request
// acts on, when the link does not name it yet: an adoption, a lost create
// found again, a leaver's recovered create to disable. Written with the
// user's other links before anything of the user is sent, it claims the
// account in PostgreSQL before the first Graph write to it: one link per
// object across jobs (migration 009), so of two jobs that planned the same
// adoption at the same time, the second one's link is refused and that user
// fails before anything is sent (failRefused). The claim is active: should
// the request then fail, or the run die before sending it, the next run
// plans the user as linked and sends the same changes again (an adoption's
// PATCH, a disable), and no other job can take the account meanwhile.
// A create claims its object when its result's link is written (settle).
func claimLink(base store.Link, row store.SourceRow, dec Decision) (store.Link, bool) {
	for _, st := range dec.Steps {
		if st.Failure != "" || st.ObjectID == "" || st.Kind == directory.OpCreate {
			continue
		}
		if strings.EqualFold(st.ObjectID, base.ObjectID) {
			return base, false
		}
		l := base
		l.ObjectID, l.State, l.DisabledAt, l.DeletedAt = st.ObjectID, store.LinkActive, nil, nil
		if k := row.Candidate; l.UserPrincipalName == "" && k != nil && strings.EqualFold(k.ObjectID, st.ObjectID) {
			l.UserPrincipalName = k.UPN()
		}
		return l, true
	}
	return base, false
}

// admitStep sets the status of step st's row op: withheld by the budget,
// failed before sending, done without a request, or pending with the
// request to send.
func (p *applyPass) admitStep(upn string, st Step, u *pendingUser, op *store.Operation) (*outgoing, error) {
	r := p.r
	xid := op.ExternalID
	withheld := p.withhold(xid, st)
	switch {
	case withheld != "":
		op.Status, op.Message = store.OpPlanned, withheld
		r.countStatus(store.OpPlanned, 1)
		r.count(func(c *store.RunCounts) { c.Withheld++ })
	case st.Failure != "":
		op.Status, op.Message = store.OpFailed, st.Failure
		r.countStatus(store.OpFailed, 1)
		r.noteFailure(xid, st.Failure, false)
		r.log.InfoContext(p.ctx, "user not provisioned", "external_id", xid, "upn", upn,
			"action", st.Action, "reason", st.Failure)
	case st.Kind == "":
		// Nothing to send (an adoption needing no change).
		op.Status = store.OpSucceeded
		r.countStatus(store.OpSucceeded, 1)
		u.link = ApplyToLink(u.link, st, "", u.desired, r.now)
		u.dirty = true
	default:
		op.Status = store.OpPending
		dop := directory.Operation{Key: op.Seq, Kind: st.Kind, ObjectID: st.ObjectID, RelatedID: st.RelatedID,
			Fields: st.Fields, Recent: recentlyWritten(&u.link, r.now)}
		if st.Kind == directory.OpCreate {
			pw, err := NewPassword(r.job.Password.Length)
			if err != nil {
				return nil, err
			}
			dop.Password, dop.ForceChangePassword = pw, r.policy.ForceChangePassword
		}
		u.remaining++
		p.progress.planned.Add(1)
		return &outgoing{op: dop, ps: &pendingStep{user: u, step: st, externalID: xid}}, nil
	}
	return nil, nil
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

// failRefused fails, before anything is sent, the users whose link the
// database refused: their recorded rows become failed with the reason, and
// their requests are dropped.
func (p *applyPass) failRefused(refused map[string]error, rows []store.Operation, sends []outgoing) []outgoing {
	r := p.r
	noted := map[string]bool{}
	for i := range rows {
		o := &rows[i]
		err, ok := refused[o.ExternalID]
		if !ok || (o.Status != store.OpPending && o.Status != store.OpSucceeded) {
			continue
		}
		if o.Status == store.OpSucceeded {
			r.countStatus(store.OpSucceeded, -1)
		}
		o.Status = store.OpFailed
		o.Message = fmt.Sprintf("the link could not be written (%v): another link of this job names the same object; "+
			"nothing was sent for this user (worker check lists such links)", err)
		var oc *ownerConflict
		if errors.As(err, &oc) {
			o.Message = oc.beforeSend()
		}
		r.countStatus(store.OpFailed, 1)
		if !noted[o.ExternalID] {
			noted[o.ExternalID] = true
			r.noteFailure(o.ExternalID, o.Message, false)
		}
	}
	kept := sends[:0]
	for _, s := range sends {
		if _, ok := refused[s.ps.externalID]; ok {
			p.progress.planned.Add(-1)
			continue
		}
		kept = append(kept, s)
	}
	return kept
}

// lookupLostCreate asks Graph directly for the user a lost create may have
// made, when the mirror shows none: delta may lag a create by a moment, and
// creating again blindly is how duplicates are born.
func (r *runner) lookupLostCreate(ctx context.Context, row *store.SourceRow) error {
	if row.Link == nil || row.Link.State != store.LinkCreating || row.Candidate != nil || row.Desired == nil ||
		row.SourceRows > 1 { // a duplicated id is planned as a failure: nothing to look up
		return nil
	}
	upn := row.Link.UserPrincipalName
	if upn == "" {
		upn = strings.TrimSpace(row.Desired.UPN())
	}
	if upn == "" {
		return nil
	}
	users, err := r.dir.FindUsers(ctx, upn, "")
	if err != nil {
		return fmt.Errorf("look up %s after a lost create: %w", upn, err)
	}
	if len(users) > 0 {
		m := MirrorUser(users[0])
		row.Candidate = &m
	}
	return nil
}

// hashStep is the part of a step that says what it asks of Graph.
type hashStep struct {
	Action    string         `json:"a"`
	Kind      string         `json:"k,omitempty"`
	ObjectID  string         `json:"o,omitempty"`
	RelatedID string         `json:"r,omitempty"`
	Fields    map[string]any `json:"f,omitempty"`
	Deferred  bool           `json:"d,omitempty"`
	Manager   string         `json:"m,omitempty"`
	Failure   string         `json:"x,omitempty"`
}

// DesiredHash fingerprints what a decision asks of Graph: each step's
// action, request, target and fields (JSON sorts the keys). Messages and
// recorded old values are left out (they change without the request
// changing), and so is the initial password, which is not in a step.
// Unchanged users hash to "". Every admitted user gets one: the back-off
// compares it, and the history row keeps it.
func DesiredHash(dec Decision) string {
	if len(dec.Steps) == 0 {
		return ""
	}
	hs := make([]hashStep, len(dec.Steps))
	for i, s := range dec.Steps {
		hs[i] = hashStep{Action: string(s.Action), Kind: string(s.Kind), ObjectID: strings.ToLower(s.ObjectID),
			RelatedID: strings.ToLower(s.RelatedID), Fields: s.Fields, Deferred: s.Deferred,
			Manager: s.ManagerExternalID, Failure: s.Failure}
	}
	b, err := json.Marshal(hs)
	if err != nil {
		// Fields hold strings, bools and nils; this cannot happen, and a
		// hash that never matches only costs a retry.
		return "unhashable"
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// recentlyWritten says whether the user's object was written by the worker
// so recently (a run minutes ago) that a 404 on it may be replication lag
// rather than a user deleted by hand.
func recentlyWritten(l *store.Link, now time.Time) bool {
	return l != nil && !l.UpdatedAt.IsZero() && now.Sub(l.UpdatedAt) < directory.FreshFor
}
