package sync_test

import (
	"context"
	"fmt"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/graphsim"
	"github.com/entraprov/entraprov/internal/store"
	esync "github.com/entraprov/entraprov/internal/sync"
)

// planGate holds back the first link write of two runs until both have
// planned: a run's first UpsertLinks comes once its planning read has
// decided every user here, and before anything of those users is sent
// (links first, then the requests). The first job's write goes through
// first, then the second's: two jobs that planned in the same second,
// in a fixed order.
type planGate struct {
	ctx       context.Context
	planned   [2]chan struct{} // closed when job i reached its first link write
	firstDone chan struct{}    // closed when job 0's first link write returned
}

func newPlanGate(ctx context.Context) *planGate {
	return &planGate{ctx: ctx, planned: [2]chan struct{}{make(chan struct{}), make(chan struct{})},
		firstDone: make(chan struct{})}
}

// gatedStore is the store of job i of a planGate.
type gatedStore struct {
	*store.Store
	g    *planGate
	i    int
	once gosync.Once
}

func (s *gatedStore) wait(c <-chan struct{}) error {
	select {
	case <-c:
		return nil
	case <-s.g.ctx.Done():
		return fmt.Errorf("plan gate of job %d: %w", s.i, context.Cause(s.g.ctx))
	}
}

func (s *gatedStore) UpsertLinks(ctx context.Context, links []store.Link) error {
	gated, err := false, error(nil)
	s.once.Do(func() {
		gated = true
		close(s.g.planned[s.i])
		if err = s.wait(s.g.planned[1-s.i]); err != nil {
			return
		}
		if s.i == 1 {
			if err = s.wait(s.g.firstDone); err != nil {
				return
			}
		}
		err = s.Store.UpsertLinks(ctx, links)
		if s.i == 0 {
			close(s.g.firstDone)
		}
	})
	if gated {
		return err
	}
	return s.Store.UpsertLinks(ctx, links)
}

// TestTwoJobsAdoptingOneAccountAtOnce: two jobs (hr, and contractors with
// its own source) want the same existing, unmanaged account (matched by
// UPN) and both plan its adoption before either writes anything. Exactly
// one writes to it: hr, whose claim (its link, written before the PATCH)
// reached PostgreSQL first; contractors' claim is refused by the unique
// index over object ids (migration 009), so its row fails naming hr and
// the hand-over, nothing of that user is sent, and the rest of its run
// (a hire) goes on. Afterwards one link names the account, and neither
// job writes again. Before the claim (planning alone), both PATCHed the
// account and both linked it.
func TestTwoJobsAdoptingOneAccountAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, graphsim.Options{})
	e.exec(`CREATE TABLE entraprov.contractors (LIKE entraprov.desired_users INCLUDING ALL)`)
	hr := e.job
	hr.Matching.AdoptBy = "user_principal_name"
	co := hr
	co.Name, co.Source = "contractors", "entraprov.contractors"

	ps := e.people(3, 1)
	ann, hrHire, coHire := ps[0], ps[1], ps[2]
	id := e.sim.AddUser(e.seeded.TenantID, graphsim.UserSeed{UserPrincipalName: ann.UPN, DisplayName: "Ann (unmanaged)",
		AccountEnabled: true})
	e.insert(ann, hrHire, coHire)
	e.exec(`INSERT INTO entraprov.contractors SELECT * FROM entraprov.desired_users WHERE external_id = ANY($1)`,
		[]string{ann.ExternalID, coHire.ExternalID})
	e.exec(`DELETE FROM entraprov.desired_users WHERE external_id = $1`, coHire.ExternalID)
	e.exec(`UPDATE entraprov.contractors SET job_title = 'Contractor' WHERE external_id = $1`, ann.ExternalID)

	ctx, cancel := context.WithTimeoutCause(e.ctx, 2*time.Minute, fmt.Errorf("the other job never planned"))
	defer cancel()
	g := newPlanGate(ctx)
	runs := make([]store.Run, 2)
	errs := make([]error, 2)
	var wg gosync.WaitGroup
	for i, job := range []string{"hr", "contractors"} {
		eng := *e.eng
		eng.Store = &gatedStore{Store: e.st, g: g, i: i}
		jc := hr
		if job == co.Name {
			jc = co
		}
		wg.Go(func() { runs[i], errs[i] = eng.Run(ctx, jc, esync.RunOptions{}) })
	}
	wg.Wait()
	if n := len(e.sim.Counters().Patches[id]); n != 1 {
		t.Fatalf("the account was PATCHed %d times (%v); want once, by its one owner", n, e.sim.Counters().Patches[id])
	}
	if runs[0].Status != store.RunSucceeded || runs[1].Status != store.RunPartial {
		t.Fatalf("hr %s (%v, %q), contractors %s (%v, %q); want succeeded and partial",
			runs[0].Status, errs[0], runs[0].ErrorSummary, runs[1].Status, errs[1], runs[1].ErrorSummary)
	}
	if op := e.opOf(runs[0].ID, ann.ExternalID, esync.ActAdopt); op.Status != store.OpSucceeded || op.ObjectID != id {
		t.Fatalf("hr's adoption: %s on %s %q; want succeeded on %s", op.Status, op.ObjectID, op.Message, id)
	}
	op := e.opOf(runs[1].ID, ann.ExternalID, esync.ActAdopt)
	for _, want := range []string{"conflict: the account " + id + " was claimed by job hr (external_id " + ann.ExternalID + ")",
		"nothing was sent", "Moving a user between jobs"} {
		if op.Status != store.OpFailed || !strings.Contains(op.Message, want) {
			t.Fatalf("contractors' adoption: %s %q; want failed with %q", op.Status, op.Message, want)
		}
	}
	if op := e.opOf(runs[1].ID, coHire.ExternalID, esync.ActCreate); op.Status != store.OpSucceeded {
		t.Fatalf("contractors' own hire: %s %q; want created", op.Status, op.Message)
	}
	if u := e.mustLive(ann.UPN); u.ID != id || u.Properties["jobTitle"] != ann.JobTitle {
		t.Fatalf("ann's account: %+v; want %s with hr's job title %q", u, id, ann.JobTitle)
	}
	var links []string
	rows, err := e.st.Pool().Query(e.ctx, `SELECT job || '/' || external_id FROM entraprov.directory_links WHERE object_id = $1`, id)
	if err == nil {
		for rows.Next() {
			var s string
			if err = rows.Scan(&s); err != nil {
				break
			}
			links = append(links, s)
		}
		rows.Close()
	}
	if err != nil || strings.Join(links, ",") != "hr/"+ann.ExternalID {
		t.Fatalf("links to the account: %v (%v); want hr's only", links, err)
	}

	// The next runs: contractors' row fails at planning naming hr, and
	// neither job writes.
	e.sim.ResetCounters()
	e.runJob(hr, store.RunSucceeded)
	r := e.runJob(co, store.RunPartial)
	if op := e.opOf(r.ID, ann.ExternalID, esync.ActSkip); op.Status != store.OpFailed ||
		!strings.Contains(op.Message, "is managed by job hr (external_id "+ann.ExternalID+")") {
		t.Fatalf("contractors' next run on ann: %s %q; want failed naming job hr", op.Status, op.Message)
	}
	if w := e.sim.Counters().Writes; w != 0 {
		t.Fatalf("the jobs wrote %d times after the race; want none", w)
	}
}
