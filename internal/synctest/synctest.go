// Package synctest builds the world the integration tests of the engine
// (internal/sync) and of the audit (internal/audit) run in: a fresh,
// migrated PostgreSQL database (internal/testdb), graphsim serving one
// tenant over TLS, a job pointing at both, and an engine with a clock the
// test controls, connecting through the real azidentity and msgraph-sdk-go
// clients. Nothing in it is mocked.
//
// It is imported by tests only; the product never imports it.
package synctest

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	gosync "sync"
	"time"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/graphsim"
	"github.com/entraprov/entraprov/internal/store"
	esync "github.com/entraprov/entraprov/internal/sync"
	"github.com/entraprov/entraprov/internal/testdb"
)

// TB is the part of testing.TB the environment needs, so that a runnable
// Example (which has no *testing.T) can build one too (see ForExample).
type TB = testdb.TB

// Env is one isolated world. The fields a test may change between runs
// (Srv, WrapDir, MinBackoff, MaxBackoff) are read each time the engine
// connects.
type Env struct {
	T      TB
	Ctx    context.Context
	Store  *store.Store
	DBURL  string
	Sim    *graphsim.Sim
	Seeded graphsim.Seeded
	// Job is the job the environment was built with: tenant, endpoints,
	// credentials and the source table entraprov.desired_users.
	Job    config.Job
	Engine *esync.Engine
	// Logs holds the engine's and the client's log, as JSON lines, from
	// debug level up.
	Logs *Buffer

	// Srv is the emulator's TLS endpoint the engine connects through.
	Srv *graphsim.Server
	// WrapDir, if set, wraps the Graph client handed to the engine.
	WrapDir func(esync.Directory) esync.Directory
	// MinBackoff, MaxBackoff bound the client's retry backoff (short by
	// default; 0 is the worker's defaults, 1 s and 60 s).
	MinBackoff, MaxBackoff time.Duration

	mu        gosync.Mutex
	now       time.Time
	passwords []string
}

// New builds the environment of a test. The job has no change budget
// (every bound off; budget tests set their own) and deletes leavers after
// 30 days; callers change Job as they need.
func New(t TB, opts graphsim.Options) *Env {
	t.Helper()
	e := &Env{T: t, Ctx: context.Background(), Logs: &Buffer{}, now: time.Now().UTC().Truncate(time.Second),
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}
	e.DBURL = testdb.NewURL(t)
	st, err := store.Open(e.Ctx, e.DBURL)
	if err != nil {
		t.Fatalf("synctest: open the test database: %v", err)
	}
	t.Cleanup(st.Close)
	e.Store = st
	e.Sim = graphsim.New(opts)
	e.Seeded = e.Sim.SeedDefault()
	srv := graphsim.StartTestTLS(t, e.Sim)
	e.Srv = srv
	secretFile := filepath.Join(tempDir(t), "client-secret")
	if err := os.WriteFile(secretFile, []byte(e.Seeded.ClientSecret+"\n"), 0o600); err != nil {
		t.Fatalf("synctest: %v", err)
	}
	off := config.Bound{Off: true}
	e.Job = config.Job{
		Name: "hr", TenantID: e.Seeded.TenantID, Cloud: "public",
		AuthorityHost: srv.AuthorityHost, GraphURL: srv.GraphURL, CAFile: srv.CAFile,
		Auth:           config.Auth{Method: "secret", ClientID: e.Seeded.ClientID, Secret: config.SecretRef{File: secretFile}},
		Source:         "entraprov.desired_users",
		AllowedDomains: []string{e.Seeded.Domain},
		Leaver:         config.Leaver{Action: "delete", DeleteAfter: config.Duration{Duration: 30 * 24 * time.Hour}},
		Matching:       config.Matching{AdoptBy: "none"},
		Password:       config.Password{ForceChangeNextSignIn: true, Length: 16},
		BatchSize:      config.DefaultJob().BatchSize, MaxConcurrency: config.DefaultJob().MaxConcurrency,
		Budget: config.ChangeBudget{Disables: off, Deletes: off, GroupRemovals: off, AttributeClears: off,
			UPNRenames: off, ManagerRemovals: off},
	}
	logger := slog.New(slog.NewJSONHandler(e.Logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.Engine = &esync.Engine{
		Store:  st,
		Logger: logger,
		Now:    e.Now,
		Connect: func(ctx context.Context, job config.Job) (esync.Directory, error) {
			c, err := e.Client(ctx, job, logger)
			if err != nil {
				return nil, err
			}
			var d esync.Directory = &passwordTap{Directory: c, e: e}
			if e.WrapDir != nil {
				d = e.WrapDir(d)
			}
			return d, nil
		},
	}
	return e
}

// Client signs job in to the emulator the way the engine does: the job's
// ca_file trusts the emulator, over the process's shared transport.
func (e *Env) Client(ctx context.Context, job config.Job, log *slog.Logger) (*directory.Client, error) {
	return directory.New(ctx, job, directory.Options{Logger: log,
		MinBackoff: e.MinBackoff, MaxBackoff: e.MaxBackoff, CancelGrace: 2 * time.Second})
}

// Now is the engine's clock.
func (e *Env) Now() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.now
}

// Advance moves the engine's clock.
func (e *Env) Advance(d time.Duration) {
	e.mu.Lock()
	e.now = e.now.Add(d)
	e.mu.Unlock()
}

// Passwords are the initial passwords the engine handed to the executor,
// so a test can look for them where they must not be.
func (e *Env) Passwords() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.passwords...)
}

// passwordTap forwards operations to the real executor and remembers the
// passwords they carry.
type passwordTap struct {
	esync.Directory
	e *Env
}

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

// Buffer is a goroutine-safe log sink.
type Buffer struct {
	mu  gosync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// tempDir is t.TempDir for a TB that may be an Example's.
func tempDir(t TB) string {
	dir, err := os.MkdirTemp("", "synctest")
	if err != nil {
		t.Fatalf("synctest: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// ExampleT stands in for a *testing.T in a runnable Example: Fatalf and
// Errorf panic (which fails the Example), and Close runs the cleanups.
type ExampleT struct {
	cleanups []func()
}

// ForExample returns a TB for an Example; defer its Close.
func ForExample() *ExampleT { return &ExampleT{} }

func (x *ExampleT) Helper()                           {}
func (x *ExampleT) Cleanup(f func())                  { x.cleanups = append(x.cleanups, f) }
func (x *ExampleT) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
func (x *ExampleT) Errorf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }

// Close runs the cleanups, last registered first, as testing does.
func (x *ExampleT) Close() {
	for i := len(x.cleanups) - 1; i >= 0; i-- {
		x.cleanups[i]()
	}
}
