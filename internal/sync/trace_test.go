package sync_test

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	gosync "sync"
	"testing"

	"github.com/entraprov/entraprov/internal/graphsim"
	"github.com/entraprov/entraprov/internal/store"
	esync "github.com/entraprov/entraprov/internal/sync"
)

// tracer collects a run's trace events.
type tracer struct {
	mu     gosync.Mutex
	events []esync.TraceEvent
}

func (tr *tracer) add(ev esync.TraceEvent) {
	tr.mu.Lock()
	tr.events = append(tr.events, ev)
	tr.mu.Unlock()
}

func (tr *tracer) of(kind esync.TraceKind) []esync.TraceEvent {
	var out []esync.TraceEvent
	for _, ev := range tr.events {
		if ev.Kind == kind {
			out = append(out, ev)
		}
	}
	return out
}

// TestProvisionOnDemandTracesOneCreate: a one-user run creates that user
// alone and traces its path (source row, decision, POST /users answered
// 201 with a request id, history rows) without the password; the other
// joiners stay untouched for the next full run.
func TestProvisionOnDemandTracesOneCreate(t *testing.T) {
	t.Parallel()
	e := newEnv(t, graphsim.Options{})
	ps := e.people(3, 1)
	e.insert(ps...)
	tr := &tracer{}
	r := e.run(esync.RunOptions{User: "E000002", Trace: tr.add}, store.RunSucceeded)
	if r.Trigger != string(esync.TriggerManual) || r.Mode != string(esync.ModeApply) || r.Counts.ByAction["create"] != 1 {
		t.Fatalf("run %+v; want a manual apply run with one create", r)
	}
	c := e.sim.Counters()
	if c.Writes != 1 || c.Created[strings.ToLower(ps[1].UPN)] != 1 || len(c.Created) != 1 {
		t.Fatalf("writes %d, created %v; want only %s", c.Writes, c.Created, ps[1].UPN)
	}

	src := tr.of(esync.TraceSource)
	if len(src) != 1 || src[0].Row.ExternalID != "E000002" || src[0].Row.Desired == nil || src[0].Row.Link != nil || src[0].Row.Current != nil {
		t.Fatalf("source events %+v; want E000002's row, unlinked and unknown to the mirror", src)
	}
	dec := tr.of(esync.TraceDecision)
	if len(dec) != 1 || dec[0].Decision.Primary() != esync.ActCreate {
		t.Fatalf("decision events %+v; want one create", dec)
	}
	req := tr.of(esync.TraceRequest)
	if len(req) != 1 || req[0].Request.Method != "POST" || req[0].Request.Path != "/users" ||
		!slices.Contains(req[0].Request.Attributes, "userPrincipalName") || !slices.Contains(req[0].Request.Attributes, "passwordProfile") {
		t.Fatalf("request events %+v; want POST /users naming userPrincipalName and passwordProfile", req)
	}
	ans := tr.of(esync.TraceAnswer)
	if len(ans) != 1 || ans[0].Answer.HTTPStatus != 201 || ans[0].Answer.RequestID == "" || ans[0].Answer.Status != store.OpSucceeded ||
		ans[0].Answer.Seq != req[0].Request.Seq {
		t.Fatalf("answer events %+v; want 201 succeeded with a request id", ans)
	}
	var recorded, completed bool
	for _, ev := range tr.of(esync.TraceHistory) {
		for _, op := range ev.Operations {
			recorded = recorded || op.ExternalID == "E000002" && op.Action == "create" && op.Status == store.OpPending
			completed = completed || op.Seq == ans[0].Answer.Seq && op.Status == store.OpSucceeded && op.RequestID == ans[0].Answer.RequestID
		}
	}
	if !recorded || !completed {
		t.Fatalf("history events %+v; want the create recorded pending, then completed", tr.of(esync.TraceHistory))
	}
	if ops := e.ops(r.ID, ""); len(ops) != 1 || ops[0].ExternalID != "E000002" || ops[0].Status != store.OpSucceeded {
		t.Fatalf("history of the run %+v; want E000002's create only", ops)
	}

	b, err := json.Marshal(tr.events)
	if err != nil {
		t.Fatal(err)
	}
	pws := e.Passwords()
	if len(pws) != 1 {
		t.Fatalf("%d passwords handed to Graph; want 1", len(pws))
	}
	if strings.Contains(string(b), pws[0]) {
		t.Fatal("the trace holds the initial password")
	}

	// The others were left for the next full run.
	e.sim.ResetCounters()
	r = e.run(esync.RunOptions{}, store.RunSucceeded)
	if r.Counts.ByAction["create"] != 2 || r.Counts.Unchanged != 1 {
		t.Fatalf("full run counts %v; want the two other creates and E000002 unchanged", r.Counts)
	}
}

