package sync_test

import (
	"runtime"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/graphsim"
)

// TestRunsShareConnections runs 5 jobs (5 tenants, 5 at once) 10 times each
// in one process, connecting as `worker run` does (the job's ca_file, the
// process's transports), and checks what the 50 runs leave: graphsim
// accepts at most one connection per job running at once (a transport per
// run opened one per run, kept open until it idled out), and once the idle
// connections are closed, no connection stays open and the goroutines are
// back to what they were before the first run.
func TestRunsShareConnections(t *testing.T) {
	const jobs, rounds = 5, 10
	f := newFleet(t, graphsim.Options{}, directory.GraphBudgets(), jobs, 10, jobs)
	// Connections other tests left idle (to emulators now closed) are not
	// this test's.
	directory.ProcessTransports().CloseIdleConnections()
	before := runtime.NumGoroutine()
	for range rounds {
		f.runAll(t, jobs)
	}
	c := f.Srv.Conns()
	if c.Accepted > jobs {
		t.Errorf("%d runs opened %d connections to graphsim; want at most %d (one per run at once)", jobs*rounds, c.Accepted, jobs)
	}
	if c.Accepted < 1 || c.Open < 1 {
		t.Errorf("connections: %+v; want the runs' idle one(s) still open for the next run", c)
	}
	directory.ProcessTransports().CloseIdleConnections()
	// Closing is asynchronous on both ends (the server sees EOF, then its
	// connection goroutines and the client's end): wait for it, bounded.
	var after int
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		after = runtime.NumGoroutine()
		if (after <= before && f.Srv.Conns().Open == 0) || time.Now().After(deadline) {
			break
		}
	}
	if open := f.Srv.Conns().Open; open != 0 {
		t.Errorf("%d connections still open after the idle ones were closed; want 0", open)
	}
	if after > before {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines after %d runs; want at most the %d before them\n%s", after, jobs*rounds, before, buf[:runtime.Stack(buf, true)])
	}
}
