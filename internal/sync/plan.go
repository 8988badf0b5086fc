package sync

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/profile"
	"github.com/entraprov/entraprov/internal/store"
)

// Action is what a step does to a user, recorded in
// sync_operations.action and counted in Run.Counts.ByAction.
type Action string

// Actions recorded in sync_operations.action.
const (
	ActCreate      Action = "create"
	ActUpdate      Action = "update"
	ActDisable     Action = "disable"
	ActEnable      Action = "enable"
	ActDelete      Action = "delete"
	ActRestore     Action = "restore"
	ActManager     Action = "manager"
	ActGroupAdd    Action = "group_add"
	ActGroupRemove Action = "group_remove"
	ActAdopt       Action = "adopt"
	ActSkip        Action = "skip"
	// ActRekey records a link moved to a new external_id (rekey.go).
	ActRekey Action = "rekey"
)

// Step is one planned action on one user: one sync_operations row and at
// most one Graph request.
type Step struct {
	Action Action
	// Kind is the Graph request to send; "" when nothing is sent (a
	// validation failure, or an adoption that needs no PATCH).
	Kind      directory.OpKind
	ObjectID  string // target user ("" for a create)
	RelatedID string // manager or group object id
	// Fields are the Graph properties of a create or PATCH; nil clears one.
	Fields map[string]any
	// Changes is what history records: the fields with their old and new
	// values, the manager or group. Never a secret.
	Changes map[string]any
	// Failure, when set, fails the step at plan time with this message;
	// nothing is sent.
	Failure string
	// Message is an informational note for history (why a create is
	// repeated, that a lost create was recovered, …).
	Message string
	// Deferred steps wait for a second pass in the same run: the user or
	// the manager does not exist in the directory yet.
	Deferred bool
	// LinkState is the link's state once the step succeeded ("": unchanged).
	LinkState store.LinkState
	// ManagerExternalID is the desired manager (manager steps), for the
	// message when it never gets provisioned.
	ManagerExternalID string
}

// Decision is the plan for one user.
type Decision struct {
	ExternalID string
	UPN        string
	// Steps are independent of each other once Link is written, except that
	// Deferred steps need the first pass to have succeeded.
	Steps []Step
	// Link, when not nil, is written before any step is sent: the
	// LinkCreating marker of a create (so a lost answer is recovered on the
	// next run) or a correction that needs no Graph request.
	Link *store.Link
	// Desired is the validated, normalised desired user (nil for a leaver).
	Desired *store.DesiredUser
	// Notes are remarks on the row that fail nothing (a self-manager
	// ignored); the engine logs them and history carries them on the
	// user's first step.
	Notes []string
	// Rekey, when set, moves the link from another external_id to this one
	// before anything else of the user is written (rekey.go).
	Rekey *Rekey
}

// Unchanged reports a user that needs nothing.
func (d Decision) Unchanged() bool { return len(d.Steps) == 0 }

// Primary is the action of the first step ("" if none).
func (d Decision) Primary() Action {
	if len(d.Steps) == 0 {
		return ""
	}
	return d.Steps[0].Action
}

// Plan decides what to do for one row of the job's ordered join. It is pure:
// the same row, policy and time give the same decision.
func Plan(row store.SourceRow, p Policy, now time.Time) Decision {
	var dec Decision
	if row.RekeyFrom != "" && row.Link != nil && row.Desired != nil && row.SourceRows <= 1 {
		dec = planRekey(row, p, now)
	} else {
		dec = planRow(row, p, now)
	}
	if row.SharedWith != "" && !dec.Unchanged() {
		// Another job links the same account: whatever this job would do,
		// the other would undo. Neither acts until one link is released.
		dec.Steps = []Step{{Action: dec.Primary(), ObjectID: row.Link.ObjectID, Failure: fmt.Sprintf(
			"conflict: the account %s is also linked by job %s; a job never enables, disables or deletes another job's account, "+
				"so nothing is done until one of the two links is released (worker check lists it; README, \"Moving a user between jobs\")",
			row.Link.ObjectID, row.SharedWith)}}
		dec.Link, dec.Rekey = nil, nil
	}
	return dec
}

