package sync

import (
	"fmt"
	"slices"
	"strings"

	"github.com/entraprov/entraprov/internal/store"
)

// The source contract and the job's group scope, checked by the planner
// rather than assumed: a source that breaks them fails the users concerned
// with a reason, and nothing is written for them.

// planDuplicate fails one row of an external_id the source holds more than
// once. Which row is right cannot be known: acting on either makes the user
// flip between them run after run, and treating the id as a leaver would
// disable someone who is still there. So nothing is written (no step is
// sent, the link stays as it is) until the source is fixed.
func planDuplicate(dec *Decision, row store.SourceRow, p Policy) {
	if row.Desired != nil {
		if upn := strings.TrimSpace(row.Desired.UPN()); upn != "" {
			dec.UPN = upn
		}
	}
	action := ActCreate
	if row.Link != nil && row.Link.State != store.LinkCreating {
		action = ActUpdate
	}
	dec.Steps = []Step{{Action: action, Failure: duplicateMessage(row.ExternalID, row.SourceRows, p.Source)}}
}

func duplicateMessage(externalID string, n int, source string) string {
	return fmt.Sprintf("external_id %s appears %d times in %s; the source must hold one row per external_id "+
		"(a JOIN in the view probably matches more than one row): nothing is written for this user until it does",
		externalID, n, source)
}

// allowedGroups normalises jobs[].allowed_groups; nil when the key is unset.
func allowedGroups(ids []string) map[string]bool {
	if ids == nil {
		return nil
	}
	m := make(map[string]bool, len(ids))
	for _, g := range ids {
		if g = strings.ToLower(strings.TrimSpace(g)); g != "" {
			m[g] = true
		}
	}
	return m
}

func (p Policy) groupAllowed(id string) bool {
	return p.AllowedGroups == nil || p.AllowedGroups[strings.ToLower(id)]
}

// groupProblems refuses the desired groups (normalised, lower-case) outside
// the job's allowed_groups. The whole user fails, as for any other bad
// value of the row: a row naming a group the job does not manage is a
// wrong row (a mapping gone astray), and its other values are no more
// trustworthy than that group.
func (p Policy) groupProblems(groups []string) []string {
	var problems []string
	for _, g := range groups {
		if isGUID(g) && !p.groupAllowed(g) {
			problems = append(problems, fmt.Sprintf("groups: %s is not in allowed_groups of job %s; "+
				"add it to jobs[].allowed_groups if this job should manage that group, or remove it from the row", g, p.Job))
		}
	}
	return problems
}

// dropUnmanagedRemovals removes the group removals outside allowed_groups
// from a decision: a membership the link remembers from before the list was
// narrowed is no longer the job's to remove.
func dropUnmanagedRemovals(dec *Decision, p Policy) {
	if p.AllowedGroups == nil {
		return
	}
	dec.Steps = slices.DeleteFunc(dec.Steps, func(s Step) bool {
		return s.Action == ActGroupRemove && !p.groupAllowed(s.RelatedID)
	})
}
