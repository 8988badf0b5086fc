package jobs

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/store"
	"github.com/entraprov/entraprov/internal/testdb"
)

// Two workers (two `worker run` daemons: separate pools, schedulers and
// caps) over the same jobs and one database: each occurrence runs exactly
// once, through the job lease (store.LeaseJob) and the unique (job,
// scheduled_for) run row, and the load splits between them because a
// worker that loses a job's race frees its slot at once for the next job in
// its queue.

// workersResult is what runWorkers measured.
type workersResult struct {
	ran, lost      []int // runs each worker made, and races it lost (ErrTaken)
	maxInFlight    []int32
	rows, distinct int // run rows, and distinct (job, scheduled_for) among them
	failed         int // rows not succeeded
	wall           time.Duration
}

// runWorkers starts nW schedulers with max_concurrent_jobs cap over nJobs
// jobs, hands each the same nOcc occurrences of every job (as every
// daemon's cron tick does), each run holding its job for work, and waits
// until each has answered every occurrence.
func runWorkers(tb testing.TB, nW, nJobs, nOcc, cap int, work time.Duration) workersResult {
	tb.Helper()
	url := testdb.NewURL(tb)
	ctx := context.Background()
	jobs := make([]config.Job, nJobs)
	for i := range jobs {
		jobs[i] = testJob(fmt.Sprintf("tenant-%03d", i), never)
	}
	cfg := config.Config{MaxConcurrentJobs: cap}
	out := workersResult{ran: make([]int, nW), lost: make([]int, nW), maxInFlight: make([]int32, nW)}
	answered := make([]atomic.Int32, nW)
	ran, lost := make([]atomic.Int32, nW), make([]atomic.Int32, nW)
	runners := make([]*storeRunner, nW)
	scheds := make([]*Scheduler, nW)
	done := make(chan int, nW)
	for w := range nW {
		// The pool the worker opens for this cap (config.PoolSize).
		st, err := store.Open(ctx, url, store.WithMaxConns(cfg.PoolSize()))
		if err != nil {
			tb.Fatal(err)
		}
		// Closed here, not at cleanup: a benchmark's iterations would
		// otherwise hold every pool open until it ends.
		defer st.Close()
		runners[w] = &storeRunner{st: st, work: func(ctx context.Context, _ config.Job, _ Occurrence) error {
			time.Sleep(work)
			return nil
		}}
		onResult := func(res Result) {
			switch {
			case errors.Is(res.Err, ErrTaken):
				lost[w].Add(1)
			case res.Err != nil:
				tb.Errorf("worker %d: job %s: %v", w, res.Job, res.Err)
			default:
				ran[w].Add(1)
			}
			if answered[w].Add(1) == int32(nJobs*nOcc) {
				done <- w
			}
		}
		s := New(Options{Runner: runners[w], History: st, Logger: quietLog(), MaxConcurrent: cap, OnResult: onResult})
		if err := s.Start(ctx, jobs); err != nil {
			tb.Fatal(err)
		}
		scheds[w] = s
	}
	base := time.Date(2026, 11, 30, 2, 0, 0, 0, time.UTC)
	t0 := time.Now()
	for o := range nOcc {
		at := base.Add(time.Duration(o) * 24 * time.Hour)
		for _, j := range jobs {
			for _, s := range scheds {
				due(s, j.Name, at)
			}
		}
		// The next night's tick comes once this night's runs are done
		// (a queued job's tick would be skipped, as it must be). A run
		// frees its job only after its OnResult: wait for that too, or
		// the next tick of the job answered last could find it busy.
		for w := range nW {
			for int(answered[w].Load()) < (o+1)*nJobs {
				select {
				case <-done:
				case <-time.After(time.Millisecond):
				}
			}
			waitSlots(tb, scheds[w], 0)
		}
	}
	out.wall = time.Since(t0)
	for w := range nW {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if err := scheds[w].Stop(sctx); err != nil {
			tb.Fatal(err)
		}
		cancel()
		out.ran[w], out.lost[w] = int(ran[w].Load()), int(lost[w].Load())
		out.maxInFlight[w] = runners[w].maxSeen.Load()
	}
	check, err := store.Open(ctx, url)
	if err != nil {
		tb.Fatal(err)
	}
	defer check.Close()
	if err := check.Pool().QueryRow(ctx, `
SELECT count(*), count(DISTINCT (job, scheduled_for)), count(*) FILTER (WHERE status <> 'succeeded')
  FROM entraprov.sync_runs`).Scan(&out.rows, &out.distinct, &out.failed); err != nil {
		tb.Fatal(err)
	}
	return out
}

func TestTwoWorkersRunEveryOccurrenceOnceUnderTheCap(t *testing.T) {
	t.Parallel()
	const nJobs, nOcc, cap = 200, 2, 12
	r := runWorkers(t, 2, nJobs, nOcc, cap, 10*time.Millisecond)
	want := nJobs * nOcc
	if r.rows != want || r.distinct != want || r.failed != 0 {
		t.Fatalf("%d run rows, %d distinct occurrences, %d not succeeded; want each of the %d occurrences run once and succeeded",
			r.rows, r.distinct, r.failed, want)
	}
	if r.ran[0]+r.ran[1] != want || r.ran[0]+r.lost[0] != want || r.ran[1]+r.lost[1] != want {
		t.Errorf("ran %v, lost %v; want the runs to add up to %d and each worker to answer every occurrence", r.ran, r.lost, want)
	}
	for w, m := range r.maxInFlight {
		if m > cap {
			t.Errorf("worker %d had %d runs in flight, above max_concurrent_jobs %d", w, m, cap)
		}
	}
	if r.ran[0] == 0 || r.ran[1] == 0 {
		t.Errorf("ran %v: one worker did all the work", r.ran)
	}
	t.Logf("two workers, %d jobs x %d occurrences, cap %d: worker 0 ran %d (lost %d races), worker 1 ran %d (lost %d); in flight at most %v; %s",
		nJobs, nOcc, cap, r.ran[0], r.lost[0], r.ran[1], r.lost[1], r.maxInFlight, r.wall.Round(time.Millisecond))
}

// BenchmarkWorkers200Tenants reports how one and two daemons get through
// 200 tenants' nightly runs (each run holds its job 50 ms; the real runs
// are paced by the app's Graph budget, which a second daemon does not
// raise) with max_concurrent_jobs 12 each: share_worker0 is the share of
// the runs worker 0 made, runs_per_s the occurrences all workers ran per
// second (ideal: workers × 12 / 50 ms), lost_races the ErrTaken answers
// (one short lease attempt each).
func BenchmarkWorkers200Tenants(b *testing.B) {
	const nJobs, cap, work = 200, 12, 50 * time.Millisecond
	for _, nW := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", nW), func(b *testing.B) {
			var share, rate, lostRaces float64
			for range b.N {
				r := runWorkers(b, nW, nJobs, 1, cap, work)
				if r.rows != nJobs || r.distinct != nJobs || r.failed != 0 {
					b.Fatalf("%d rows, %d distinct, %d failed; want %d occurrences run once", r.rows, r.distinct, r.failed, nJobs)
				}
				share += float64(r.ran[0]) / nJobs
				rate += nJobs / r.wall.Seconds()
				for _, l := range r.lost {
					lostRaces += float64(l)
				}
			}
			n := float64(b.N)
			b.ReportMetric(share/n, "share_worker0")
			b.ReportMetric(rate/n, "runs_per_s")
			b.ReportMetric(rate/n/(float64(nW*cap)/work.Seconds()), "of_ideal")
			b.ReportMetric(lostRaces/n, "lost_races")
		})
	}
}