// planRow has a named result: dropUnmanagedRemovals is deferred on it.
func planRow(row store.SourceRow, p Policy, now time.Time) (dec Decision) {
	dec = Decision{ExternalID: row.ExternalID}
	if row.Link != nil {
		dec.UPN = row.Link.UserPrincipalName
	}
	if row.SourceRows > 1 {
		planDuplicate(&dec, row, p)
		return dec
	}
	// On the named result, whichever branch below returns.
	defer dropUnmanagedRemovals(&dec, p)
	leaver := row.Desired == nil || !row.Desired.AccountEnabled
	if leaver && !onLeaveLinked(row) {
		planLeaver(&dec, row, p, now)
		return dec
	}

	d, problems := Validate(row, p)
	dec.UPN = d.UPN()
	dec.Desired = &d
	if selfManaged(row) {
		dec.Notes = append(dec.Notes, fmt.Sprintf("manager_external_id %q names the user itself: treated as no manager", row.ExternalID))
	}
	defer func() {
		if len(dec.Notes) > 0 && len(dec.Steps) > 0 && dec.Steps[0].Failure == "" {
			dec.Steps[0].Message = strings.TrimPrefix(dec.Steps[0].Message+"; "+strings.Join(dec.Notes, "; "), "; ")
		}
	}()
	if leaver {
		planOnLeave(&dec, p, row, &d, problems, now)
		return dec
	}
	if len(problems) > 0 {
		action := ActCreate
		if row.Link != nil && row.Link.State != store.LinkCreating {
			action = ActUpdate
		}
		dec.Steps = []Step{{Action: action, Failure: strings.Join(problems, "; ")}}
		return dec
	}

	switch {
	case row.Link == nil:
		planUnlinked(&dec, row, &d, p)
	case row.Link.State == store.LinkCreating || row.Link.ObjectID == "":
		planRecovery(&dec, row, &d, p)
	case row.Current == nil:
		// The linked object is gone for good (purged, or deleted by hand and
		// purged): provision the user again under a new object.
		dec.Steps = []Step{createStep(&d, p, fmt.Sprintf("linked object %s no longer exists in the directory; creating the user again", row.Link.ObjectID))}
		dec.Link = creatingLink(row, &d)
		deferFollowUps(&dec, row, &d)
	case row.Current.Deleted:
		dec.Steps = []Step{{
			Action: ActRestore, Kind: directory.OpRestore, ObjectID: row.Link.ObjectID,
			LinkState: store.LinkDisabled,
			Message:   "the user is back in the source; restoring from deleted items",
		}}
		deferFollowUps(&dec, row, &d)
	default:
		planLinked(&dec, p, row, &d)
	}
	return dec
}

