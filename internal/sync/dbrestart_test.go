package sync_test

import (
	"context"
	"fmt"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/entraprov/entraprov/internal/graphsim"
	"github.com/entraprov/entraprov/internal/store"
	esync "github.com/entraprov/entraprov/internal/sync"
	"github.com/entraprov/entraprov/internal/testdb"
)

// backendKiller does to the worker's connections what a PostgreSQL
// restart does: kill makes the database stop accepting connections and
// terminates every other backend of it; reopen lets connections in again.
type backendKiller struct {
	t      testing.TB
	conn   *pgx.Conn // to another database: it survives the kill
	db     string    // the test's database
	killed atomic.Int64
	mu     gosync.Mutex
	open   bool
}

func (k *backendKiller) allowConnections(ctx context.Context, allow bool) error {
	_, err := k.conn.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s ALLOW_CONNECTIONS %t", pgx.Identifier{k.db}.Sanitize(), allow))
	if err == nil {
		k.open = allow
	}
	return err
}

func (k *backendKiller) kill() {
	k.mu.Lock()
	defer k.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := k.allowConnections(ctx, false); err != nil {
		k.t.Errorf("refuse connections: %v", err)
		return
	}
	var n int64
	err := k.conn.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = $1 AND pid <> pg_backend_pid()`, k.db).Scan(&n)
	if err != nil {
		k.t.Errorf("terminate backends: %v", err)
	}
	k.killed.Store(n)
}

func (k *backendKiller) reopen() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.open {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := k.allowConnections(ctx, true); err != nil {
		k.t.Errorf("accept connections again: %v", err)
	}
}

// reopenOnFinish lets connections in again once the run's first attempt to
// finish has returned: that attempt meets the database down, however long
// a loaded machine takes to make it (a timer started before it did not
// ensure that).
type reopenOnFinish struct {
	esync.Store
	k     *backendKiller
	calls atomic.Int64
}

func (r *reopenOnFinish) FinishRun(ctx context.Context, run *store.Run) error {
	err := r.Store.FinishRun(ctx, run)
	if r.calls.Add(1) == 1 {
		r.k.reopen()
	}
	return err
}

// TestDatabaseConnectionsKilledMidRun: when the run's database connections
// die mid-run (a PostgreSQL restart), the run closes itself as failed with
// its error summary on a fresh connection, instead of staying "running"
// until the next run marks it interrupted, and leaves no operation pending.
func TestDatabaseConnectionsKilledMidRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t, graphsim.Options{Latency: graphsim.Latency{Write: 2 * time.Millisecond, Batch: 3 * time.Millisecond}})
	e.eng.FlushSize, e.eng.FlushInterval = 16, 10*time.Millisecond
	ps := e.people(200, 1)
	e.insert(ps...)
	cfg, err := pgx.ParseConfig(e.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	db := cfg.Database
	cfg.Database = "postgres"
	conn, err := pgx.ConnectConfig(e.ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	killer := &backendKiller{t: t, conn: conn, db: db, open: true}
	t.Cleanup(killer.reopen)
	hook := &reopenOnFinish{Store: e.st, k: killer}
	e.eng.Store = hook
	tap := &afterResults{n: 40, do: killer.kill}
	e.WrapDir = func(d esync.Directory) esync.Directory {
		tap.Directory = d
		return tap
	}

	first, runErr := e.eng.Run(e.ctx, e.job, esync.RunOptions{})
	e.WrapDir = nil
	if hook.calls.Load() < 2 {
		t.Fatalf("FinishRun called %d times; the first attempt should have met the database down", hook.calls.Load())
	}
	if killer.killed.Load() == 0 {
		t.Fatalf("no backend was terminated (results seen %d); the test proves nothing", tap.seen.Load())
	}
	if runErr == nil || first.Status != store.RunFailed {
		t.Fatalf("run: status %q, err %v; want failed with an error", first.Status, runErr)
	}
	// The checks read through a new pool: the old one may still hold
	// connections killed mid-run that nobody has tried since.
	fresh := testdb.Open(t, e.dbURL)
	e.st, e.eng.Store = fresh, fresh
	got, err := e.st.GetRun(e.ctx, first.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != store.RunFailed || got.FinishedAt == nil || got.ErrorSummary == "" {
		t.Fatalf("run row: status %q, finished_at %v, summary %q; want failed, finished, with a summary",
			got.Status, got.FinishedAt, got.ErrorSummary)
	}
	var open int
	if err := e.st.Pool().QueryRow(e.ctx, `SELECT count(*) FROM entraprov.sync_operations
		WHERE run_id = $1 AND status IN ('pending', 'planned')`, first.ID).Scan(&open); err != nil {
		t.Fatal(err)
	}
	if open != 0 {
		t.Fatalf("%d operations of the run left pending", open)
	}
	t.Logf("killed %d backends; FinishRun attempts %d; run summary %q", killer.killed.Load(), hook.calls.Load(), got.ErrorSummary)

	// The next run finds nothing to mark interrupted and finishes the job.
	e.run(esync.RunOptions{}, store.RunSucceeded)
	if again, err := e.st.GetRun(e.ctx, first.ID); err != nil || again.Status != store.RunFailed {
		t.Fatalf("first run after the next one: %q (%v); want still failed", again.Status, err)
	}
	if live := e.live(); len(live) != len(ps) {
		t.Fatalf("directory holds %d users; want %d", len(live), len(ps))
	}
}
