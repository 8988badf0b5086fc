package sync_test

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/graphsim"
)

// retainedTenants is how many jobs BenchmarkRetainedAfterRuns runs at once
// (each on its own tenant: a job never overlaps itself).
const retainedTenants = 5

// BenchmarkRetainedAfterRuns is what a daemon keeps from the runs it has
// finished: no-change runs of 5 jobs (25 users each, 5 at once) repeated
// until N runs are done in one process, against graphsim, each run
// connecting the way `worker run` does (directory.New with the job's
// ca_file and the process's pacing). The jobs' initial runs come first and
// are not counted.
//
// Figures, after a GC, against the same measure taken after the initial
// runs:
//   - heap_inuse_MB: growth of the heap in use (the emulator's, the
//     database pool's and the engine's; a no-change run adds nothing that
//     should last);
//   - goroutines: growth of the goroutine count (an idle connection holds
//     two, an HTTP/2 one at least one);
//   - conns/run: TCP connections graphsim accepted per run, each a full TLS
//     handshake; open_conns: those still open after the last run.
func BenchmarkRetainedAfterRuns(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("runs=%d", n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				f := newFleet(b, graphsim.Options{}, directory.GraphBudgets(), retainedTenants, 25, retainedTenants)
				f.runAll(b, retainedTenants)
				heap0, gor0 := settled()
				conns0 := f.Srv.Conns()
				b.StartTimer()
				for done := 0; done < n; done += retainedTenants {
					f.runAll(b, retainedTenants)
				}
				b.StopTimer()
				heap1, gor1 := settled()
				conns1 := f.Srv.Conns()
				if w := f.Sim.Counters().Writes; w != retainedTenants*25 {
					b.Fatalf("%d writes; want the initial runs' %d", w, retainedTenants*25)
				}
				perRun := float64(conns1.Accepted-conns0.Accepted) / float64(n)
				b.ReportMetric(heap1-heap0, "heap_inuse_MB")
				b.ReportMetric(float64(gor1-gor0), "goroutines")
				b.ReportMetric(perRun, "conns/run")
				b.ReportMetric(float64(conns1.Open), "open_conns")
				b.Logf("%d no-change runs (%d jobs at once): heap in use %+.1f MB (%.1f → %.1f), goroutines %+d (%d → %d), %d TCP+TLS connections accepted (%.2f per run), %d open after the runs",
					n, retainedTenants, heap1-heap0, heap0, heap1, gor1-gor0, gor0, gor1,
					conns1.Accepted-conns0.Accepted, perRun, conns1.Open)
			}
		})
	}
}

// settled is the heap in use (MB) and the goroutine count after two GCs,
// the second collecting what the first's finalizers released.
func settled() (heapMB float64, goroutines int) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.HeapInuse) / (1 << 20), runtime.NumGoroutine()
}
