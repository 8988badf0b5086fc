package sync_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/graphsim"
	"github.com/entraprov/entraprov/internal/store"
	esync "github.com/entraprov/entraprov/internal/sync"
	"github.com/entraprov/entraprov/internal/testdb"
)

// The engine's ports are implemented by the real packages.
var (
	_ esync.Store     = (*store.Store)(nil)
	_ esync.Directory = (*directory.Client)(nil)
)

// env is one isolated world: a fresh database, an emulated tenant over TLS,
// a job pointing at both, and an engine with a controllable clock.
type env struct {
	t      testing.TB
	ctx    context.Context
	st     *store.Store
	dbURL  string
	sim    *graphsim.Sim
	srv    *graphsim.Server
	seeded graphsim.Seeded
	job    config.Job
	eng    *esync.Engine
	logs   *syncBuffer

	mu  gosync.Mutex
	now time.Time
	// passwords sees every initial password the engine hands to the
	// executor (so tests can look for them where they must not be).
	passwords []string
	// wrapDir, if set, wraps the Graph client handed to the engine.
	wrapDir func(esync.Directory) esync.Directory
	// minBackoff, maxBackoff bound the client's retry backoff (short for
	// tests; 0 is the worker's defaults, 1 s and 60 s).
	minBackoff, maxBackoff time.Duration
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu  gosync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newEnv(t testing.TB, opts graphsim.Options) *env {
	t.Helper()
	e := &env{t: t, ctx: context.Background(), logs: &syncBuffer{}, now: time.Now().UTC().Truncate(time.Second),
		minBackoff: 5 * time.Millisecond, maxBackoff: 100 * time.Millisecond}
	e.dbURL = testdb.NewURL(t)
	st, err := store.Open(e.ctx, e.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	e.st = st
	e.sim, e.srv, e.seeded = graphsim.NewTestServer(t, opts)
	secretFile := filepath.Join(t.TempDir(), "client-secret")
	if err := os.WriteFile(secretFile, []byte(e.seeded.ClientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.job = config.Job{
		Name: "hr", TenantID: e.seeded.TenantID, Cloud: "public",
		AuthorityHost: e.srv.AuthorityHost, GraphURL: e.srv.GraphURL, CAFile: e.srv.CAFile,
		Auth:           config.Auth{Method: "secret", ClientID: e.seeded.ClientID, Secret: config.SecretRef{File: secretFile}},
		Source:         "entraprov.desired_users",
		AllowedDomains: []string{e.seeded.Domain},
		Leaver:         config.Leaver{Action: "delete", DeleteAfter: config.Duration{Duration: 30 * 24 * time.Hour}},
		Matching:       config.Matching{AdoptBy: "none"},
		Password:       config.Password{ForceChangeNextSignIn: true, Length: 16},
		BatchSize:      20, MaxConcurrency: 4,
		// No change budget: the tests of it set their own (budget_test.go).
		Budget: noBudget(),
	}
	logger := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.eng = &esync.Engine{
		Store:  st,
		Logger: logger,
		Now: func() time.Time {
			e.mu.Lock()
			defer e.mu.Unlock()
			return e.now
		},
		Connect: func(ctx context.Context, job config.Job) (esync.Directory, error) {
			c, err := directory.New(ctx, job, directory.Options{HTTPClient: e.srv.Client(), Logger: logger,
				MinBackoff: e.minBackoff, MaxBackoff: e.maxBackoff, CancelGrace: 2 * time.Second})
			if err != nil {
				return nil, err
			}
			var d esync.Directory = &passwordTap{Directory: c, c: c, e: e}
			if e.wrapDir != nil {
				d = e.wrapDir(d)
			}
			return d, nil
		},
	}
	return e
}

// passwordTap forwards operations to the real executor and remembers the
// passwords it carried.
type passwordTap struct {
	esync.Directory
	c *directory.Client
	e *env
}

func (p *passwordTap) Stats() directory.Stats { return p.c.Stats() }

func (p *passwordTap) Execute(ctx context.Context, ops <-chan directory.Operation, results chan<- directory.Result) directory.Stats {
	tapped := make(chan directory.Operation)
	go func() {
		defer close(tapped)
		for op := range ops {
			if op.Password != "" {
				p.e.mu.Lock()
				p.e.passwords = append(p.e.passwords, op.Password)
				p.e.mu.Unlock()
			}
			tapped <- op
		}
	}()
	return p.Directory.Execute(ctx, tapped, results)
}

func (e *env) advance(d time.Duration) {
	e.mu.Lock()
	e.now = e.now.Add(d)
	e.mu.Unlock()
}

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
	tag, err := e.st.Pool().Exec(e.ctx, sql, args...)
	if err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
	return tag.RowsAffected()
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
