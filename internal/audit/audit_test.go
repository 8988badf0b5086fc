package audit_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/entraprov/entraprov/internal/audit"
	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/graphsim"
	"github.com/entraprov/entraprov/internal/store"
	esync "github.com/entraprov/entraprov/internal/sync"
	"github.com/entraprov/entraprov/internal/synctest"
	"github.com/entraprov/entraprov/internal/testdb"
)

// The real packages implement the audit's ports.
var (
	_ audit.Source    = (*store.Store)(nil)
	_ audit.Directory = (*directory.Client)(nil)
)

// world is the engine's test environment (internal/synctest, shared with
// internal/sync's tests): a fresh database, an emulated tenant over TLS, a
// job pointing at both and the engine that provisions it.
type world struct {
	*synctest.Env
	t      *testing.T
	ctx    context.Context
	st     *store.Store
	sim    *graphsim.Sim
	seeded graphsim.Seeded
	job    config.Job
	eng    *esync.Engine
}

func newWorld(t *testing.T) *world {
	t.Helper()
	e := synctest.New(t, graphsim.Options{})
	w := &world{Env: e, t: t, ctx: e.Ctx, st: e.Store, sim: e.Sim, seeded: e.Seeded, job: e.Job, eng: e.Engine}
	// As the audit tests always had it: leavers are disabled, and the job
	// sets no change budget.
	w.job.Leaver = config.Leaver{Action: "disable"}
	w.job.Budget = config.ChangeBudget{}
	w.eng.Now = nil // the audit tests run on the wall clock
	return w
}

// client signs the audit's job in to the emulator, as the worker does.
func (w *world) client(ctx context.Context) (*directory.Client, error) {
	return w.Client(ctx, w.job, nil)
}

// insert adds n desired users numbered from `from` (user k reports to
// user `from` when withManager is set).
func (w *world) insert(n, from int) {
	w.t.Helper()
	rows := make([][]any, n)
	for i := range rows {
		k := from + i
		var manager any
		if i > 0 {
			manager = fmt.Sprintf("E%06d", from)
		}
		rows[i] = []any{fmt.Sprintf("E%06d", k), fmt.Sprintf("user%06d@%s", k, w.seeded.Domain), fmt.Sprintf("User %06d", k),
			"Engineer", []string{"R&D", "Sales"}[k%2], "DE", fmt.Sprintf("E%06d", k), true, manager, []string{}}
	}
	_, err := w.st.Pool().CopyFrom(w.ctx, pgx.Identifier{"entraprov", "desired_users"},
		[]string{"external_id", "user_principal_name", "display_name", "job_title", "department", "usage_location",
			"employee_id", "account_enabled", "manager_external_id", "groups"}, pgx.CopyFromRows(rows))
	if err != nil {
		w.t.Fatalf("insert desired users: %v", err)
	}
}

func (w *world) exec(sql string, args ...any) {
	w.t.Helper()
	testdb.Exec(w.t, w.st, sql, args...)
}

func (w *world) sync() {
	w.t.Helper()
	r, err := w.eng.Run(w.ctx, w.job, esync.RunOptions{Trigger: esync.TriggerManual, Mode: esync.ModeApply})
	if r.Status != store.RunSucceeded {
		w.t.Fatalf("run status %q (err %v, %s); want succeeded", r.Status, err, r.ErrorSummary)
	}
}

func (w *world) audit(opts audit.Options) audit.Report {
	w.t.Helper()
	c, err := w.client(w.ctx)
	if err != nil {
		w.t.Fatal(err)
	}
	rep, err := audit.Run(w.ctx, w.st, c, w.job, opts)
	if err != nil {
		w.t.Fatal(err)
	}
	return rep
}

// graph sends operations straight to the emulator through Graph, as an
// administrator editing users by hand would.
func (w *world) graph(ops ...directory.Operation) {
	w.t.Helper()
	c, err := w.client(w.ctx)
	if err != nil {
		w.t.Fatal(err)
	}
	in := make(chan directory.Operation)
	out := make(chan directory.Result)
	go func() {
		defer close(in)
		for i, op := range ops {
			op.Key = int64(i + 1)
			in <- op
		}
	}()
	go func() { c.Execute(w.ctx, in, out); close(out) }()
	for r := range out {
		if r.Outcome != directory.Succeeded {
			w.t.Fatalf("%s on %s: %s %v", r.Kind, ops[r.Key-1].ObjectID, r.Outcome, r.Err)
		}
	}
}

func (w *world) objectID(externalID string) string {
	w.t.Helper()
	l, err := w.st.GetLink(w.ctx, w.job.Name, externalID)
	if err != nil {
		w.t.Fatal(err)
	}
	return l.ObjectID
}

// byUser indexes findings by external id and kind.
func byUser(rep audit.Report) map[string]map[string]audit.Finding {
	out := map[string]map[string]audit.Finding{}
	for _, f := range rep.Findings {
		if out[f.ExternalID] == nil {
			out[f.ExternalID] = map[string]audit.Finding{}
		}
		out[f.ExternalID][f.Kind] = f
	}
	return out
}