// TestProvisionOnDemandLeaverAndBudget: in a mass leaving event the
// change budget blocks, a one-user run disables the named leaver alone,
// is not blocked and spends nothing of the budget (the next full run is
// still blocked), and leaves the job's health alone. An unknown
// external_id records no run.
func TestProvisionOnDemandLeaverAndBudget(t *testing.T) {
	t.Parallel()
	e, _ := budgetEnv(t, 40)
	e.exec(`DELETE FROM entraprov.desired_users WHERE external_id <= 'E000030'`)
	e.run(esync.RunOptions{}, store.RunBlocked)
	before, err := e.st.GetJobState(e.ctx, e.job.Name)
	if err != nil {
		t.Fatal(err)
	}

	e.sim.ResetCounters()
	tr := &tracer{}
	r := e.run(esync.RunOptions{User: "E000007", Trace: tr.add}, store.RunSucceeded)
	c := e.sim.Counters()
	if r.Counts.ByAction["disable"] != 1 || c.Writes != 1 || len(c.Patches) != 1 {
		t.Fatalf("counts %v, writes %d, patches %v; want E000007 disabled alone", r.Counts, c.Writes, c.Patches)
	}
	if u := e.user("user000007@" + e.seeded.Domain); u.AccountEnabled {
		t.Fatal("E000007 is still enabled")
	}
	if u := e.user("user000008@" + e.seeded.Domain); !u.AccountEnabled {
		t.Fatal("E000008, not named, was disabled")
	}
	req := tr.of(esync.TraceRequest)
	if len(req) != 1 || req[0].Request.Method != "PATCH" || !strings.HasPrefix(req[0].Request.Path, "/users/") ||
		!slices.Contains(req[0].Request.Attributes, "accountEnabled") {
		t.Fatalf("request events %+v; want one PATCH /users/{id} of accountEnabled", req)
	}
	if src := tr.of(esync.TraceSource); len(src) != 1 || src[0].Row.Desired != nil || src[0].Row.Current == nil || !src[0].Row.Current.AccountEnabled {
		t.Fatalf("source events %+v; want a leaver the mirror shows enabled", src)
	}

	after, err := e.st.GetJobState(e.ctx, e.job.Name)
	if err != nil {
		t.Fatal(err)
	}
	if after.LastRunID != before.LastRunID || after.ConsecutiveFailures != before.ConsecutiveFailures {
		t.Fatalf("job state %+v after the one-user run; want it as before (%+v)", after, before)
	}
	e.sim.ResetCounters()
	e.run(esync.RunOptions{}, store.RunBlocked)
	if w := e.sim.Counters().Writes; w != 0 {
		t.Fatalf("the full run after it wrote %d times; want it still blocked", w)
	}

	// It takes the job's lease: never beside a full run.
	lease, ok, err := e.st.LeaseJob(e.ctx, e.job.Name)
	if err != nil || !ok {
		t.Fatalf("lease: %v %v", ok, err)
	}
	e.run(esync.RunOptions{User: "E000009"}, store.RunSkipped)
	lease.Release()
	if u := e.user("user000009@" + e.seeded.Domain); !u.AccountEnabled {
		t.Fatal("E000009 was disabled while another run held the job")
	}

	runs, err := e.st.ListRuns(e.ctx, e.job.Name, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, xid := range []string{"E999999", "E00000"} {
		_, err := e.eng.Run(e.ctx, e.job, esync.RunOptions{User: xid})
		if !errors.Is(err, esync.ErrUnknownUser) {
			t.Fatalf("user %s: err %v; want ErrUnknownUser", xid, err)
		}
	}
	if again, _ := e.st.ListRuns(e.ctx, e.job.Name, 100); len(again) != len(runs) {
		t.Fatalf("%d runs after unknown users; want %d (none recorded)", len(again), len(runs))
	}
}

// TestPlanOnDemand: plan --user records and traces the named user's
// planned steps only.
func TestPlanOnDemand(t *testing.T) {
	t.Parallel()
	e := newEnv(t, graphsim.Options{})
	e.insert(e.people(5, 1)...)
	tr := &tracer{}
	r := e.run(esync.RunOptions{Mode: esync.ModePlan, User: "E000004", Trace: tr.add}, store.RunSucceeded)
	ops := e.ops(r.ID, "")
	if len(ops) != 1 || ops[0].ExternalID != "E000004" || ops[0].Status != store.OpPlanned {
		t.Fatalf("plan rows %+v; want E000004's create planned", ops)
	}
	if e.sim.Counters().Writes != 0 || len(tr.of(esync.TraceRequest)) != 0 || len(tr.of(esync.TraceDecision)) != 1 {
		t.Fatalf("a plan wrote %d times, traced %d requests", e.sim.Counters().Writes, len(tr.of(esync.TraceRequest)))
	}
}
