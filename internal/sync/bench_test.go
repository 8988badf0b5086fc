package sync_test

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/graphsim"
	"github.com/entraprov/entraprov/internal/store"
	esync "github.com/entraprov/entraprov/internal/sync"
)

// Documented write quota per app and tenant (graph-facts.md, throttling):
// 3,000 writes per 150 s, a token bucket that starts full.
const (
	writeBurst  = 3000.0
	writeWindow = 150 * time.Second
)

// idealSeconds is the throttle-limited minimum time for n writes starting
// with a full bucket (time-scaled like graphsim).
func idealSeconds(n int64, scale float64) float64 {
	refill := writeBurst / writeWindow.Seconds() * scale
	return max(0, float64(n)-writeBurst) / refill
}

// steadySeconds is the minimum time for n writes once the burst is spent:
// the nightly case of a tenant that other work keeps near its quota.
func steadySeconds(n int64, scale float64) float64 {
	return float64(n) / (writeBurst / writeWindow.Seconds() * scale)
}

// peakRSS is the process's high-water resident set (VmHWM), in MB. It
// includes the emulator and the test's own data, so it bounds the engine's.
func peakRSS(b *testing.B) float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	b.Fatal("no VmHWM in /proc/self/status")
	return 0
}

// resetPeakRSS zeroes VmHWM (writing 5 to clear_refs), so a benchmark's
// figure is its own and not the setup's.
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

type benchFigures struct {
	users            int
	wall             float64
	requests, writes int64
	throttled        int64
	ideal            float64
	rss              float64
	heapGrowth       float64 // MB: peak live heap during the run minus before it
}

// heapSampler tracks the peak of live heap objects while a run goes on:
// the engine's own growth (live bytes marked by each GC), as the
// emulator's users exist before it starts.
type heapSampler struct {
	stop chan struct{}
	done chan float64
}

func liveHeap() float64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return float64(s[0].Value.Uint64()) / (1 << 20)
}

func startHeapSampler() *heapSampler {
	runtime.GC()
	base := liveHeap()
	h := &heapSampler{stop: make(chan struct{}), done: make(chan float64, 1)}
	go func() {
		peak := base
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-h.stop:
				h.done <- peak - base
				return
			case <-t.C:
				peak = max(peak, liveHeap())
			}
		}
	}()
	return h
}

func (h *heapSampler) peakGrowth() float64 {
	close(h.stop)
	return <-h.done
}

func (f benchFigures) report(b *testing.B, name string) {
	b.ReportMetric(f.wall, "wall_s")
	b.ReportMetric(float64(f.requests), "requests")
	b.ReportMetric(float64(f.writes), "writes")
	b.ReportMetric(float64(f.throttled), "429s")
	b.ReportMetric(f.rss, "peak_rss_MB")
	b.ReportMetric(f.heapGrowth, "run_heap_MB")
	eff := 0.0
	if f.ideal > 0 {
		eff = f.ideal / f.wall
		b.ReportMetric(f.ideal, "ideal_s")
		b.ReportMetric(eff, "efficiency")
	}
	b.Logf("%s: %d users, %.2fs wall, %d Graph requests, %d writes, %d 429s, ideal %.2fs, efficiency %.3f, peak RSS %.0f MB (process, emulator included), run's peak live-heap growth %.0f MB",
		name, f.users, f.wall, f.requests, f.writes, f.throttled, f.ideal, eff, f.rss, f.heapGrowth)
}

// measure runs the job once and collects the figures.
func measure(b *testing.B, e *env, users int, want store.RunStatus) benchFigures {
	b.Helper()
	e.sim.ResetCounters()
	resetPeakRSS()
	hs := startHeapSampler()
	start := time.Now()
	e.run(esync.RunOptions{}, want)
	wall := time.Since(start).Seconds()
	growth := hs.peakGrowth()
	c := e.sim.Counters()
	return benchFigures{users: users, wall: wall, requests: c.GraphRequests(), writes: c.Writes, throttled: c.Throttled,
		rss: peakRSS(b), heapGrowth: growth}
}

