package sync

import (
	"fmt"
	"slices"
	"strings"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/profile"
)

// Kinds of destructive change counted by a job's change budget
// (config.ChangeBudget), named as its keys are.
const (
	KindDisable        = "disables"
	KindDelete         = "deletes"
	KindGroupRemoval   = "group_removals"
	KindAttributeClear = "attribute_clears"
	KindUPNRename      = "upn_renames"
	KindManagerRemoval = "manager_removals"
)

// BudgetKinds lists the kinds in the order messages name them.
var BudgetKinds = []string{KindDisable, KindDelete, KindGroupRemoval, KindAttributeClear, KindUPNRename, KindManagerRemoval}

// attributeKeys are the Graph properties whose clearing counts as an
// attribute clear: every attribute of the table (a schema extension,
// extension_…, too).
var attributeKeys = func() map[string]bool {
	m := map[string]bool{}
	for _, a := range profile.Builtin {
		m[a.Graph] = true
	}
	return m
}()

func isAttributeKey(k string) bool { return attributeKeys[k] || strings.HasPrefix(k, "extension_") }

// DestructiveKinds returns the budget kinds an operation counts in, from
// its action and its recorded changes: it judges a planned Step and a
// stored sync_operations row alike, so the plan an operator reviewed and
// the plan a later run makes are compared kind by kind.
func DestructiveKinds(action Action, changes map[string]any) []string {
	var kinds []string
	switch action {
	case ActDisable:
		// A user on leave's disable may carry attribute changes in the
		// same PATCH (planOnLeave): its clears count as clears too.
		kinds = append(kinds, KindDisable)
	case ActDelete:
		return []string{KindDelete}
	case ActGroupRemove:
		return []string{KindGroupRemoval}
	case ActManager:
		if c, ok := changes["manager"].(map[string]any); ok && present(c["from"]) && c["to"] == nil {
			return []string{KindManagerRemoval}
		}
		return nil
	case ActUpdate, ActEnable, ActAdopt:
	default:
		return nil
	}
	cleared := false
	for k, v := range changes {
		c, ok := v.(map[string]any)
		if !ok || !isAttributeKey(k) {
			continue
		}
		switch {
		case k == "userPrincipalName" && present(c["from"]) && present(c["to"]):
			kinds = append(kinds, KindUPNRename)
		case present(c["from"]) && c["to"] == nil:
			cleared = true
		}
	}
	if cleared {
		kinds = append(kinds, KindAttributeClear)
	}
	return kinds
}

func present(v any) bool {
	s, ok := v.(string)
	return v != nil && (!ok || s != "")
}

// stepKinds are the kinds a planned step would spend; a step that fails at
// plan time or sends nothing spends none.
func stepKinds(st Step) []string {
	if st.Failure != "" || st.Kind == "" || st.Deferred {
		return nil
	}
	if st.Kind == directory.OpRemoveManager {
		return []string{KindManagerRemoval} // whatever its record says
	}
	return DestructiveKinds(st.Action, st.Changes)
}

// budget counts one run's destructive changes per kind, in users, against
// the job's change budget. The planning pass notes what the plan would
// spend (over); the apply passes ask admit before sending each step, so a
// run never sends more than its bounds allow, whatever a read of the source
// returns. It is used by one goroutine at a time (the producer).
type budget struct {
	cfg     config.ChangeBudget
	managed int
	// lifted kinds are not bounded in this run (--allow-deletes).
	lifted map[string]bool
	// approved holds, per kind, the users whose change an operator approved
	// by reviewing a blocked run's plan (--approve): they pass whatever
	// the bound.
	approved map[string]map[string]bool

	users    map[string]map[string]bool // kind -> users counted (approved ones included)
	count    map[string]int             // kind -> users counted against the bound
	withheld map[string]int             // kind -> steps refused
}

