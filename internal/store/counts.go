package store

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
)

// RunCounts are the figures of a run: its operations by action and by
// status, and named counters. In sync_runs.counts (and in `--json` output
// and webhooks) they are one flat JSON object, as they always were:
// {"create": 3, "succeeded": 3, "unchanged": 10, "backing_off": 1}; the
// statuses and the named counters are told apart by their keys, and every
// other key is an action. Zero figures are left out.
type RunCounts struct {
	// ByAction counts planned operations per action (sync.Action names:
	// create, update, disable, …).
	ByAction map[string]int
	// ByStatus counts operations per status (including the rows a run
	// recorded as skipped or planned).
	ByStatus map[OpStatus]int

	// Unchanged counts the users who needed nothing.
	Unchanged int
	// BackingOff counts the users a run skipped because they are backing
	// off after identical failures (user_backoff).
	BackingOff int
	// FailedUnsent counts the failed operations that never reached Graph
	// (rows the planner refused, conflicts found in the mirror). They are
	// part of ByStatus[OpFailed]; quarantine leaves them out.
	FailedUnsent int
	// Withheld counts the operations the apply pass recorded without
	// sending because the change budget's bound of their kind was reached.
	Withheld int
	// ApprovedRun is the id of the blocked run whose plan --approve
	// applied.
	ApprovedRun int
	// AllowDeletes is 1 when --allow-deletes lifted the disable and delete
	// bounds without a reviewed plan.
	AllowDeletes int
}

// Keys of the named counters in the stored JSON.
const (
	CountUnchanged    = "unchanged"
	CountBackingOff   = "backing_off"
	CountFailedUnsent = "failed_unsent"
	CountWithheld     = "withheld"
	CountApprovedRun  = "approved_run"
	CountAllowDeletes = "allow_deletes"
)

// named maps the key of each named counter to its field.
func (c *RunCounts) named() map[string]*int {
	return map[string]*int{CountUnchanged: &c.Unchanged, CountBackingOff: &c.BackingOff,
		CountFailedUnsent: &c.FailedUnsent, CountWithheld: &c.Withheld, CountApprovedRun: &c.ApprovedRun,
		CountAllowDeletes: &c.AllowDeletes}
}

// AddAction counts n operations of action.
func (c *RunCounts) AddAction(action string, n int) {
	if c.ByAction == nil {
		c.ByAction = map[string]int{}
	}
	c.ByAction[action] += n
}

// AddStatus counts n operations of status.
func (c *RunCounts) AddStatus(status OpStatus, n int) {
	if c.ByStatus == nil {
		c.ByStatus = map[OpStatus]int{}
	}
	c.ByStatus[status] += n
}

// Map is the flat view of the counts, as stored: actions, statuses and the
// named counters by key, zero figures left out.
func (c RunCounts) Map() map[string]int {
	m := map[string]int{}
	for a, n := range c.ByAction {
		if n != 0 {
			m[a] = n
		}
	}
	for s, n := range c.ByStatus {
		if n != 0 {
			m[string(s)] = n
		}
	}
	for k, p := range c.named() {
		if *p != 0 {
			m[k] = *p
		}
	}
	return m
}

// CountsFromMap reads the flat view back (see Map).
func CountsFromMap(m map[string]int) RunCounts {
	var c RunCounts
	named := c.named()
	for _, k := range slices.Sorted(maps.Keys(m)) {
		n := m[k]
		switch {
		case named[k] != nil:
			*named[k] = n
		case slices.Contains(OpStatuses, OpStatus(k)):
			c.AddStatus(OpStatus(k), n)
		default:
			c.AddAction(k, n)
		}
	}
	return c
}

// String prints the flat view (logs, test failures).
func (c RunCounts) String() string { return fmt.Sprint(c.Map()) }

// MarshalJSON writes the flat object of sync_runs.counts.
func (c RunCounts) MarshalJSON() ([]byte, error) { return json.Marshal(c.Map()) }

// UnmarshalJSON reads the flat object of sync_runs.counts.
func (c *RunCounts) UnmarshalJSON(b []byte) error {
	var m map[string]int
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*c = CountsFromMap(m)
	return nil
}