// planLeaver handles a user who left the source or whose account_enabled is
// false.
//
// Leave is not leaving: a row still in the source with account_enabled =
// false (parental leave, sabbatical, suspension) disables the account and
// keeps it, whatever leaver.action says; HR still has the person. Only a
// user who left the source (scoped out or deleted) follows leaver.action,
// so only they are ever deleted, and leaver.action ignore leaves only them
// alone.
func planLeaver(dec *Decision, row store.SourceRow, p Policy, now time.Time) {
	l, c := row.Link, row.Current
	onLeave := row.Desired != nil
	if l == nil || p.LeaverAction == LeaverIgnore && !onLeave {
		return // never ours, or the job leaves leavers alone
	}
	if !onLeave && row.ClaimedByInvalid != "" {
		// A row with a padded or missing external_id wants this user (its
		// trimmed id or its UPN): the source is broken, not the person gone.
		// That row fails with the reason; this account is kept as is.
		return
	}
	if l.State == store.LinkCreating || l.ObjectID == "" {
		// A create of ours may have landed before the user left: if the
		// directory holds it, take it back and disable it; otherwise there
		// is nothing to undo.
		k := row.Candidate
		if k == nil || k.Deleted || row.CandidateOwner != "" || !recoverable(l, k, row.Desired) {
			return
		}
		if !k.AccountEnabled {
			nl := *l
			nl.ObjectID, nl.State = k.ObjectID, store.LinkDisabled
			dec.Link = &nl
			return
		}
		dec.Steps = []Step{disableStep(k.ObjectID, "recovered a create whose answer was lost; the user has left the source")}
		return
	}
	if c == nil {
		return // gone from the directory: nothing left to disable
	}
	if c.Deleted {
		if l.State != store.LinkDeleted {
			nl := *l
			nl.State = store.LinkDeleted
			if nl.DeletedAt == nil {
				t := now
				nl.DeletedAt = &t
			}
			dec.Link = &nl
		}
		return
	}
	if c.AccountEnabled {
		reason := "the user left the source"
		if onLeave {
			reason = onLeaveReason
		}
		dec.Steps = []Step{disableStep(l.ObjectID, reason)}
		return
	}
	// Disabled already. The grace period runs from when we saw it disabled.
	if nl := disabledLink(l, now); nl != nil {
		dec.Link = nl
		return
	}
	if p.LeaverAction == LeaverDelete && !onLeave && !now.Before(l.DisabledAt.Add(p.DeleteAfter)) {
		dec.Steps = []Step{{
			Action: ActDelete, Kind: directory.OpDelete, ObjectID: l.ObjectID, LinkState: store.LinkDeleted,
			Message: fmt.Sprintf("disabled since %s, longer than leaver.delete_after (%s); soft-deleting (restorable for 30 days)",
				l.DisabledAt.UTC().Format(time.RFC3339), p.DeleteAfter),
		}}
	}
}

// onLeaveReason is the history message of the disable of a user on leave.
const onLeaveReason = "account_enabled is false in the source (on leave): disabled, the account is kept"

// onLeaveLinked says whether row is a user on leave (in the source with
// account_enabled = false) whose linked account exists: HR still keeps
// that person's record, so planOnLeave keeps the account's attributes
// current. Any other leaver, and an on-leave row whose link or account is
// not there, is planLeaver's.
func onLeaveLinked(row store.SourceRow) bool {
	l, c := row.Link, row.Current
	return row.Desired != nil && !row.Desired.AccountEnabled && l != nil &&
		l.State != store.LinkCreating && l.ObjectID != "" && l.State != store.LinkDeleted &&
		c != nil && !c.Deleted
}

// planOnLeave plans a user on leave whose account exists (onLeaveLinked):
// disabled as planLeaver would, never deleted, and otherwise kept like a
// linked user: the attributes HR changes meanwhile (the leave date that
// drives Lifecycle Workflows leaver tasks, title, department) and the
// manager reach the directory during the leave, not on return.
//
// One PATCH carries the disable and the changed attributes when both are
// due; an account disabled already gets an update alone. Two things never
// hold back the disable: an invalid row (the disable goes alone and the
// attribute update fails with the reason, as a second step of the user),
// and an attribute change the change budget bounds (a clear, a rename): it
// goes as a separate update, so withholding it leaves the disable alone.
//
// Groups are left as they are, as planLeaver leaves them: the row's groups
// describe the access of an enabled account; adding a disabled one may
// spend a group-based licence on someone who cannot sign in, removing is a
// budgeted destructive change, and planLinked reconciles both on return.
func planOnLeave(dec *Decision, p Policy, row store.SourceRow, d *store.DesiredUser, problems []string, now time.Time) {
	l, c := row.Link, row.Current
	var steps []Step
	if c.AccountEnabled {
		steps = append(steps, disableStep(l.ObjectID, onLeaveReason))
	}
	if len(problems) > 0 {
		// Nothing of the invalid row is applied: keep the record of what
		// was (no applied hash), and let the disable go.
		dec.Desired = nil
		dec.UPN = l.UserPrincipalName
		dec.Steps = append(steps, Step{Action: ActUpdate, ObjectID: l.ObjectID, Failure: strings.Join(problems, "; ")})
		if len(steps) == 0 {
			dec.Link = disabledLink(l, now)
		}
		return
	}
	fields, changes := diff(p.schema(), d, c)
	if len(fields) > 0 {
		update := Step{Action: ActUpdate, Kind: directory.OpUpdate, ObjectID: l.ObjectID, Fields: fields, Changes: changes,
			LinkState: store.LinkDisabled, Message: "on leave: attributes kept current, the account stays disabled"}
		// A request of its own after the disable, never inside it: a value
		// Graph refuses (one Validate let through) must not keep a
		// leaver's account enabled, run after run. The leave date still
		// lands in the same run as the disable.
		switch {
		case fields["userPrincipalName"] != nil && row.UPNReleasedBy != "":
			update.Message = fmt.Sprintf("renamed from %s", c.UPN())
			steps = append(steps, planSwap(update, row, d)...)
		default:
			if _, ok := fields["userPrincipalName"]; ok {
				update.Message = fmt.Sprintf("on leave: renamed from %s, the account stays disabled", c.UPN())
			}
			steps = append(steps, update)
		}
	}
	if len(steps) == 0 {
		dec.Link = disabledLink(l, now)
	}
	dec.Steps = append(steps, managerSteps(row, d, c, l.ObjectID, *l)...)
}