func newBudget(cfg config.ChangeBudget, managed int) *budget {
	return &budget{cfg: cfg, managed: managed, lifted: map[string]bool{}, approved: map[string]map[string]bool{},
		users: map[string]map[string]bool{}, count: map[string]int{}, withheld: map[string]int{}}
}

// Bound returns the configured bound of kind.
func budgetBound(cfg config.ChangeBudget, kind string) config.Bound {
	switch kind {
	case KindDisable:
		return cfg.Disables
	case KindDelete:
		return cfg.Deletes
	case KindGroupRemoval:
		return cfg.GroupRemovals
	case KindAttributeClear:
		return cfg.AttributeClears
	case KindUPNRename:
		return cfg.UPNRenames
	case KindManagerRemoval:
		return cfg.ManagerRemovals
	}
	return config.Bound{}
}

// BudgetLimit is the most users of one kind a run may change: a run is over
// the bound when its count exceeds MaxCount, or exceeds both the percent
// floor and MaxPercent of the managed users. ok is false when nothing
// bounds the kind. A bound with neither half set counts as the default
// bound: config refuses it in a file, and a Job built in code without a
// budget must not mean "no limit".
func BudgetLimit(cfg config.ChangeBudget, kind string, managed int) (limit int, ok bool) {
	b := budgetBound(cfg, kind)
	if b.Off {
		return 0, false
	}
	if b.MaxCount == 0 && b.MaxPercent == 0 {
		def := config.DefaultBudget()
		b, cfg.PercentFloor = budgetBound(def, kind), def.PercentFloor
	}
	limit, ok = -1, false
	if b.MaxCount > 0 {
		limit, ok = b.MaxCount, true
	}
	if b.MaxPercent > 0 {
		// count > floor && count > pct·managed  ⇔  count > max(floor, ⌊pct·managed⌋)
		p := max(cfg.PercentFloor, int(b.MaxPercent*float64(managed)/100))
		if !ok || p < limit {
			limit, ok = p, true
		}
	}
	return limit, ok
}

func (b *budget) limit(kind string) (int, bool) {
	if b.lifted[kind] {
		return 0, false
	}
	return BudgetLimit(b.cfg, kind, b.managed)
}

func (b *budget) seen(kind, xid string) bool { return b.users[kind][xid] }

func (b *budget) add(kind, xid string) {
	if b.users[kind] == nil {
		b.users[kind] = map[string]bool{}
	}
	b.users[kind][xid] = true
	if !b.approved[kind][xid] {
		b.count[kind]++
	}
}

// note counts what a plan would spend, without refusing anything.
func (b *budget) note(xid string, st Step) {
	for _, k := range stepKinds(st) {
		if !b.seen(k, xid) {
			b.add(k, xid)
		}
	}
}

// admit reports whether step st of user xid may be sent, and counts it
// when it may. A user counts once per kind (its second group removal is
// free once the first was admitted); an approved user always passes. When
// it may not, kind is the first kind whose bound is reached.
func (b *budget) admit(xid string, st Step) (ok bool, kind string) {
	kinds := stepKinds(st)
	for _, k := range kinds {
		if b.seen(k, xid) || b.approved[k][xid] {
			continue
		}
		if n, bounded := b.limit(k); bounded && b.count[k]+1 > n {
			b.withheld[k]++
			return false, k
		}
	}
	for _, k := range kinds {
		if !b.seen(k, xid) {
			b.add(k, xid)
		}
	}
	return true, ""
}

// unbounded says no kind has a bound in this run (all off or lifted).
func (b *budget) unbounded() bool {
	for _, k := range BudgetKinds {
		if _, bounded := b.limit(k); bounded {
			return false
		}
	}
	return true
}

// over lists the kinds whose planned count exceeds their bound.
func (b *budget) over() []string {
	var kinds []string
	for _, k := range BudgetKinds {
		if n, bounded := b.limit(k); bounded && b.count[k] > n {
			kinds = append(kinds, k)
		}
	}
	return kinds
}

