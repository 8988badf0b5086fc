// Package audit compares, read-only, what the directory holds with what a
// job's source wants for the users the job manages: missing users, users
// that should be gone or disabled, drifted attributes, disabled users that
// should be enabled, links pointing at objects that no longer exist, and
// (optionally) unmanaged users that match desired rows.
//
// The directory is read live (ListUsers), never from the worker's mirror:
// an audit must not trust the state it is checking. What "desired" means is
// not restated here: every row (source ⋈ link, with the live directory user
// in place of the mirror) goes through the reconcile planner (sync.Plan), and
// whatever the planner would still do is the drift. So audit and sync can
// never disagree about which attributes are managed or how they compare.
//
// It must not write to the directory or the database, and it holds the
// tenant's users in memory (one directory.User per user; ~1 KB each), which
// is what an operator's after-incident check can afford.
package audit

import (
	"context"
	"fmt"
	"github.com/entraprov/entraprov/internal/profile"
	"slices"
	"strings"
	"time"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/store"
	esync "github.com/entraprov/entraprov/internal/sync"
)

// Source streams a job's source ⋈ links (internal/store implements it).
type Source interface {
	esync.SchemaSource
	StreamSource(ctx context.Context, job, relation string, fn func(store.SourceRow) error) error
}

// Directory reads users live from Graph (internal/directory implements it).
type Directory interface {
	ListUsers(ctx context.Context, fn func(directory.User) error) error
}

// Finding kinds.
const (
	// KindMissing: a desired user the job has never provisioned (or whose
	// create left nothing in the directory).
	KindMissing = "missing"
	// KindUnconfirmed: a create whose answer was lost; the directory holds
	// the user but the link does not name it yet.
	KindUnconfirmed = "unconfirmed"
	// KindGone: the link names an object the directory no longer lists
	// (deleted by hand, or purged) while the user is still wanted.
	KindGone = "gone"
	// KindExtra: a linked user that left the source (or whose
	// account_enabled is false) is still enabled, or is past delete_after.
	KindExtra = "extra"
	// KindDisabled: a wanted user is disabled in the directory.
	KindDisabled = "disabled"
	// KindDrift: managed attributes differ from the source.
	KindDrift = "drift"
	// KindManager: the manager differs from the source's.
	KindManager = "manager"
	// KindGroups: group memberships recorded for the job differ from the
	// source's (membership is compared with what the job applied, not read
	// live).
	KindGroups = "groups"
	// KindInvalid: the source row cannot be provisioned as it stands.
	KindInvalid = "invalid"
	// KindUnmanaged: an unlinked directory user matches a desired row
	// (reported with Options.IncludeUnmanaged).
	KindUnmanaged = "unmanaged"
)

// Options adjust an audit.
type Options struct {
	// IncludeUnmanaged matches unlinked desired rows against directory users
	// by UPN and employeeId and reports those found as KindUnmanaged (instead
	// of KindMissing).
	IncludeUnmanaged bool
	// Now is the clock for leaver grace periods (zero: time.Now).
	Now time.Time
}

// Finding is one difference between the directory and the desired state.
type Finding struct {
	Kind       string         `json:"kind"`
	ExternalID string         `json:"external_id"`
	UPN        string         `json:"user_principal_name,omitempty"`
	ObjectID   string         `json:"object_id,omitempty"`
	Detail     string         `json:"detail"`
	Changes    map[string]any `json:"changes,omitempty"`
}

// Report is the result of one audit.
type Report struct {
	Job string `json:"job"`
	// Rows is how many rows of source ⋈ links were compared.
	Rows int `json:"rows"`
	// DirectoryUsers is how many users the tenant listed.
	DirectoryUsers int            `json:"directory_users"`
	Counts         map[string]int `json:"counts"`
	Findings       []Finding      `json:"findings"`
}

// Clean reports an audit with no findings.
func (r Report) Clean() bool { return len(r.Findings) == 0 }

