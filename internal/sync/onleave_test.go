package sync_test

import (
	"testing"

	"github.com/entraprov/entraprov/internal/graphsim"
	"github.com/entraprov/entraprov/internal/store"
	esync "github.com/entraprov/entraprov/internal/sync"
)

// TestOnLeaveChangesReachTheDirectory (found by make soak): a person on
// leave (account_enabled = false, still in the source) whose job title and
// department HR changes during the leave. The account stays disabled, and
// the directory should carry the new values (org charts, dynamic groups on
// department), as for anyone HR still has. planRow used to plan such a row
// as a leaver (disable only) and the audit, which uses the planner, called
// it clean: the change reached the directory only on return. The second
// person goes on leave with a leave date in the same change, as HR
// typically writes it: the disable goes first, alone (nothing Graph may
// refuse rides on it), and the leave date follows in the same run, so
// Lifecycle Workflows leaver tasks see the date with the disable.
func TestOnLeaveChangesReachTheDirectory(t *testing.T) {
	t.Parallel()
	e := newEnv(t, graphsim.Options{})
	ps := e.people(2, 1)
	e.insert(ps...)
	e.run(esync.RunOptions{}, store.RunSucceeded)
	e.exec(`UPDATE entraprov.desired_users SET account_enabled = false WHERE external_id = $1`, ps[0].ExternalID)
	e.run(esync.RunOptions{}, store.RunSucceeded)
	if e.mustLive(ps[0].UPN).AccountEnabled {
		t.Fatal("the person on leave was not disabled")
	}

	e.exec(`UPDATE entraprov.desired_users SET job_title = 'Team lead', department = 'Dept 7' WHERE external_id = $1`, ps[0].ExternalID)
	e.run(esync.RunOptions{}, store.RunSucceeded)
	u := e.mustLive(ps[0].UPN)
	if u.AccountEnabled || u.Properties["jobTitle"] != "Team lead" || u.Properties["department"] != "Dept 7" {
		t.Fatalf("on leave after the change: enabled %v, jobTitle %v, department %v; want disabled, Team lead, Dept 7",
			u.AccountEnabled, u.Properties["jobTitle"], u.Properties["department"])
	}
	e.quiet(store.RunSucceeded)

	e.exec(`UPDATE entraprov.desired_users SET account_enabled = false, employee_leave_date_time = '2026-12-31T17:00:00Z' WHERE external_id = $1`, ps[1].ExternalID)
	r := e.run(esync.RunOptions{}, store.RunSucceeded)
	u = e.mustLive(ps[1].UPN)
	if u.AccountEnabled || u.Properties["employeeLeaveDateTime"] == nil {
		t.Fatalf("leaving with a leave date: enabled %v, employeeLeaveDateTime %v; want disabled with the date", u.AccountEnabled, u.Properties["employeeLeaveDateTime"])
	}
	var mine []store.Operation
	for _, op := range e.ops(r.ID, store.OpSucceeded) {
		if op.ExternalID == ps[1].ExternalID {
			mine = append(mine, op)
		}
	}
	if len(mine) != 2 || mine[0].Action != string(esync.ActDisable) || len(mine[0].Changes) != 1 ||
		mine[1].Action != string(esync.ActUpdate) || mine[1].Changes["employeeLeaveDateTime"] == nil {
		t.Fatalf("operations of the leave = %+v; want the disable alone, then an update carrying employeeLeaveDateTime", mine)
	}
	e.quiet(store.RunSucceeded)
}