// describe is "30 disables of 100 managed users (30.0%) exceed
// jobs[hr].change_budget.disables (max_count 10, max_percent 50; percent
// bounds apply above 10 users): at most 10".
func (b *budget) describe(job, kind string, n int) string {
	pct := 0.0
	if b.managed > 0 {
		pct = float64(n) * 100 / float64(b.managed)
	}
	limit, _ := b.limit(kind)
	bd := budgetBound(b.cfg, kind)
	return fmt.Sprintf("%d %s of %d managed users (%.1f%%) exceed jobs[%s].change_budget.%s (max_count %d, max_percent %g; percent bounds apply above %d users): at most %d",
		n, kindNoun(kind), b.managed, pct, job, kind, bd.MaxCount, bd.MaxPercent, b.cfg.PercentFloor, limit)
}

// kindNoun is the kind for a sentence: "group removals".
func kindNoun(kind string) string {
	if kind == KindUPNRename {
		return "UPN renames"
	}
	return strings.ReplaceAll(kind, "_", " ")
}

// blockedMessage says why a plan over budget was not applied and how to
// approve it.
func (b *budget) blockedMessage(job string, runID int64, kinds []string) string {
	parts := make([]string, 0, len(kinds))
	for _, k := range kinds {
		parts = append(parts, b.describe(job, k, b.count[k]))
	}
	return fmt.Sprintf("blocked: %s; nothing was written. Review the plan (worker show %d), then approve exactly it with "+
		"`worker sync --job %s --approve %d`, or fix the source, or raise the bound",
		strings.Join(parts, "; "), runID, job, runID)
}

// stoppedMessage says that the apply pass held back operations once a
// bound was reached: the source returned more than the plan had.
func (b *budget) stoppedMessage(job string, runID int64) string {
	var parts []string
	for _, k := range BudgetKinds {
		if w := b.withheld[k]; w > 0 {
			limit, _ := b.limit(k)
			parts = append(parts, fmt.Sprintf("%s: %d sent (the bound for %d managed users is %d, jobs[%s].change_budget.%s), %d more withheld",
				kindNoun(k), b.count[k], b.managed, limit, job, k, w))
		}
	}
	return fmt.Sprintf("blocked while applying: %s. The source returned more destructive changes than the plan made from it "+
		"(did it change during the run?); the withheld operations are recorded as planned, not sent. Review them (worker show %d --status planned), "+
		"then approve with `worker sync --job %s --approve %d` or fix the source",
		strings.Join(parts, "; "), runID, job, runID)
}

// destructiveSet is a plan's destructive changes: kind -> users.
type destructiveSet map[string]map[string]bool

func (s destructiveSet) add(kind, xid string) {
	if s[kind] == nil {
		s[kind] = map[string]bool{}
	}
	s[kind][xid] = true
}

// addedTo lists, per kind, the users of s not in reviewed, sorted: what
// changed in a plan since an operator reviewed it. Empty when s is the
// reviewed plan or a subset of it.
func (s destructiveSet) addedTo(reviewed destructiveSet) map[string][]string {
	added := map[string][]string{}
	for k, users := range s {
		for xid := range users {
			if !reviewed[k][xid] {
				added[k] = append(added[k], xid)
			}
		}
	}
	for k := range added {
		slices.Sort(added[k])
	}
	return added
}

// describeAdded is "2 disables (E1, E2), 1 group removals (E9)", at most
// five users named per kind.
func describeAdded(added map[string][]string) string {
	var parts []string
	for _, k := range BudgetKinds {
		xs := added[k]
		if len(xs) == 0 {
			continue
		}
		named := xs[:min(5, len(xs))]
		more := ""
		if len(xs) > len(named) {
			more = fmt.Sprintf(" and %d more", len(xs)-len(named))
		}
		parts = append(parts, fmt.Sprintf("%d %s (%s%s)", len(xs), kindNoun(k), strings.Join(named, ", "), more))
	}
	return strings.Join(parts, ", ")
}
