package sync_test

import (
	"context"
	"fmt"
	"strings"
	gosync "sync"
	"testing"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/graphsim"
	"github.com/entraprov/entraprov/internal/store"
	esync "github.com/entraprov/entraprov/internal/sync"
)

// noBudget turns every bound off, as a file would say it.
func noBudget() config.ChangeBudget {
	off := config.Bound{Off: true}
	return config.ChangeBudget{Disables: off, Deletes: off, GroupRemovals: off, AttributeClears: off, UPNRenames: off, ManagerRemovals: off}
}

// budgetEnv is an env of n provisioned users (each in group All Staff)
// whose job then runs with the default change budget.
func budgetEnv(t *testing.T, n int) (*env, string) {
	e := newEnv(t, graphsim.Options{})
	all := e.seeded.GroupIDs["All Staff"]
	ps := e.people(n, 1)
	for i := range ps {
		ps[i].Groups = []string{all}
	}
	e.insert(ps...)
	e.run(esync.RunOptions{}, store.RunSucceeded)
	e.job.Budget = config.DefaultBudget()
	return e, all
}

// TestBudgetBlocksGroupRemovals: a broken join that empties groups for
// everyone would remove every user from every group (licences with them).
func TestBudgetBlocksGroupRemovals(t *testing.T) {
	t.Parallel()
	e, all := budgetEnv(t, 100)
	e.exec(`UPDATE entraprov.desired_users SET groups = '{}'`)
	e.sim.ResetCounters()
	r := e.run(esync.RunOptions{}, store.RunBlocked)
	if w := e.sim.Counters().Writes; w != 0 {
		t.Fatalf("a blocked run wrote %d times", w)
	}
	if !strings.Contains(r.ErrorSummary, "100 group removals of 100 managed users (100.0%) exceed jobs[hr].change_budget.group_removals") {
		t.Fatalf("summary %q", r.ErrorSummary)
	}
	if m := e.sim.GroupMembers(e.seeded.TenantID, all); len(m) != 100 {
		t.Fatalf("group has %d members; want 100", len(m))
	}
}

// TestBudgetBlocksAttributeClears: NULL attributes from a broken join
// clear them for everyone; a small job's single change is not blocked.
func TestBudgetBlocksAttributeClears(t *testing.T) {
	t.Parallel()
	t.Run("mass", func(t *testing.T) {
		t.Parallel()
		e, _ := budgetEnv(t, 100)
		e.exec(`UPDATE entraprov.desired_users SET job_title = NULL WHERE external_id <= 'E000040'`)
		e.sim.ResetCounters()
		r := e.run(esync.RunOptions{}, store.RunBlocked)
		if !strings.Contains(r.ErrorSummary, "40 attribute clears of 100 managed users (40.0%) exceed jobs[hr].change_budget.attribute_clears") ||
			e.sim.Counters().Writes != 0 {
			t.Fatalf("summary %q, writes %d", r.ErrorSummary, e.sim.Counters().Writes)
		}
		// Changing values (not clearing them) is not destructive.
		e.exec(`UPDATE entraprov.desired_users SET job_title = 'Lead'`)
		e.run(esync.RunOptions{}, store.RunSucceeded)
	})
	t.Run("three_user_job", func(t *testing.T) {
		t.Parallel()
		e, _ := budgetEnv(t, 3)
		// 33 % of the managed users, but one user: below the percent floor.
		e.exec(`UPDATE entraprov.desired_users SET job_title = NULL WHERE external_id = 'E000001'`)
		e.exec(`DELETE FROM entraprov.desired_users WHERE external_id = 'E000002'`)
		r := e.run(esync.RunOptions{}, store.RunSucceeded)
		if r.Counts.ByAction["disable"] != 1 || r.Counts.ByAction["update"] != 1 {
			t.Fatalf("counts %v; want the leaver disabled and the clear applied", r.Counts)
		}
	})
}

// TestApproveIsBoundToTheReviewedPlan: --approve applies the plan an
// operator reviewed, refuses one that grew (naming what changed), and the
// refused run can itself be reviewed and approved.
func TestApproveIsBoundToTheReviewedPlan(t *testing.T) {
	t.Parallel()
	e, all := budgetEnv(t, 100)
	e.exec(`DELETE FROM entraprov.desired_users WHERE external_id <= 'E000030'`)
	blocked := e.run(esync.RunOptions{}, store.RunBlocked)

	e.exec(`DELETE FROM entraprov.desired_users WHERE external_id IN ('E000031', 'E000032')`)
	e.sim.ResetCounters()
	refused := e.run(esync.RunOptions{Approve: blocked.ID}, store.RunBlocked)
	want := fmt.Sprintf("approval of run %d refused: the plan changed since it was reviewed: 2 disables (E000031, E000032) not in run %d's plan",
		blocked.ID, blocked.ID)
	if !strings.Contains(refused.ErrorSummary, want) || e.sim.Counters().Writes != 0 {
		t.Fatalf("summary %q (writes %d); want %q", refused.ErrorSummary, e.sim.Counters().Writes, want)
	}
	if !strings.Contains(refused.ErrorSummary, fmt.Sprintf("--approve %d", refused.ID)) {
		t.Fatalf("summary %q does not say how to approve the new plan", refused.ErrorSummary)
	}

	// A plan that shrank (one leaver came back) is a subset: applied.
	back := e.people(1, 31)
	back[0].Groups = []string{all}
	e.insert(back...)
	ok := e.run(esync.RunOptions{Approve: refused.ID}, store.RunSucceeded)
	if ok.Counts.ByAction["disable"] != 31 || ok.Counts.ApprovedRun != int(refused.ID) {
		t.Fatalf("counts %v; want 31 disables and approved_run %d", ok.Counts, refused.ID)
	}

	// Only a blocked run of the job can be approved.
	r, err := e.eng.Run(e.ctx, e.job, esync.RunOptions{Approve: ok.ID})
	if r.Status != store.RunFailed || err == nil || !strings.Contains(r.ErrorSummary, "only a blocked run has a plan to approve") {
		t.Fatalf("approving a succeeded run: %q %v", r.ErrorSummary, err)
	}
}

