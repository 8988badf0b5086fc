package sync_test

import (
	"context"
	"strings"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/graphsim"
	"github.com/entraprov/entraprov/internal/store"
	esync "github.com/entraprov/entraprov/internal/sync"
	"github.com/entraprov/entraprov/internal/testdb"
)

// writeClock wraps one run's Graph client and notes when the run handed
// its first operation to the executor and when Graph last answered one of
// its writes; after n answers it calls do once.
type writeClock struct {
	esync.Directory
	n  int64
	do func()

	seen        atomic.Int64
	mu          gosync.Mutex
	firstSend   time.Time
	lastAnswer  time.Time
	answered    int
	sentCounter int
}

func (w *writeClock) Stats() directory.Stats {
	return w.Directory.(interface{ Stats() directory.Stats }).Stats()
}

func (w *writeClock) Execute(ctx context.Context, ops <-chan directory.Operation, results chan<- directory.Result) directory.Stats {
	in := make(chan directory.Operation)
	go func() {
		defer close(in)
		for op := range ops {
			w.mu.Lock()
			if w.firstSend.IsZero() {
				w.firstSend = time.Now()
			}
			w.sentCounter++
			w.mu.Unlock()
			in <- op
		}
	}()
	out := make(chan directory.Result)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for r := range out {
			if r.HTTPStatus != 0 || r.Outcome == directory.Succeeded {
				// Graph processed it: the request was sent and answered.
				w.mu.Lock()
				w.lastAnswer = time.Now()
				w.answered++
				w.mu.Unlock()
			}
			if w.seen.Add(1) == w.n && w.do != nil {
				w.do()
			}
			results <- r
		}
	}()
	s := w.Directory.Execute(ctx, in, out)
	close(out)
	<-done
	return s
}

func (w *writeClock) times() (first, last time.Time, answered int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.firstSend, w.lastAnswer, w.answered
}

// TestLockLostMidRunNeverTwoWriters: the session holding run A's job lock
// is terminated mid-run (pg_terminate_backend, as idle_session_timeout or a
// TCP reset would end it) and a second engine with its own pool, a second
// daemon, starts the same job at once. Graph never sees the two write at
// the same time: every write of A was answered before B handed its first
// operation to its executor. A ends interrupted with the lock-lost cause;
// B finishes the job, and the directory holds every user once.
func TestLockLostMidRunNeverTwoWriters(t *testing.T) {
	t.Parallel()
	// Slow enough that A, left alone, would still be writing long after B
	// started: one batch of 5 at a time, 40 ms a write.
	e := newEnv(t, graphsim.Options{Latency: graphsim.Latency{Write: 40 * time.Millisecond, Batch: 5 * time.Millisecond}})
	e.job.BatchSize, e.job.MaxConcurrency = 5, 1
	e.eng.FlushSize, e.eng.FlushInterval = 10, 10*time.Millisecond
	const users = 300
	e.insert(e.people(users, 1)...)

	stB := testdb.Open(t, e.dbURL)
	engB := *e.eng
	engB.Store = stB

	var (
		runB   store.Run
		errB   error
		doneB  = make(chan struct{})
		killed atomic.Int64
	)
	clockB := &writeClock{}
	strike := func() {
		var n int64
		err := stB.Pool().QueryRow(e.ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 10000)) FROM pg_locks
			WHERE locktype = 'advisory' AND granted AND objid = hashtext($1)::oid AND objsubid = 2
			AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`, e.job.Name).Scan(&n)
		if err != nil {
			t.Errorf("terminate the lock session: %v", err)
		}
		killed.Store(n)
		go func() {
			defer close(doneB)
			runB, errB = engB.Run(e.ctx, e.job, esync.RunOptions{})
		}()
	}
	clockA := &writeClock{n: 40, do: strike}
	var connects atomic.Int64
	e.WrapDir = func(d esync.Directory) esync.Directory {
		if connects.Add(1) == 1 {
			clockA.Directory = d
			return clockA
		}
		clockB.Directory = d
		return clockB
	}

	runA, errA := e.eng.Run(e.ctx, e.job, esync.RunOptions{})
	if killed.Load() != 1 {
		t.Fatalf("terminated %d lock sessions (results seen %d); want 1", killed.Load(), clockA.seen.Load())
	}
	<-doneB
	e.WrapDir = nil

	firstA, lastA, answeredA := clockA.times()
	firstB, lastB, answeredB := clockB.times()
	if firstA.IsZero() || firstB.IsZero() || answeredB == 0 {
		t.Fatalf("A sent from %v, B from %v (B answered %d): both runs must have written", firstA, firstB, answeredB)
	}
	if !lastA.Before(firstB) {
		t.Fatalf("two writers: A's last write was answered %v after B sent its first", lastA.Sub(firstB))
	}
	t.Logf("A: %d writes answered, last %v before B's first send; B: %d writes, done %v after its first",
		answeredA, firstB.Sub(lastA).Round(time.Millisecond), answeredB, lastB.Sub(firstB).Round(time.Millisecond))

	if errA == nil || runA.Status != store.RunInterrupted || !strings.Contains(runA.ErrorSummary, "job lock lost") {
		t.Fatalf("run A: status %q, err %v, summary %q; want interrupted by the lost job lock", runA.Status, errA, runA.ErrorSummary)
	}
	if got, err := e.st.GetRun(e.ctx, runA.ID); err != nil || got.Status != store.RunInterrupted ||
		!strings.Contains(got.ErrorSummary, "job lock lost") {
		t.Fatalf("run A's row: %+v, %v; want interrupted with the lock-lost cause", got, err)
	}
	if errB != nil || runB.Status != store.RunSucceeded {
		t.Fatalf("run B: status %q, err %v, summary %q; want succeeded", runB.Status, errB, runB.ErrorSummary)
	}

	if dups := e.sim.Counters().Duplicates(); len(dups) > 0 {
		t.Fatalf("users created twice: %v", dups)
	}
	if live := e.live(); len(live) != users {
		t.Fatalf("directory holds %d users; want %d", len(live), users)
	}
	if got := e.linkStates(); got[store.LinkActive] != users {
		t.Fatalf("links %v; want %d active", got, users)
	}
	// Converged: a third run finds nothing to do.
	third := e.run(esync.RunOptions{}, store.RunSucceeded)
	if third.Counts.Unchanged != users {
		t.Fatalf("third run counts %v; want every user unchanged", third.Counts)
	}
}
