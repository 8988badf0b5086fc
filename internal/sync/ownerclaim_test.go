package sync_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/graphsim"
	"github.com/entraprov/entraprov/internal/store"
	esync "github.com/entraprov/entraprov/internal/sync"
)

// hookStore runs before (when set) ahead of each of a run's link writes,
// numbered from 1, and after once the write returned: a test holds a run
// at a point between its planning and its writes to Graph, or between a
// Graph write and the link that records it.
type hookStore struct {
	*store.Store
	mu            gosync.Mutex
	n             int
	before, after func(n int) error
}

func (s *hookStore) UpsertLinks(ctx context.Context, links []store.Link) error {
	s.mu.Lock()
	s.n++
	n := s.n
	s.mu.Unlock()
	if s.before != nil {
		if err := s.before(n); err != nil {
			return err
		}
	}
	err := s.Store.UpsertLinks(ctx, links)
	if s.after != nil {
		if aerr := s.after(n); aerr != nil {
			return aerr
		}
	}
	return err
}

// waitFor waits for c, or fails the hook when the test's context ends (a
// run that never reaches the point the other waits for).
func waitFor(ctx context.Context, c <-chan struct{}, what string) error {
	select {
	case <-c:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for %s: %w", what, context.Cause(ctx))
	}
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

	// A run's first link write comes once its planning read decided every
	// user here, and before anything of them is sent (links first, then
	// the requests). Each run waits there until the other has planned too;
	// then hr's write goes through first, then contractors'.
	ctx, cancel := context.WithTimeoutCause(e.ctx, 2*time.Minute, errors.New("the other job never planned"))
	defer cancel()
	planned := [2]chan struct{}{make(chan struct{}), make(chan struct{})}
	hrWrote := make(chan struct{})
	runs := make([]store.Run, 2)
	errs := make([]error, 2)
	var wg gosync.WaitGroup
	for i, job := range []config.Job{hr, co} {
		hs := &hookStore{Store: e.st}
		hs.before = func(n int) error {
			if n != 1 {
				return nil
			}
			close(planned[i])
			if err := waitFor(ctx, planned[1-i], "the other job's plan"); err != nil || i == 0 {
				return err
			}
			return waitFor(ctx, hrWrote, "hr's first link write")
		}
		hs.after = func(n int) error {
			if n == 1 && i == 0 {
				close(hrWrote)
			}
			return nil
		}
		eng := *e.eng
		eng.Store = hs
		wg.Go(func() { runs[i], errs[i] = eng.Run(ctx, job, esync.RunOptions{}) })
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

// TestAccountCreatedByOneJobAndAdoptedByAnother: hr creates ann, and its
// run stops between the create and the link that records it (the answer
// came late); meanwhile contractors (adopt_by user_principal_name, ann in
// its source too) finds the new account unlinked and adopts it. The
// account is claimed when a link names it: contractors' link came first,
// so hr's is refused, hr's run says so naming contractors, hr keeps its
// "creating" link and never writes to the account, and its next run fails
// the row naming contractors instead of creating ann again. Before the
// claim, both jobs linked the account.
func TestAccountCreatedByOneJobAndAdoptedByAnother(t *testing.T) {
	t.Parallel()
	e := newEnv(t, graphsim.Options{})
	e.exec(`CREATE TABLE entraprov.contractors (LIKE entraprov.desired_users INCLUDING ALL)`)
	hr := e.job
	co := hr
	co.Name, co.Source, co.Matching.AdoptBy = "contractors", "entraprov.contractors", "user_principal_name"
	ann := e.people(1, 1)[0]
	e.insert(ann)
	e.exec(`INSERT INTO entraprov.contractors SELECT * FROM entraprov.desired_users`)
	e.exec(`UPDATE entraprov.contractors SET job_title = 'Contractor'`)

	// hr's first link write is ann's "creating" marker, its second the
	// link to the account its create made: hold that one until
	// contractors' run is over.
	ctx, cancel := context.WithTimeoutCause(e.ctx, 2*time.Minute, errors.New("hr never created ann"))
	defer cancel()
	created, adopted := make(chan struct{}), make(chan struct{})
	hs := &hookStore{Store: e.st, before: func(n int) error {
		if n != 2 {
			return nil
		}
		close(created)
		return waitFor(ctx, adopted, "contractors' run")
	}}
	eng := *e.eng
	eng.Store = hs
	var first store.Run
	var firstErr error
	hrDone := make(chan struct{})
	go func() {
		defer close(hrDone)
		first, firstErr = eng.Run(ctx, hr, esync.RunOptions{})
	}()
	select {
	case <-created:
	case <-hrDone:
		t.Fatalf("hr's run ended (%s, %v, %q) before writing the link of its create", first.Status, firstErr, first.ErrorSummary)
	}
	id := e.mustLive(ann.UPN).ID
	rc := e.runJob(co, store.RunSucceeded)
	close(adopted)
	<-hrDone

	if op := e.opOf(rc.ID, ann.ExternalID, esync.ActAdopt); op.Status != store.OpSucceeded || op.ObjectID != id {
		t.Fatalf("contractors' adoption: %s on %s %q; want succeeded on %s", op.Status, op.ObjectID, op.Message, id)
	}
	if op := e.opOf(first.ID, ann.ExternalID, esync.ActCreate); op.Status != store.OpSucceeded || op.ObjectID != id {
		t.Fatalf("hr's create: %s on %s; want succeeded on %s", op.Status, op.ObjectID, id)
	}
	want := "conflict: the account " + id + " this job created was linked first by job contractors (external_id " + ann.ExternalID + ")"
	if first.Status != store.RunPartial || !strings.Contains(first.ErrorSummary, want) {
		t.Fatalf("hr's run: %s %q (%v); want partial with %q", first.Status, first.ErrorSummary, firstErr, want)
	}
	if l, err := e.st.GetLink(e.ctx, hr.Name, ann.ExternalID); err != nil || l.State != store.LinkCreating || l.ObjectID != "" {
		t.Fatalf("hr's link of ann: %+v (%v); want its creating marker, naming no account", l, err)
	}

	e.sim.ResetCounters()
	r := e.runJob(hr, store.RunPartial)
	if op := e.opOf(r.ID, ann.ExternalID, esync.ActSkip); op.Status != store.OpFailed ||
		!strings.Contains(op.Message, "is managed by job contractors (external_id "+ann.ExternalID+")") {
		t.Fatalf("hr's next run on ann: %s %q; want failed naming job contractors", op.Status, op.Message)
	}
	e.runJob(co, store.RunSucceeded)
	if c := e.sim.Counters(); c.Writes != 0 {
		t.Fatalf("the jobs wrote %d times after contractors adopted the account; want none", c.Writes)
	}
	if u := e.mustLive(ann.UPN); u.ID != id || u.Properties["jobTitle"] != "Contractor" {
		t.Fatalf("ann's account: %+v; want %s as contractors left it", u, id)
	}
}