// TestAllowDeletesIsRecorded: the unreviewed override still works for
// scripts, but says so in the log and on the run.
func TestAllowDeletesIsRecorded(t *testing.T) {
	t.Parallel()
	e, _ := budgetEnv(t, 50)
	e.exec(`DELETE FROM entraprov.desired_users WHERE external_id <= 'E000020'`)
	r := e.run(esync.RunOptions{AllowDeletes: true}, store.RunSucceeded)
	if r.Counts.ByAction["disable"] != 20 || r.Counts.AllowDeletes != 1 {
		t.Fatalf("counts %v; want 20 disables and allow_deletes 1", r.Counts)
	}
	if !strings.Contains(e.logs.String(), `"level":"WARN","msg":"--allow-deletes`) {
		t.Fatalf("no warning logged for --allow-deletes")
	}
}

// rereadStore counts the reads of the source and lets a test change the
// world before a read (before) or what a read returns (row: false drops
// the row).
type rereadStore struct {
	*store.Store
	before func(read int)
	row    func(read int, row *store.SourceRow) bool
	mu     gosync.Mutex
	reads  int
}

func (s *rereadStore) StreamSource(ctx context.Context, job, relation string, fn func(store.SourceRow) error) error {
	s.mu.Lock()
	s.reads++
	n := s.reads
	s.mu.Unlock()
	if s.before != nil {
		s.before(n)
	}
	return s.Store.StreamSource(ctx, job, relation, func(row store.SourceRow) error {
		if s.row != nil && !s.row(n, &row) {
			return nil
		}
		return fn(row)
	})
}

// TestSnapshotCoversATableEmptiedBetweenReads: the budget's read and pass 1
// read one snapshot, so a table emptied in between changes nothing in this
// run (the next run plans against the empty table, and its budget blocks).
func TestSnapshotCoversATableEmptiedBetweenReads(t *testing.T) {
	t.Parallel()
	e, _ := budgetEnv(t, 100)
	// An ETL's truncate and reload caught between the budget's read and
	// the apply pass: the table is emptied, committed, from another session.
	ss := &rereadStore{Store: e.st, before: func(read int) {
		if read == 2 {
			e.exec(`DELETE FROM entraprov.desired_users`)
		}
	}}
	e.eng.Store = ss
	e.sim.ResetCounters()
	r := e.run(esync.RunOptions{}, store.RunSucceeded)
	if ss.reads != 2 || e.sim.Counters().Writes != 0 || r.Counts.ByAction["disable"] != 0 {
		t.Fatalf("reads %d, writes %d, counts %v; want 2 reads of one snapshot and nothing written", ss.reads, e.sim.Counters().Writes, r.Counts)
	}
	r = e.run(esync.RunOptions{}, store.RunBlocked)
	if !strings.Contains(r.ErrorSummary, "100 disables of 100 managed users") {
		t.Fatalf("summary %q", r.ErrorSummary)
	}
}

// TestBudgetHoldsInTheApplyPass: whatever the second read returns, the
// apply pass sends at most the bound and the run ends blocked, its
// withheld operations recorded as planned.
func TestBudgetHoldsInTheApplyPass(t *testing.T) {
	t.Parallel()
	e, _ := budgetEnv(t, 100)
	// Every read after the first sees no source row, as a view over a
	// volatile function or a foreign table may: no snapshot covers them.
	e.eng.Store = &rereadStore{Store: e.st, row: func(read int, row *store.SourceRow) bool {
		if read > 1 {
			row.Desired = nil // what the FULL JOIN yields for a row gone from the source
		}
		return row.Link != nil || read == 1
	}}
	e.sim.ResetCounters()
	r := e.run(esync.RunOptions{}, store.RunBlocked)
	disabled := 0
	for _, u := range e.live() {
		if !u.AccountEnabled {
			disabled++
		}
	}
	if disabled != 10 || r.Counts.Withheld != 90 || len(e.ops(r.ID, store.OpPlanned)) != 90 {
		t.Fatalf("%d disabled, counts %v; want 10 disabled (default bound for 100 users) and 90 withheld", disabled, r.Counts)
	}
	for _, want := range []string{"blocked while applying: disables: 10 sent (the bound for 100 managed users is 10, jobs[hr].change_budget.disables), 90 more withheld",
		fmt.Sprintf("--approve %d", r.ID)} {
		if !strings.Contains(r.ErrorSummary, want) {
			t.Fatalf("summary %q; want %q", r.ErrorSummary, want)
		}
	}
}