// disabledLink is l's correction when the account is disabled already (by
// hand, or by a run whose answer was lost): the grace period runs from
// when we saw it disabled. nil when the record is right.
func disabledLink(l *store.Link, now time.Time) *store.Link {
	if l.State == store.LinkDisabled && l.DisabledAt != nil {
		return nil
	}
	nl := *l
	nl.State = store.LinkDisabled
	if nl.DisabledAt == nil {
		t := now
		nl.DisabledAt = &t
	}
	return &nl
}

func disableStep(objectID, reason string) Step {
	return Step{
		Action: ActDisable, Kind: directory.OpUpdate, ObjectID: objectID,
		Fields:    map[string]any{"accountEnabled": false},
		Changes:   map[string]any{"accountEnabled": change(true, false)},
		LinkState: store.LinkDisabled, Message: reason,
	}
}

// planUnlinked handles a desired user no link of this job names.
func planUnlinked(dec *Decision, row store.SourceRow, d *store.DesiredUser, p Policy) {
	k := row.Candidate
	if k != nil && k.Deleted {
		k = nil // a soft-deleted stranger does not hold the UPN for a create
	}
	if k == nil {
		dec.Steps = []Step{createStep(d, p, "")}
		dec.Link = creatingLink(row, d)
		deferFollowUps(dec, row, d)
		return
	}
	if !adoptable(p, row, k, d) {
		dec.Steps = []Step{{Action: ActSkip, ObjectID: k.ObjectID, Failure: conflictMessage(p, row, k, d)}}
		return
	}
	adopt(dec, p, row, d, k, fmt.Sprintf("adopted an existing user by matching.adopt_by %s", p.AdoptBy))
}

// planRecovery handles a link left in LinkCreating: a create was sent and its
// answer never recorded. The directory decides whether it happened.
func planRecovery(dec *Decision, row store.SourceRow, d *store.DesiredUser, p Policy) {
	k := row.Candidate
	if k != nil && !k.Deleted && row.CandidateOwner == "" && recoverable(row.Link, k, d) {
		adopt(dec, p, row, d, k, "recovered a create whose answer was lost: the directory holds the user it created")
		dec.Steps[0].Changes["recovered"] = true
		return
	}
	if k != nil && !k.Deleted {
		// Someone else's user holds the UPN now: the same rules as for any
		// unlinked user apply.
		if adoptable(p, row, k, d) {
			adopt(dec, p, row, d, k, fmt.Sprintf("adopted an existing user by matching.adopt_by %s", p.AdoptBy))
			return
		}
		dec.Steps = []Step{{Action: ActSkip, ObjectID: k.ObjectID, Failure: conflictMessage(p, row, k, d)}}
		return
	}
	dec.Steps = []Step{createStep(d, p, "an earlier create left no user in the directory; creating again")}
	dec.Link = creatingLink(row, d)
	deferFollowUps(dec, row, d)
}

