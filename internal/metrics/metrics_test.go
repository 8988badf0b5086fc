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

	"github.com/entraprov/entraprov/internal/store"
)

func TestObserveRun(t *testing.T) {
	m := New()
	start := time.Now().Add(-90 * time.Second)
	end := start.Add(90 * time.Second)
	m.ObserveRun(store.Run{
		Job: "hr", Status: store.RunSucceeded, StartedAt: start, FinishedAt: &end,
		Counts: map[string]int{"create/succeeded": 7, "update.failed": 2, "create": 7, "failed": 2},
		Stats:  store.RunStats{Requests: 12, Batches: 10, Throttled: 3, Retried: 4},
	})
	m.ObserveRun(store.Run{Job: "hr", Status: store.RunFailed, StartedAt: start, FinishedAt: &end})
	m.ObserveSkipped("hr")

	checks := []struct {
		name string
		got  float64
		want float64
	}{
		{"succeeded runs", testutil.ToFloat64(m.runs.WithLabelValues("hr", "succeeded")), 1},
		{"failed runs", testutil.ToFloat64(m.runs.WithLabelValues("hr", "failed")), 1},
		{"skipped runs", testutil.ToFloat64(m.runs.WithLabelValues("hr", "skipped")), 1},
		{"create succeeded", testutil.ToFloat64(m.operations.WithLabelValues("hr", "create", "succeeded")), 7},
		{"update failed", testutil.ToFloat64(m.operations.WithLabelValues("hr", "update", "failed")), 2},
		{"graph requests", testutil.ToFloat64(m.graphRequests.WithLabelValues("hr")), 12},
		{"throttled", testutil.ToFloat64(m.throttled.WithLabelValues("hr")), 3},
		{"retries", testutil.ToFloat64(m.retries.WithLabelValues("hr")), 4},
		{"last success is the succeeded run's end", testutil.ToFloat64(m.lastSuccess.WithLabelValues("hr")), float64(end.Unix())},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	// Totals without an action/status pair must not become operation series.
	if n := testutil.CollectAndCount(m.operations); n != 2 {
		t.Errorf("operation series = %d, want 2 (totals are not operations)", n)
	}
	if n := testutil.CollectAndCount(m.runDuration); n != 1 {
		t.Errorf("duration series = %d, want 1", n)
	}
}

func TestSplitCountKey(t *testing.T) {
	tests := []struct {
		key, action, status string
		ok                  bool
	}{
		{"create/succeeded", "create", "succeeded", true},
		{"group_add.failed", "group_add", "failed", true},
		{"delete:planned", "delete", "planned", true},
		{"create", "", "", false},
		{"/x", "", "", false},
		{"x/", "", "", false},
	}
	for _, tt := range tests {
		a, s, ok := SplitCountKey(tt.key)
		if a != tt.action || s != tt.status || ok != tt.ok {
			t.Errorf("SplitCountKey(%q) = %q, %q, %v; want %q, %q, %v", tt.key, a, s, ok, tt.action, tt.status, tt.ok)
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
