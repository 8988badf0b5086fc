package sync_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/graphsim"
	"github.com/entraprov/entraprov/internal/store"
	esync "github.com/entraprov/entraprov/internal/sync"
)

// deltaWatch records how many users each delta read returned, and tells
// readBack once a read returns any after the first (the run's initial
// refresh).
type deltaWatch struct {
	esync.Directory
	mu       sync.Mutex
	reads    []int
	readBack chan struct{}
}

func (d *deltaWatch) Delta(ctx context.Context, link string, onReset func(context.Context) error, fn func(directory.User) error) (string, bool, error) {
	n := 0
	next, full, err := d.Directory.Delta(ctx, link, onReset, func(u directory.User) error { n++; return fn(u) })
	d.mu.Lock()
	defer d.mu.Unlock()
	if err == nil {
		d.reads = append(d.reads, n)
		if len(d.reads) > 1 && n > 0 {
			select {
			case d.readBack <- struct{}{}:
			default:
			}
		}
	}
	return next, full, err
}

// TestRunReadsItsWritesBackWhileSending: a run reads its own creates back
// into the mirror while it is still sending (here: while the rest of its
// results are held back), so the refresh that closes it reads only the
// last few; and the mirror and delta link it leaves are complete: every
// created user is in the mirror, linked, and the next run reads nothing
// new (one request) and finds every user unchanged.
func TestRunReadsItsWritesBackWhileSending(t *testing.T) {
	t.Parallel()
	const users = 600
	e := newEnv(t, graphsim.Options{})
	e.eng.FlushSize, e.eng.FlushInterval = 16, 10*time.Millisecond
	e.insert(e.people(users, 1)...)
	watch := &deltaWatch{readBack: make(chan struct{}, 1)}
	readDuringRun := false
	e.WrapDir = func(d esync.Directory) esync.Directory {
		watch.Directory = d
		// After 200 answers, hold the rest until the run has read some of
		// its writes back (or give up after a minute: the test then fails
		// below rather than hanging).
		return &afterResults{Directory: watch, n: 200, do: func() {
			select {
			case <-watch.readBack:
				readDuringRun = true
			case <-time.After(time.Minute):
			}
		}}
	}
	r := e.run(esync.RunOptions{}, store.RunSucceeded)
	e.WrapDir = nil
	if r.Counts.ByAction["create"] != users {
		t.Fatalf("counts %v; want %d creates", r.Counts, users)
	}
	if !readDuringRun {
		t.Fatalf("no delta read returned the run's writes while it was sending (reads: %v)", watch.reads)
	}
	if last := watch.reads[len(watch.reads)-1]; last >= users-200 {
		t.Fatalf("the closing refresh read %d users (reads: %v); want only those written after the last read-back", last, watch.reads)
	}

	var mirrored int
	if err := e.st.Pool().QueryRow(e.ctx, `SELECT count(*) FROM entraprov.directory_links l
		JOIN entraprov.directory_users u ON u.job = l.job AND u.object_id = l.object_id
		WHERE l.job = $1 AND l.state = 'active'`, e.job.Name).Scan(&mirrored); err != nil {
		t.Fatal(err)
	}
	if mirrored != users {
		t.Fatalf("%d linked users in the mirror; want %d", mirrored, users)
	}
	second := e.run(esync.RunOptions{}, store.RunSucceeded)
	if second.Counts.Unchanged != users || second.Stats.Requests != 1 {
		t.Fatalf("next run: counts %v, %d requests; want %d unchanged in one request", second.Counts, second.Stats.Requests, users)
	}
}

// streamCount counts the source reads of a run.
type streamCount struct {
	*store.Store
	mu sync.Mutex
	n  int
}

func (s *streamCount) StreamSource(ctx context.Context, job, relation string, fn func(store.SourceRow) error) error {
	s.mu.Lock()
	s.n++
	s.mu.Unlock()
	return s.Store.StreamSource(ctx, job, relation, fn)
}

// TestUnboundedBudgetSkipsThePlanningRead: the change budget's planning
// read exists to block a run over a bound before anything is written; with
// every bound off (and no approval to check) nothing can be over one, so
// the run reads the source once, for its apply pass. With a bound, the
// planning read happens first, as before.
func TestUnboundedBudgetSkipsThePlanningRead(t *testing.T) {
	t.Parallel()
	e := newEnv(t, graphsim.Options{})
	e.insert(e.people(5, 1)...)
	for _, tc := range []struct {
		name   string
		budget config.ChangeBudget
		reads  int
	}{
		{"every bound off", e.job.Budget, 1},
		{"default bounds", config.DefaultBudget(), 2},
	} {
		cs := &streamCount{Store: e.st}
		eng := *e.eng
		eng.Store = cs
		job := e.job
		job.Budget = tc.budget
		if _, err := eng.Run(e.ctx, job, esync.RunOptions{}); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if cs.n != tc.reads {
			t.Errorf("%s: %d source reads; want %d", tc.name, cs.n, tc.reads)
		}
	}
}
