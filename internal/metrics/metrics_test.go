package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/store"
)

func TestObserveRun(t *testing.T) {
	m := New()
	start := time.Now().Add(-90 * time.Second)
	end := start.Add(90 * time.Second)
	m.ObserveRun(store.Run{
		Job: "hr", Status: store.RunSucceeded, StartedAt: start, FinishedAt: &end,
		Stats: store.RunStats{Requests: 12, Batches: 10, Throttled: 3, Retried: 4},
	})
	partialEnd := end.Add(time.Minute)
	m.ObserveRun(store.Run{Job: "hr", Mode: "apply", Status: store.RunPartial, StartedAt: start, FinishedAt: &partialEnd,
		Counts: store.RunCounts{BackingOff: 3, Unchanged: 100}})
	later := end.Add(time.Hour)
	m.ObserveRun(store.Run{Job: "hr", Status: store.RunFailed, StartedAt: start, FinishedAt: &later})
	m.ObserveSkipped("hr")

	checks := []struct {
		name      string
		got, want float64
	}{
		{"succeeded runs", testutil.ToFloat64(m.runs.WithLabelValues("hr", "succeeded")), 1},
		{"failed runs", testutil.ToFloat64(m.runs.WithLabelValues("hr", "failed")), 1},
		{"skipped runs", testutil.ToFloat64(m.runs.WithLabelValues("hr", "skipped")), 1},
		{"retries", testutil.ToFloat64(m.retries.WithLabelValues("hr")), 4},
		// A partial run completed (one bad user must not read as an
		// outage); a failed run after it must not move the time.
		{"last success is the partial run's end", testutil.ToFloat64(m.lastSuccess.WithLabelValues("hr")), float64(partialEnd.Unix())},
		{"users backing off after the last completed apply run", testutil.ToFloat64(m.backingOff.WithLabelValues("hr")), 3},
		{"last run is the failed run's end", testutil.ToFloat64(m.lastRun.WithLabelValues("hr")), float64(later.Unix())},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if n := testutil.CollectAndCount(m.runDuration); n != 1 {
		t.Errorf("duration series = %d, want 1", n)
	}
}

func TestGraphObserverCountsLive(t *testing.T) {
	m := New()
	g := m.Graph("hr")
	g.GraphRequest("batch", 200, 120*time.Millisecond)
	g.GraphRequest("batch", 200, 80*time.Millisecond)
	g.GraphRequest("read", 0, time.Second)
	g.StepDone(directory.OpCreate, directory.Succeeded, 201)
	g.StepDone(directory.OpCreate, directory.Failed, 400)
	g.StepDone(directory.OpAddMember, directory.Succeeded, 204)
	g.Throttled(3)

	checks := []struct {
		name      string
		got, want float64
	}{
		{"batch 200", testutil.ToFloat64(m.graphRequests.WithLabelValues("hr", "batch", "200")), 2},
		{"read without answer", testutil.ToFloat64(m.graphRequests.WithLabelValues("hr", "read", "0")), 1},
		{"create succeeded", testutil.ToFloat64(m.operations.WithLabelValues("hr", "create", "succeeded")), 1},
		{"create failed", testutil.ToFloat64(m.operations.WithLabelValues("hr", "create", "failed")), 1},
		{"add_member succeeded", testutil.ToFloat64(m.operations.WithLabelValues("hr", "add_member", "succeeded")), 1},
		{"throttled", testutil.ToFloat64(m.throttled.WithLabelValues("hr")), 3},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestServerServesMetricsAndHealth(t *testing.T) {
	m := New()
	m.SetNextRun("hr", time.Unix(1_900_000_000, 0))
	dbDown := errors.New("database: connection refused")
	var healthy atomic.Bool
	healthy.Store(true)
	srv, err := Listen("127.0.0.1:0", m, map[string]Check{
		"scheduler": func(context.Context) error { return nil },
		"database": func(context.Context) error {
			if healthy.Load() {
				return nil
			}
			return dbDown
		},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv.Serve()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	base := "http://" + srv.Addr()

	body, code := get(t, base+"/metrics")
	if code != 200 || !strings.Contains(body, `entraprov_next_run_timestamp_seconds{job="hr"} 1.9e+09`) {
		t.Fatalf("/metrics: %d\n%s", code, body)
	}
	if !strings.Contains(body, "go_goroutines") {
		t.Error("/metrics lacks the Go runtime collector")
	}

	body, code = get(t, base+"/healthz")
	if code != 200 {
		t.Fatalf("/healthz healthy: %d %s", code, body)
	}

	// The health check must fail (503) when a dependency is down, naming it.
	healthy.Store(false)
	body, code = get(t, base+"/healthz")
	var h Health
	if err := json.Unmarshal([]byte(body), &h); err != nil {
		t.Fatal(err)
	}
	if code != http.StatusServiceUnavailable || h.Status != "failing" || h.Checks["database"] != dbDown.Error() || h.Checks["scheduler"] != "ok" {
		t.Fatalf("/healthz with database down: %d %+v", code, h)
	}
}

func get(t *testing.T, url string) (string, int) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), resp.StatusCode
}
