// PENDING (not compiled): fails on main as of the hrsoak branch; rename to
// onleave_gap_test.go together with the planner change it asks for (see the
// hrsoak report). Kept out of the build so that make test stays green.

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
// department), as for anyone HR still has. Today planRow plans such a row
// as a leaver (disable only) and the audit, which uses the planner, calls
// it clean: the change reaches the directory only on return.
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
}
