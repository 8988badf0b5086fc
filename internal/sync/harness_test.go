package sync_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/graphsim"
	"github.com/entraprov/entraprov/internal/store"
	esync "github.com/entraprov/entraprov/internal/sync"
	"github.com/entraprov/entraprov/internal/synctest"
	"github.com/entraprov/entraprov/internal/testdb"
)

// The engine's ports are implemented by the real packages.
var (
	_ esync.Store     = (*store.Store)(nil)
	_ esync.Directory = (*directory.Client)(nil)
)

// env is one isolated world (internal/synctest): a fresh database, an
// emulated tenant over TLS, a job pointing at both, and an engine with a
// controllable clock; the short names below are the fields the tests of
// this package use.
type env struct {
	*synctest.Env
	t      testing.TB
	ctx    context.Context
	st     *store.Store
	dbURL  string
	sim    *graphsim.Sim
	seeded graphsim.Seeded
	job    config.Job
	eng    *esync.Engine
	logs   *synctest.Buffer
}

func newEnv(t testing.TB, opts graphsim.Options) *env {
	t.Helper()
	w := synctest.New(t, opts)
	return &env{Env: w, t: t, ctx: w.Ctx, st: w.Store, dbURL: w.DBURL, sim: w.Sim, seeded: w.Seeded, job: w.Job,
		eng: w.Engine, logs: w.Logs}
}

func (e *env) advance(d time.Duration) { e.Advance(d) }

// person is a desired_users row.
type person struct {
	ExternalID, UPN, DisplayName, MailNickname, GivenName, Surname, JobTitle, Department string
	OfficeLocation, CompanyName, EmployeeID, EmployeeType, UsageLocation, MobilePhone    string
	Enabled                                                                              bool
	Manager                                                                              string
	Groups                                                                               []string
}

func (e *env) people(n int, from int) []person {
	out := make([]person, n)
	for i := range out {
		k := from + i
		out[i] = person{
			ExternalID: fmt.Sprintf("E%06d", k), UPN: fmt.Sprintf("user%06d@%s", k, e.seeded.Domain),
			DisplayName: fmt.Sprintf("User %06d", k), GivenName: "User", Surname: fmt.Sprintf("N%06d", k),
			JobTitle: "Engineer", Department: []string{"R&D", "Sales", "Ops"}[k%3], UsageLocation: "DE",
			EmployeeID: fmt.Sprintf("E%06d", k), CompanyName: "Contoso", Enabled: true,
		}
	}
	return out
}

func (e *env) exec(sql string, args ...any) int64 {
	e.t.Helper()
	return testdb.Exec(e.t, e.st, sql, args...)
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func (e *env) insert(ps ...person) {
	e.t.Helper()
	rows := make([][]any, len(ps))
	for i, p := range ps {
		g := p.Groups
		if g == nil {
			g = []string{}
		}
		rows[i] = []any{p.ExternalID, nilIfEmpty(p.UPN), nilIfEmpty(p.DisplayName), nilIfEmpty(p.MailNickname),
			nilIfEmpty(p.GivenName), nilIfEmpty(p.Surname), nilIfEmpty(p.JobTitle), nilIfEmpty(p.Department),
			nilIfEmpty(p.OfficeLocation), nilIfEmpty(p.CompanyName), nilIfEmpty(p.EmployeeID), nilIfEmpty(p.EmployeeType),
			nilIfEmpty(p.UsageLocation), nilIfEmpty(p.MobilePhone), p.Enabled, nilIfEmpty(p.Manager), g}
	}
	_, err := e.st.Pool().CopyFrom(e.ctx, pgx.Identifier{"entraprov", "desired_users"},
		[]string{"external_id", "user_principal_name", "display_name", "mail_nickname", "given_name", "surname",
			"job_title", "department", "office_location", "company_name", "employee_id", "employee_type",
			"usage_location", "mobile_phone", "account_enabled", "manager_external_id", "groups"},
		pgx.CopyFromRows(rows))
	if err != nil {
		e.t.Fatalf("insert desired users: %v", err)
	}
}

// run performs one run and fails the test on an engine error unless the
// status is one the caller expects.
func (e *env) run(opts esync.RunOptions, want store.RunStatus) store.Run {
	e.t.Helper()
	r, err := e.eng.Run(e.ctx, e.job, opts)
	if r.Status != want {
		e.t.Fatalf("run status %q (err %v, summary %q); want %q", r.Status, err, r.ErrorSummary, want)
	}
	return r
}

// runJob is run for another job than e.job (default options).
func (e *env) runJob(job config.Job, want store.RunStatus) store.Run {
	e.t.Helper()
	r, err := e.eng.Run(e.ctx, job, esync.RunOptions{})
	if r.Status != want {
		e.t.Fatalf("job %s: run status %q (err %v, summary %q); want %q", job.Name, r.Status, err, r.ErrorSummary, want)
	}
	return r
}

func (e *env) ops(runID int64, status store.OpStatus) []store.Operation {
	e.t.Helper()
	ops, err := e.st.ListOperations(e.ctx, runID, status)
	if err != nil {
		e.t.Fatal(err)
	}
	return ops
}

// live returns the emulator's users that are not soft-deleted, by UPN.
func (e *env) live() map[string]graphsim.UserState {
	out := map[string]graphsim.UserState{}
	for _, u := range e.sim.Users(e.seeded.TenantID) {
		if !u.Deleted {
			out[strings.ToLower(u.UserPrincipalName)] = u
		}
	}
	return out
}

func (e *env) user(upn string) graphsim.UserState {
	e.t.Helper()
	u, ok := e.sim.User(e.seeded.TenantID, upn)
	if !ok {
		e.t.Fatalf("no user %s in the directory", upn)
	}
	return u
}

// linkStates counts the job's links per state.
func (e *env) linkStates() map[store.LinkState]int {
	e.t.Helper()
	c, err := e.st.CountLinks(e.ctx, e.job.Name)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}
