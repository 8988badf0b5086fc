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

// twoWorkers is what runTwoWorkers measured.
type twoWorkers struct {
	ran, lost      [2]int // runs each worker made, and races it lost (ErrTaken)
	maxInFlight    [2]int32
	rows, distinct int // run rows, and distinct (job, scheduled_for) among them
	failed         int // rows not succeeded
	wall           time.Duration
}

// runTwoWorkers starts two schedulers with max_concurrent_jobs cap over
// nJobs jobs, hands both the same nOcc occurrences of every job (as both
// daemons' cron ticks do), each run holding its job for work, and waits
// until both have answered every occurrence.
func runTwoWorkers(tb testing.TB, nJobs, nOcc, cap int, work time.Duration) twoWorkers {
	tb.Helper()
	url := testdb.NewURL(tb)
	ctx := context.Background()
	jobs := make([]config.Job, nJobs)
	for i := range jobs {
		jobs[i] = testJob(fmt.Sprintf("tenant-%03d", i), never)
	}
	cfg := config.Config{MaxConcurrentJobs: cap}
	var out twoWorkers
	var answered [2]atomic.Int32
	var ran, lost [2]atomic.Int32
	var runners [2]*storeRunner
	var scheds [2]*Scheduler
	done := make(chan int, 2)
	for w := range 2 {
		// The pool the worker opens for this cap (config.PoolSize).
		st, err := store.Open(ctx, url, store.WithMaxConns(cfg.PoolSize()))
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(st.Close)
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
			due(scheds[0], j.Name, at)
			due(scheds[1], j.Name, at)
		}
		// The next night's tick comes once this night's runs are done
		// (a queued job's tick would be skipped, as it must be).
		for w := range 2 {
			for int(answered[w].Load()) < (o+1)*nJobs {
				select {
				case <-done:
				case <-time.After(time.Millisecond):
				}
			}
		}
	}
	out.wall = time.Since(t0)
	for w := range 2 {
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
	r := runTwoWorkers(t, nJobs, nOcc, cap, 10*time.Millisecond)
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

// BenchmarkTwoWorkers200Tenants reports how two daemons split 200 tenants'
// nightly runs (each run held 50 ms, max_concurrent_jobs 12 each):
// share_worker0 is the share of the runs worker 0 made, runs_per_s the
// occurrences both together ran per second, lost_races the ErrTaken answers.
func BenchmarkTwoWorkers200Tenants(b *testing.B) {
	var share, rate, lostRaces float64
	for range b.N {
		r := runTwoWorkers(b, 200, 1, 12, 50*time.Millisecond)
		if r.rows != 200 || r.distinct != 200 || r.failed != 0 {
			b.Fatalf("%d rows, %d distinct, %d failed; want 200 occurrences run once", r.rows, r.distinct, r.failed)
		}
		share += float64(r.ran[0]) / 200
		rate += 200 / r.wall.Seconds()
		lostRaces += float64(r.lost[0] + r.lost[1])
	}
	n := float64(b.N)
	b.ReportMetric(share/n, "share_worker0")
	b.ReportMetric(rate/n, "runs_per_s")
	b.ReportMetric(lostRaces/n, "lost_races")
}