// recoverable says whether directory user k is the one our lost create made:
// it carries the UPN we sent and, when we sent one, our employeeId.
func recoverable(l *store.Link, k *store.DirectoryUser, d *store.DesiredUser) bool {
	if !strings.EqualFold(k.UPN(), l.UserPrincipalName) {
		return false
	}
	return d == nil || d.Get(profile.EmployeeID) == "" || k.Get(profile.EmployeeID) == d.Get(profile.EmployeeID)
}

func adoptable(p Policy, row store.SourceRow, k *store.DirectoryUser, d *store.DesiredUser) bool {
	if row.CandidateOwner != "" {
		return false // another job manages it: never taken over silently
	}
	switch p.AdoptBy {
	case AdoptEmployeeID:
		return d.Get(profile.EmployeeID) != "" && k.Get(profile.EmployeeID) == d.Get(profile.EmployeeID)
	case AdoptUPN:
		return strings.EqualFold(k.UPN(), d.UPN())
	}
	return false
}

func conflictMessage(p Policy, row store.SourceRow, k *store.DirectoryUser, d *store.DesiredUser) string {
	what := fmt.Sprintf("this UPN (%s)", d.UPN())
	if !strings.EqualFold(k.UPN(), d.UPN()) {
		what = fmt.Sprintf("this employeeId (%s)", d.Get(profile.EmployeeID))
	}
	if row.CandidateOwner != "" {
		return fmt.Sprintf("conflict: the user %s (%s), which has %s, is managed by job %s (external_id %s); "+
			"a job never adopts, enables, disables or deletes another job's account: remove the user from one of the two jobs' sources",
			k.ObjectID, k.UPN(), what, row.CandidateOwner, row.CandidateOwnerID)
	}
	fix := "set matching.adopt_by or rename"
	if p.AdoptBy != AdoptNone {
		fix = fmt.Sprintf("matching.adopt_by is %s and does not match it; change the rule or rename", p.AdoptBy)
	}
	return fmt.Sprintf("conflict: an unmanaged user (%s, %s) already has %s; %s", k.ObjectID, k.UPN(), what, fix)
}

// adopt links candidate k and brings it to the desired state.
func adopt(dec *Decision, p Policy, row store.SourceRow, d *store.DesiredUser, k *store.DirectoryUser, message string) {
	fields, changes := diff(p.schema(), d, k)
	if !k.AccountEnabled {
		fields["accountEnabled"] = true
		changes["accountEnabled"] = change(false, true)
	}
	step := Step{Action: ActAdopt, ObjectID: k.ObjectID, LinkState: store.LinkActive, Message: message, Changes: changes}
	if len(fields) > 0 {
		step.Kind, step.Fields = directory.OpUpdate, fields
	}
	dec.Steps = []Step{step}
	// Manager and groups go out with the adoption: the object exists.
	base := store.Link{}
	if row.Link != nil {
		base = *row.Link
	}
	dec.Steps = append(dec.Steps, followUps(row, d, k, k.ObjectID, base)...)
}

// planLinked handles a managed user that exists (not deleted) and is wanted.
func planLinked(dec *Decision, p Policy, row store.SourceRow, d *store.DesiredUser) {
	l, c := row.Link, row.Current
	fields, changes := diff(p.schema(), d, c)
	switch {
	case !c.AccountEnabled:
		fields["accountEnabled"] = true
		changes["accountEnabled"] = change(false, true)
		dec.Steps = []Step{{Action: ActEnable, Kind: directory.OpUpdate, ObjectID: l.ObjectID, Fields: fields,
			Changes: changes, LinkState: store.LinkActive, Message: "the user is wanted again (rehire)"}}
	case len(fields) > 0:
		st := Step{Action: ActUpdate, Kind: directory.OpUpdate, ObjectID: l.ObjectID, Fields: fields, Changes: changes, LinkState: store.LinkActive}
		if _, ok := fields["userPrincipalName"]; ok {
			st.Message = fmt.Sprintf("renamed from %s", c.UPN())
			if row.UPNReleasedBy != "" {
				dec.Steps = planSwap(st, row, d)
				break
			}
		}
		dec.Steps = []Step{st}
	case l.State != store.LinkActive || l.DisabledAt != nil || l.DeletedAt != nil:
		// Enabled in the directory already (by hand): only our record lags.
		nl := *l
		nl.State, nl.DisabledAt, nl.DeletedAt = store.LinkActive, nil, nil
		dec.Link = &nl
	}
	dec.Steps = append(dec.Steps, followUps(row, d, c, l.ObjectID, *l)...)
}

