package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/graphsim"
	"github.com/entraprov/entraprov/internal/store"
	"github.com/entraprov/entraprov/internal/testdb"
)

// BenchmarkWorkerProcess100k measures the real worker binary as an operator
// runs it, in its own process, so its peak RSS is the worker's alone (the
// emulator lives in the benchmark's process): an initial `worker sync` of
// 100,000 users into an empty tenant under the documented write quota
// (time-scaled ×200), then a no-change `worker sync` of the same 100,000.
func BenchmarkWorkerProcess100k(b *testing.B) {
	const n = 100_000
	const scale = 200.0
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		bin := buildWorker(b)
		dbURL := testdb.NewURL(b)
		st, err := store.Open(context.Background(), dbURL)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := st.Pool().Exec(context.Background(), `
INSERT INTO entraprov.desired_users (external_id, user_principal_name, display_name, employee_id, given_name, surname, department, job_title)
SELECT 'E' || lpad(i::text, 6, '0'), 'user' || i || '@`+graphsim.DefaultDomain+`', 'User ' || i, i::text,
       'Given' || i, 'Sur' || i, 'Dept ' || (i % 50), 'Title ' || (i % 200)
  FROM generate_series(1, $1) AS i`, n); err != nil {
			b.Fatal(err)
		}
		st.Close()
		job, sim := simJob(b, graphsim.Options{Throttling: true, TimeScale: scale, Latency: graphsim.DefaultLatency(), Seed: 5}, "bench", "@daily")
		job += "    max_concurrency: 8\n    deletion_threshold: {off: true}\n"
		cfg := fmt.Sprintf("database:\n  url: %q\nmetrics:\n  listen: \"\"\nlog:\n  format: json\n  level: warn\njobs:\n%s", dbURL, job)
		cfgPath := filepath.Join(b.TempDir(), "config.yaml")
		writeFile(b, cfgPath, cfg)
		b.StartTimer()

		initial := runWorkerMeasured(b, bin, cfgPath, scale)
		c := sim.Counters()
		if got := len(sim.Users(sim.Tenants()[0].ID)); got != n {
			b.Fatalf("%d users in the tenant; want %d", got, n)
		}
		ideal := max(0, float64(c.Writes)-3000) / (3000.0 / 150 * scale)
		b.Logf("worker sync, initial %d users (time ×%.0f): %.1fs wall, ideal %.1fs, efficiency %.2f, %d Graph requests, %d 429s, peak RSS %.0f MB",
			n, scale, initial.wall, ideal, ideal/initial.wall, c.GraphRequests(), c.Throttled, initial.rssMB)
		b.ReportMetric(initial.rssMB, "initial_peak_rss_MB")
		b.ReportMetric(initial.wall, "initial_wall_s")
		b.ReportMetric(ideal/initial.wall, "initial_efficiency")

		sim.ResetCounters()
		quiet := runWorkerMeasured(b, bin, cfgPath, scale)
		c = sim.Counters()
		b.Logf("worker sync, no change over %d managed users: %.1fs wall, %d Graph requests, %d writes, peak RSS %.0f MB",
			n, quiet.wall, c.GraphRequests(), c.Writes, quiet.rssMB)
		b.ReportMetric(quiet.rssMB, "nochange_peak_rss_MB")
		b.ReportMetric(quiet.wall, "nochange_wall_s")
		b.ReportMetric(float64(c.GraphRequests()), "nochange_requests")
		if c.Writes != 0 {
			b.Errorf("no-change run wrote %d times", c.Writes)
		}
	}
}

type processFigures struct {
	wall  float64
	rssMB float64
}

// runWorkerMeasured runs `worker sync --job bench` to completion and
// samples the child's VmHWM (peak RSS of its own address space) from
// /proc. rusage's ru_maxrss is no good here: Go starts children with
// CLONE_VM, so the child's figure includes the parent's (the emulator's)
// RSS at the moment of exec.
func runWorkerMeasured(b *testing.B, bin, cfgPath string, scale float64) processFigures {
	b.Helper()
	cmd := exec.Command(bin, "sync", "--job", "bench", "--config", cfgPath)
	// The worker paces to the budgets shrunk like the emulator's.
	cmd.Env = []string{"PATH=/usr/bin:/bin", graphTimeScaleEnv + "=" + strconv.FormatFloat(scale, 'f', -1, 64)}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	status := fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)
	var peakKB float64
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			wall := time.Since(start).Seconds()
			if err != nil {
				b.Fatalf("worker sync: %v\n%s", err, tail(out.String(), 2000))
			}
			return processFigures{wall: wall, rssMB: peakKB / 1024}
		case <-tick.C:
			if kb, ok := vmHWM(status); ok {
				peakKB = max(peakKB, kb)
			}
		}
	}
}

// vmHWM reads the VmHWM line of a /proc status file, in KiB.
func vmHWM(path string) (float64, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			return kb, err == nil
		}
	}
	return 0, false
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