func TestAuditIsCleanAfterASyncAndReportsEveryKindOfDrift(t *testing.T) {
	w := newWorld(t)
	w.insert(30, 1)

	before := w.audit(audit.Options{})
	if got := before.Counts[audit.KindMissing]; got != 30 {
		t.Fatalf("before any sync: %d missing; want 30 (%v)", got, before.Counts)
	}

	w.sync()
	rep := w.audit(audit.Options{})
	if !rep.Clean() || rep.Rows != 30 {
		t.Fatalf("after a sync: rows %d, findings %+v; want 30 rows and none", rep.Rows, rep.Findings)
	}

	// Hand edits in the directory, and one change in the source.
	w.graph(
		directory.Operation{Kind: directory.OpUpdate, ObjectID: w.objectID("E000002"), Fields: map[string]any{"department": "Hacked", "jobTitle": nil}},
		directory.Operation{Kind: directory.OpUpdate, ObjectID: w.objectID("E000003"), Fields: map[string]any{"accountEnabled": false}},
		directory.Operation{Kind: directory.OpDelete, ObjectID: w.objectID("E000004")},
		directory.Operation{Kind: directory.OpRemoveManager, ObjectID: w.objectID("E000005")},
	)
	w.exec(`DELETE FROM entraprov.desired_users WHERE external_id = 'E000006'`)
	w.insert(1, 100) // a new hire not provisioned yet

	rep = w.audit(audit.Options{})
	got := byUser(rep)
	d, ok := got["E000002"][audit.KindDrift]
	if !ok {
		t.Fatalf("E000002: no drift finding in %+v", rep.Findings)
	}
	if _, ok := d.Changes["department"]; !ok {
		t.Errorf("E000002 drift changes %v; want department", d.Changes)
	}
	if _, ok := d.Changes["jobTitle"]; !ok {
		t.Errorf("E000002 drift changes %v; want jobTitle", d.Changes)
	}
	if d.ObjectID != w.objectID("E000002") {
		t.Errorf("E000002 drift names object %q", d.ObjectID)
	}
	for id, kind := range map[string]string{
		"E000003": audit.KindDisabled, "E000004": audit.KindGone, "E000005": audit.KindManager,
		"E000006": audit.KindExtra, "E000100": audit.KindMissing,
	} {
		if _, ok := got[id][kind]; !ok {
			t.Errorf("%s: no %s finding in %v", id, kind, got[id])
		}
	}
	if n := len(rep.Findings); n != 6 {
		t.Errorf("%d findings; want 6 (one per edited user): %+v", n, rep.Findings)
	}

	// A sync repairs everything, the manager removed by hand included: delta
	// carries managers (manager@delta) into the mirror, so the engine sees
	// the removal as the audit does.
	w.sync()
	if rep := w.audit(audit.Options{}); !rep.Clean() {
		t.Errorf("after the repairing sync: findings %+v; want none", rep.Findings)
	}
}

func TestAuditReadsTheDirectoryLiveNotTheMirror(t *testing.T) {
	w := newWorld(t)
	w.insert(5, 1)
	w.sync()
	// The mirror still says the user is fine (no run since the edit).
	w.graph(directory.Operation{Kind: directory.OpUpdate, ObjectID: w.objectID("E000001"), Fields: map[string]any{"displayName": "Someone Else"}})
	rep := w.audit(audit.Options{})
	f, ok := byUser(rep)["E000001"][audit.KindDrift]
	if !ok {
		t.Fatalf("no drift for E000001: %+v", rep.Findings)
	}
	want := map[string]any{"from": "Someone Else", "to": "User 000001"}
	if fmt.Sprint(f.Changes["displayName"]) != fmt.Sprint(want) {
		t.Errorf("displayName change %v; want %v", f.Changes["displayName"], want)
	}
}

func TestIncludeUnmanagedReportsMatchingUnlinkedUsers(t *testing.T) {
	w := newWorld(t)
	w.sim.AddUser(w.seeded.TenantID, graphsim.UserSeed{UserPrincipalName: "user000001@" + w.seeded.Domain,
		DisplayName: "Pre-existing", AccountEnabled: true})
	w.insert(2, 1)

	plain := byUser(w.audit(audit.Options{}))
	if _, ok := plain["E000001"][audit.KindMissing]; !ok {
		t.Fatalf("without --include-unmanaged: %v; want missing", plain["E000001"])
	}
	rep := w.audit(audit.Options{IncludeUnmanaged: true})
	got := byUser(rep)
	if _, ok := got["E000001"][audit.KindUnmanaged]; !ok {
		t.Fatalf("with --include-unmanaged: %v; want unmanaged", got["E000001"])
	}
	if _, ok := got["E000002"][audit.KindMissing]; !ok {
		t.Errorf("E000002: %v; want missing", got["E000002"])
	}
}