// followUps are the manager and group steps for an existing object; cur is
// the directory's view of it (the mirror row, or the adopted user).
func followUps(row store.SourceRow, d *store.DesiredUser, cur *store.DirectoryUser, objectID string, l store.Link) []Step {
	steps := managerSteps(row, d, cur, objectID, l)
	have := make(map[string]bool, len(l.Groups))
	for _, g := range l.Groups {
		have[strings.ToLower(g)] = true
	}
	want := make(map[string]bool, len(d.Groups))
	for _, g := range d.Groups {
		want[g] = true
		if !have[g] {
			steps = append(steps, Step{Action: ActGroupAdd, Kind: directory.OpAddMember, ObjectID: objectID, RelatedID: g,
				Changes: map[string]any{"group": g}})
		}
	}
	for _, g := range l.Groups {
		if !want[strings.ToLower(g)] {
			steps = append(steps, Step{Action: ActGroupRemove, Kind: directory.OpRemoveMember, ObjectID: objectID, RelatedID: g,
				Changes: map[string]any{"group": g}})
		}
	}
	return steps
}

// managerSteps is the manager step, if any, of an existing object.
func managerSteps(row store.SourceRow, d *store.DesiredUser, cur *store.DirectoryUser, objectID string, l store.Link) []Step {
	applied := currentManager(cur, l)
	switch {
	case d.ManagerExternalID == "" && applied != "":
		return []Step{{Action: ActManager, Kind: directory.OpRemoveManager, ObjectID: objectID,
			Changes: map[string]any{"manager": change(applied, nil)}}}
	case d.ManagerExternalID != "" && row.ManagerObjectID == "":
		return []Step{{Action: ActManager, ObjectID: objectID, Deferred: true, ManagerExternalID: d.ManagerExternalID,
			Changes: map[string]any{"manager_external_id": d.ManagerExternalID},
			Message: "the manager is not provisioned yet; set after it is"}}
	case d.ManagerExternalID != "" && !strings.EqualFold(row.ManagerObjectID, applied):
		return []Step{{Action: ActManager, Kind: directory.OpSetManager, ObjectID: objectID, RelatedID: row.ManagerObjectID,
			ManagerExternalID: d.ManagerExternalID,
			Changes:           map[string]any{"manager": change(nilIfEmpty(applied), row.ManagerObjectID), "manager_external_id": d.ManagerExternalID}}}
	}
	return nil
}

// currentManager is the manager the directory holds, as far as we know.
// A mirror that tracks managers says it outright ("" = none), so a manager
// removed or changed by hand is seen and put back. Otherwise the link's
// record of the manager we applied stands in (a manager set by hand
// elsewhere then goes unseen), unless the row names one anyway.
func currentManager(cur *store.DirectoryUser, l store.Link) string {
	switch {
	case cur != nil && cur.ManagerKnown:
		return cur.ManagerObjectID
	case cur != nil && cur.ManagerObjectID != "":
		return cur.ManagerObjectID
	}
	return l.ManagerObjectID
}

// deferFollowUps queues the manager and group steps of a user whose object
// is being created or restored: they can only be sent once it exists.
func deferFollowUps(dec *Decision, row store.SourceRow, d *store.DesiredUser) {
	if d.ManagerExternalID != "" {
		dec.Steps = append(dec.Steps, Step{Action: ActManager, Deferred: true, ManagerExternalID: d.ManagerExternalID,
			Changes: map[string]any{"manager_external_id": d.ManagerExternalID}})
	}
	have := map[string]bool{}
	if row.Link != nil {
		for _, g := range row.Link.Groups {
			have[strings.ToLower(g)] = true
		}
	}
	for _, g := range d.Groups {
		if !have[g] {
			dec.Steps = append(dec.Steps, Step{Action: ActGroupAdd, Deferred: true, RelatedID: g, Changes: map[string]any{"group": g}})
		}
	}
}

