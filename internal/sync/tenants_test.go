package sync_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/graphsim"
	"github.com/entraprov/entraprov/internal/store"
	esync "github.com/entraprov/entraprov/internal/sync"
	"github.com/entraprov/entraprov/internal/tenants"
)

// One owner per user, with tenants as data (issue 16): a job expanded from
// a template (isv@contoso, reading the shared source isv.users scoped to
// its tenant) and a job of the file (hr) provision the same tenant. A user
// hr links is never touched by isv@contoso: not adopted when isv's row
// wants its UPN (the row fails naming hr), not updated when a second link
// to the same object id exists (by hand, or from before this rule), and
// neither job writes to it while both link it. The scope holds too: a row
// of another tenant's scope in the shared source is never read.
func TestUserLinkedByOneJobIsNeverTouchedByATenantJob(t *testing.T) {
	t.Parallel()
	e := newEnv(t, graphsim.Options{})
	hr := e.job
	ps := e.people(4, 1)
	ann, bob, carl, dave := ps[0], ps[1], ps[2], ps[3]
	e.insert(ann, bob)
	e.run(esync.RunOptions{}, store.RunSucceeded)
	annBefore := e.mustLive(ann.UPN)

	e.exec(`CREATE SCHEMA isv`)
	e.exec(`CREATE TABLE isv.tenants (tenant_id uuid PRIMARY KEY, name text NOT NULL UNIQUE, enabled boolean NOT NULL DEFAULT true, scope text NOT NULL)`)
	e.exec(`INSERT INTO isv.tenants VALUES ($1, 'contoso', true, 'c1')`, e.seeded.TenantID)
	e.exec(`CREATE TABLE isv.users (LIKE entraprov.desired_users INCLUDING DEFAULTS)`)
	e.exec(`ALTER TABLE isv.users ADD COLUMN tenant_scope text NOT NULL`)
	for _, r := range []struct {
		id    string
		p     person
		scope string
	}{{"ISV-ANN", ann, "c1"}, {"ISV-CARL", carl, "c1"}, {"ISV-DAVE", dave, "c2"}} {
		e.exec(`INSERT INTO isv.users (external_id, user_principal_name, display_name, job_title, employee_id, tenant_scope)
VALUES ($1, $2, $3, 'Contractor', $4, $5)`, r.id, r.p.UPN, r.p.DisplayName, "X"+r.p.EmployeeID, r.scope)
	}

	tmpl := hr
	tmpl.Name, tmpl.TenantID, tmpl.TenantsFrom, tmpl.Source = "isv", "", "isv.tenants", "isv.users"
	tmpl.Matching.AdoptBy = "user_principal_name" // would adopt ann, were she nobody's
	cfg := config.Default()
	cfg.Jobs = []config.Job{hr, tmpl}
	exp, err := tenants.Expand(e.ctx, e.st, &cfg)
	if err != nil || len(exp.Jobs) != 2 || exp.Jobs[1].Name != "isv@contoso" {
		t.Fatalf("Expand = %+v, %v; want hr and isv@contoso", exp.Jobs, err)
	}
	isv := exp.Jobs[1]
	runJob := e.runJob
	annUntouched := func(when string) {
		t.Helper()
		if got := e.mustLive(ann.UPN); !reflect.DeepEqual(got, annBefore) {
			t.Fatalf("%s: ann's account changed:\n got %+v\nwant %+v", when, got, annBefore)
		}
	}

	r := runJob(isv, store.RunPartial)
	if op := e.opOf(r.ID, "ISV-ANN", esync.ActSkip); op.Status != store.OpFailed ||
		!strings.Contains(op.Message, "is managed by job hr (external_id "+ann.ExternalID+")") {
		t.Fatalf("isv@contoso on ann: %s %q; want failed naming job hr", op.Status, op.Message)
	}
	if op := e.opOf(r.ID, "ISV-CARL", esync.ActCreate); op.Status != store.OpSucceeded {
		t.Fatalf("isv@contoso's own hire: %+v", op)
	}
	for _, o := range e.ops(r.ID, "") {
		if o.ExternalID == "ISV-DAVE" {
			t.Fatalf("isv@contoso read a row of another tenant's scope: %+v", o)
		}
	}
	if _, ok := e.live()[strings.ToLower(dave.UPN)]; ok {
		t.Fatal("a user of scope c2 was created by the job of scope c1")
	}
	annUntouched("after isv@contoso's first run")

	// Two links to one object (by hand, or from before the rule; migration
	// 009 marks such second links legacy_shared and refuses new ones):
	// isv's update of ann (its job title) is refused naming hr, hr does
	// nothing to her either, and neither job writes.
	e.exec(`INSERT INTO entraprov.directory_links (job, external_id, object_id, user_principal_name, state, legacy_shared)
VALUES ('isv@contoso', 'ISV-ANN', $1, $2, 'active', true)`, annBefore.ID, ann.UPN)
	e.sim.ResetCounters()
	r = runJob(isv, store.RunPartial)
	if op := e.opOf(r.ID, "ISV-ANN", esync.ActUpdate); op.Status != store.OpFailed ||
		!strings.Contains(op.Message, "also linked by job hr/"+ann.ExternalID) {
		t.Fatalf("isv@contoso's update of ann: %s %q; want refused naming hr", op.Status, op.Message)
	}
	runJob(hr, store.RunSucceeded)
	if w := e.sim.Counters().Writes; w != 0 {
		t.Fatalf("the two jobs wrote %d times while both link ann; want none", w)
	}
	annUntouched("after both jobs ran with two links")
}
