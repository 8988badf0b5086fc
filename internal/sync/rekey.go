package sync

import (
	"context"
	"fmt"
	"github.com/entraprov/entraprov/internal/profile"
	"strings"
	"time"

	"github.com/entraprov/entraprov/internal/store"
)

// A re-key (ActRekey) moves a link to a new external_id (HR re-keyed the
// person: a rehire under a new number, or only the case of the id
// changed). The account is kept; history names both ids.

// Rekey is the link move a decision needs before its steps are sent.
type Rekey struct{ From, To string }

// planRekey plans a source row the stream joined with the link of another
// external_id (row.RekeyFrom) whose account it wants. The link moves when
// the job's matching rule allows it: the same employee id, or
// matching.adopt_by user_principal_name and the same UPN. Otherwise the row
// fails alone, naming the other id and how to resolve it, and the account
// stays linked to the old id as it is.
func planRekey(row store.SourceRow, p Policy, now time.Time) Decision {
	l, c := row.Link, row.Current
	from, to := row.RekeyFrom, row.ExternalID
	if reason := rekeyRefusal(row, p); reason != "" {
		return Decision{ExternalID: to, UPN: row.Desired.UPN(),
			Steps: []Step{{Action: ActRekey, ObjectID: l.ObjectID, Failure: reason,
				Changes: map[string]any{"external_id": change(from, to)}}}}
	}
	dec := planRow(row, p, now)
	upn := l.UserPrincipalName
	if c != nil {
		upn = c.UPN()
	}
	st := Step{Action: ActRekey, ObjectID: l.ObjectID,
		Changes: map[string]any{"external_id": change(from, to)},
		Message: fmt.Sprintf("re-keyed: the account %s (%s) linked as external_id %q is now linked as %q; the account is kept", l.ObjectID, upn, from, to)}
	dec.Steps = append([]Step{st}, dec.Steps...)
	dec.Rekey = &Rekey{From: from, To: to}
	return dec
}

// rekeyRefusal says why the job's matching rule does not let the link move
// ("" when it does).
func rekeyRefusal(row store.SourceRow, p Policy) string {
	d, l, c := row.Desired, row.Link, row.Current
	employee := strings.TrimSpace(d.Get(profile.EmployeeID))
	upn := strings.TrimSpace(d.UPN())
	have, haveUPN := "", l.UserPrincipalName
	if c != nil {
		have, haveUPN = c.Get(profile.EmployeeID), c.UPN()
	}
	switch {
	case employee != "" && employee == have:
		return ""
	case p.AdoptBy == AdoptUPN && upn != "" && (strings.EqualFold(upn, haveUPN) || strings.EqualFold(upn, l.UserPrincipalName)):
		return ""
	}
	return fmt.Sprintf("re-key refused: external_id %q wants the account %s (%s, employeeId %q) that this job links as external_id %q, "+
		"which left the source, and matching.adopt_by %s with employee_id %q does not identify it as the same person; "+
		"to move the link, give the row the account's employee_id (or set matching.adopt_by user_principal_name); "+
		"if it is another person, give the row another UPN. The account stays linked to %q meanwhile",
		row.ExternalID, l.ObjectID, haveUPN, have, row.RekeyFrom, p.AdoptBy, employee, row.RekeyFrom)
}

// moveLink performs a decision's re-key before anything of the user is
// written or sent. It returns the failure message for the user when the
// link could not move: that user fails alone, the run goes on.
func (r *runner) moveLink(ctx context.Context, rk *Rekey) string {
	wctx, cancel := context.WithTimeout(r.wctx, dbTimeout)
	defer cancel()
	if err := r.e.Store.RekeyLink(wctx, r.job.Name, rk.From, rk.To); err != nil {
		r.log.WarnContext(ctx, "could not move a link to its new external_id", "from", rk.From, "to", rk.To, "err", err)
		return fmt.Sprintf("re-key from external_id %q failed: %v; nothing was sent for this user", rk.From, err)
	}
	r.log.InfoContext(ctx, "link moved to a new external_id", "from", rk.From, "to", rk.To)
	return ""
}