// Run audits one job. It reads the whole tenant once, then streams the
// job's rows and plans each against the live directory.
func Run(ctx context.Context, src Source, dir Directory, job config.Job, opts Options) (Report, error) {
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	rep := Report{Job: job.Name, Counts: map[string]int{}, Findings: []Finding{}}
	// The attributes the job manages: the live read selects and the
	// planner compares those, like a run.
	ctx, facts, err := esync.JobSchema(ctx, src, job)
	if err != nil {
		return rep, fmt.Errorf("audit %s: %w", job.Name, err)
	}
	schema := facts.Schema
	live := newIndex()
	if err := dir.ListUsers(ctx, func(u directory.User) error {
		live.add(u)
		return nil
	}); err != nil {
		return rep, fmt.Errorf("audit %s: read the directory: %w", job.Name, err)
	}
	rep.DirectoryUsers = len(live.byID)

	// Object ids some link of the job names: those users are managed, so
	// they are never offered as unmanaged candidates.
	linked := map[string]bool{}
	var rows []store.SourceRow
	policy := esync.PolicyFor(job)
	policy.Schema = schema
	err = src.StreamSource(ctx, job.Name, job.Source, func(row store.SourceRow) error {
		rep.Rows++
		if row.Link != nil && row.Link.ObjectID != "" {
			linked[strings.ToLower(row.Link.ObjectID)] = true
		}
		// Candidates need the full set of linked ids; rows that may need one
		// wait until the stream ends (few on a converged job).
		if needsCandidate(row, opts) {
			rows = append(rows, row)
			return nil
		}
		rep.add(check(row, live, nil, policy, now))
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("audit %s: read the source: %w", job.Name, err)
	}
	for _, row := range rows {
		rep.add(check(row, live, linked, policy, now))
	}
	slices.SortStableFunc(rep.Findings, func(a, b Finding) int { return strings.Compare(a.ExternalID, b.ExternalID) })
	return rep, nil
}

func (r *Report) add(fs []Finding) {
	for _, f := range fs {
		r.Counts[f.Kind]++
		r.Findings = append(r.Findings, f)
	}
}

// needsCandidate: a lost create is always looked for (it is ours); a
// never-linked desired row only when unmanaged users are wanted.
func needsCandidate(row store.SourceRow, opts Options) bool {
	if row.Link != nil && (row.Link.State == store.LinkCreating || row.Link.ObjectID == "") {
		return true
	}
	return row.Link == nil && row.Desired != nil && opts.IncludeUnmanaged
}

// check plans one row against the live directory and turns what the planner
// would still do into findings. linked is nil when no candidate is needed.
func check(row store.SourceRow, live *index, linked map[string]bool, p esync.Policy, now time.Time) []Finding {
	row.Current, row.Candidate = nil, nil
	if row.Link != nil && row.Link.ObjectID != "" {
		if u, ok := live.byID[strings.ToLower(row.Link.ObjectID)]; ok {
			// The live read carries the manager ($expand): it is known,
			// so the planner compares with it, not with the link's record.
			c := esync.MirrorUser(u)
			c.ManagerKnown = true
			row.Current = &c
		}
	}
	if linked != nil && row.Desired != nil {
		row.Candidate = live.candidate(row.Desired, linked)
	} else if linked != nil && row.Link != nil {
		row.Candidate = live.candidate(&store.DesiredUser{Attrs: profile.Of(profile.UserPrincipalName, row.Link.UserPrincipalName)}, linked)
	}
	dec := esync.Plan(row, p, now)
	var out []Finding
	for _, st := range dec.Steps {
		if st.Deferred {
			continue // follows a create or restore already reported
		}
		f := Finding{ExternalID: row.ExternalID, UPN: dec.UPN, ObjectID: st.ObjectID, Changes: st.Changes}
		if f.ObjectID == "" && row.Link != nil {
			f.ObjectID = row.Link.ObjectID
		}
		switch {
		case st.Failure != "" && st.Action == esync.ActSkip:
			f.Kind, f.Detail = KindUnmanaged, st.Failure
		case st.Failure != "":
			f.Kind, f.Detail = KindInvalid, st.Failure
		case st.Action == esync.ActCreate && row.Link != nil && row.Link.State != store.LinkCreating && row.Link.ObjectID != "":
			f.Kind, f.Detail = KindGone, fmt.Sprintf("linked object %s is not in the directory (deleted or purged)", row.Link.ObjectID)
		case st.Action == esync.ActCreate:
			f.Kind, f.Detail = KindMissing, "not in the directory"
			if row.Link != nil {
				f.Detail = "a create was sent but left no user in the directory"
			}
		case st.Action == esync.ActAdopt && row.Link != nil:
			f.Kind, f.Detail = KindUnconfirmed, fmt.Sprintf("a create's answer was lost; the directory holds it as %s", st.ObjectID)
		case st.Action == esync.ActAdopt:
			f.Kind, f.Detail = KindUnmanaged, fmt.Sprintf("unlinked directory user %s matches this row (matching.adopt_by %s)", st.ObjectID, p.AdoptBy)
		case st.Action == esync.ActDisable:
			f.Kind, f.Detail = KindExtra, "enabled in the directory; should be disabled: "+st.Message
		case st.Action == esync.ActDelete:
			f.Kind, f.Detail = KindExtra, "should be deleted: "+st.Message
		case st.Action == esync.ActEnable:
			f.Kind, f.Detail = KindDisabled, "disabled in the directory; the source wants it enabled"
		case st.Action == esync.ActUpdate:
			f.Kind, f.Detail = KindDrift, "attributes differ: "+strings.Join(slices.Sorted(mapKeys(st.Changes)), ", ")
		case st.Action == esync.ActManager:
			f.Kind, f.Detail = KindManager, "manager differs from the source's"
		case st.Action == esync.ActGroupAdd || st.Action == esync.ActGroupRemove:
			f.Kind, f.Detail = KindGroups, string(st.Action)+" "+st.RelatedID
		case st.Action == esync.ActRestore:
			f.Kind, f.Detail = KindGone, "linked object is soft-deleted"
		default:
			f.Kind, f.Detail = KindDrift, "the planner would "+string(st.Action)+" this user"
		}
		out = append(out, f)
	}
	return out
}

func mapKeys(m map[string]any) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// index is the tenant as listed, by object id, UPN and employeeId.
type index struct {
	byID  map[string]directory.User
	byUPN map[string]string
	byEmp map[string][]string
}

func newIndex() *index {
	return &index{byID: map[string]directory.User{}, byUPN: map[string]string{}, byEmp: map[string][]string{}}
}

func (x *index) add(u directory.User) {
	id := strings.ToLower(u.ObjectID)
	x.byID[id] = u
	x.byUPN[strings.ToLower(u.UPN())] = id
	if u.Get(profile.EmployeeID) != "" {
		x.byEmp[u.Get(profile.EmployeeID)] = append(x.byEmp[u.Get(profile.EmployeeID)], id)
	}
}

// candidate is an unlinked directory user whose UPN or employeeId equals
// the desired one, as the store's join offers it to the planner.
func (x *index) candidate(d *store.DesiredUser, linked map[string]bool) *store.DirectoryUser {
	ids := []string{}
	if id, ok := x.byUPN[strings.ToLower(strings.TrimSpace(d.UPN()))]; ok {
		ids = append(ids, id)
	}
	if e := strings.TrimSpace(d.Get(profile.EmployeeID)); e != "" {
		ids = append(ids, x.byEmp[e]...)
	}
	for _, id := range ids {
		if !linked[id] {
			c := esync.MirrorUser(x.byID[id])
			c.ManagerKnown = true
			return &c
		}
	}
	return nil
}