func createStep(d *store.DesiredUser, p Policy, message string) Step {
	schema := p.schema()
	fields := map[string]any{"accountEnabled": true}
	changes := map[string]any{"accountEnabled": true}
	for i, v := range d.Attrs.Expand(nil, schema.Len()) {
		// mailNickname is sent even when the job does not manage it: Graph
		// requires one on create (normalise derived it from the UPN).
		if v != "" && (schema.Managed(i) || i == profile.MailNickname) {
			schema.SetField(fields, i, v)
			changes[schema.Attrs[i].Graph] = shown(schema.Attrs[i], v)
		}
	}
	changes["forceChangePasswordNextSignIn"] = p.ForceChangePassword
	return Step{Action: ActCreate, Kind: directory.OpCreate, Fields: fields, Changes: changes, LinkState: store.LinkActive, Message: message}
}

// creatingLink is the marker written before a create is sent.
func creatingLink(row store.SourceRow, d *store.DesiredUser) *store.Link {
	l := store.Link{ExternalID: row.ExternalID}
	if row.Link != nil {
		l = *row.Link
	}
	l.ObjectID = ""
	l.UserPrincipalName = d.UPN()
	l.State = store.LinkCreating
	l.ManagerObjectID = ""
	l.Groups = nil
	l.DisabledAt, l.DeletedAt = nil, nil
	return &l
}

// diff is the minimal PATCH: the managed attributes whose desired value
// differs from the directory's (as the attribute table compares them), an
// empty desired value clearing the property. An attribute the job does not
// manage is never compared, sent or cleared.
func diff(schema *profile.Schema, d *store.DesiredUser, c *store.DirectoryUser) (fields, changes map[string]any) {
	fields, changes = map[string]any{}, map[string]any{}
	n := schema.Len()
	var wbuf, hbuf [expandBuf]string
	want, have := d.Attrs.Expand(wbuf[:0], n), c.Attrs.Expand(hbuf[:0], n)
	for i, a := range schema.Attrs {
		if !schema.Managed(i) || a.Equal(want[i], have[i]) {
			continue
		}
		if want[i] == "" && a.Required {
			continue // never clear a required property (Validate guarantees one)
		}
		schema.SetField(fields, i, want[i])
		changes[a.Graph] = change(shown(a, have[i]), shown(a, want[i]))
	}
	completeMembers(schema, fields, want, have)
	return fields, changes
}

// expandBuf sizes the stack arrays attribute values are expanded into
// (the table and a few schema extensions fit; more spill to the heap).
const expandBuf = 64

// completeMembers sends every member of a complex property (employeeOrgData)
// that a PATCH touches: Graph replaces the whole complex value, so a member
// left out would be cleared. A managed member gets its desired value, one
// the job does not manage keeps the directory's.
func completeMembers(schema *profile.Schema, fields map[string]any, want, have []string) {
	for i, a := range schema.Attrs {
		obj, ok := fields[a.Parent()].(map[string]any)
		if !ok || a.Member() == "" {
			continue
		}
		if _, set := obj[a.Member()]; set {
			continue
		}
		v := have[i]
		if schema.Managed(i) {
			v = want[i]
		}
		if v != "" {
			schema.SetField(fields, i, v)
		}
	}
}

// shown is how history records value v of a: nil for none, a list's entries.
func shown(a profile.Attr, v string) any {
	switch {
	case v == "":
		return nil
	case a.Kind == profile.List:
		return profile.SplitList(v)
	}
	return v
}

func change(from, to any) map[string]any { return map[string]any{"from": from, "to": to} }

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// AppliedHash fingerprints the attributes applied for a user (a
// normalised user holds only those the job manages), so an operator (or a
// later optimisation) can tell whether the source moved since.
func AppliedHash(d *store.DesiredUser) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00manager=%s\x00groups=%s", d.Attrs.String(), d.ManagerExternalID, strings.Join(slices.Sorted(slices.Values(d.Groups)), ","))
	return hex.EncodeToString(h.Sum(nil)[:16])
}