func benchInitial(b *testing.B, n int, scale float64) {
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		e := newEnv(b, graphsim.Options{Throttling: true, TimeScale: scale, Latency: graphsim.DefaultLatency(), Seed: 7})
		e.job.MaxConcurrency = 8
		e.insert(e.people(n, 1)...)
		b.StartTimer()
		f := measure(b, e, n, store.RunSucceeded)
		if got := len(e.live()); got != n {
			b.Fatalf("%d users provisioned; want %d", got, n)
		}
		// The writes are the creates; the ideal counts only them (reads do
		// not draw on the write quota).
		f.ideal = idealSeconds(f.writes, scale)
		f.report(b, fmt.Sprintf("initial %d (time ×%.0f)", n, scale))
	}
}

// BenchmarkInitial10k provisions 10,000 users into an empty tenant with the
// documented write quota, time-scaled ×50.
func BenchmarkInitial10k(b *testing.B) { benchInitial(b, 10_000, 50) }

// BenchmarkInitial100k provisions 100,000 users, time-scaled ×200 so the
// quota-bound ideal (97,000 writes past the burst) is about 24 s.
func BenchmarkInitial100k(b *testing.B) { benchInitial(b, 100_000, 200) }

// managedTenant builds n users that are already provisioned and linked (as
// after a first sync), then runs once so the mirror and delta link exist.
func managedTenant(b *testing.B, n int, scale float64) (*env, []person) {
	b.Helper()
	e := newEnv(b, graphsim.Options{Throttling: true, TimeScale: scale, Latency: graphsim.DefaultLatency(), Seed: 11})
	e.job.MaxConcurrency = 8
	ps := e.people(n, 1)
	e.insert(ps...)
	links := make([]store.Link, 0, 5000)
	for _, p := range ps {
		id := e.sim.AddUser(e.seeded.TenantID, graphsim.UserSeed{UserPrincipalName: p.UPN, DisplayName: p.DisplayName,
			EmployeeID: p.EmployeeID, AccountEnabled: true, Properties: map[string]any{
				"givenName": p.GivenName, "surname": p.Surname, "jobTitle": p.JobTitle, "department": p.Department,
				"usageLocation": p.UsageLocation, "companyName": p.CompanyName}})
		links = append(links, store.Link{Job: e.job.Name, ExternalID: p.ExternalID, ObjectID: id, UserPrincipalName: p.UPN, State: store.LinkActive})
		if len(links) == cap(links) {
			if err := e.st.UpsertLinks(e.ctx, links); err != nil {
				b.Fatal(err)
			}
			links = links[:0]
		}
	}
	if err := e.st.UpsertLinks(e.ctx, links); err != nil {
		b.Fatal(err)
	}
	r := e.run(esync.RunOptions{}, store.RunSucceeded)
	if r.Counts.Unchanged != n {
		b.Fatalf("baseline run counts %v; want %d unchanged", r.Counts, n)
	}
	return e, ps
}

// BenchmarkNoChange100k: a night where nothing changed, over 100,000 managed
// users. Floors: ≤ 5 Graph requests, < 15 s.
func BenchmarkNoChange100k(b *testing.B) {
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		e, _ := managedTenant(b, 100_000, 50)
		b.StartTimer()
		f := measure(b, e, 100_000, store.RunSucceeded)
		f.report(b, "no-change 100k")
		if f.requests > 5 || f.writes != 0 || f.wall >= 15 {
			b.Fatalf("no-change run: %d requests, %d writes, %.1fs; want ≤ 5, 0, < 15 s", f.requests, f.writes, f.wall)
		}
	}
}

// BenchmarkChurn100k: 1% churn over 100,000 managed users (500 attribute
// changes, 250 leavers, 250 joiners). The ideal is the quota-bound time of
// its writes with the burst already spent (steady state), so efficiency
// ≥ 1 means the run is not slower than the quota forces.
func BenchmarkChurn100k(b *testing.B) {
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		e, _ := managedTenant(b, 100_000, 50)
		e.exec(`UPDATE entraprov.desired_users SET job_title = 'Churned' WHERE external_id IN
		          (SELECT external_id FROM entraprov.desired_users ORDER BY external_id LIMIT 500)`)
		e.exec(`DELETE FROM entraprov.desired_users WHERE external_id IN
		          (SELECT external_id FROM entraprov.desired_users ORDER BY external_id DESC LIMIT 250)`)
		e.insert(e.people(250, 200_001)...)
		b.StartTimer()
		f := measure(b, e, 100_000, store.RunSucceeded)
		if f.writes != 1000 {
			b.Fatalf("%d writes; want 1000", f.writes)
		}
		f.ideal = steadySeconds(f.writes, 50)
		f.report(b, "churn 1% of 100k")
	}
}
