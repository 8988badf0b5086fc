package daemon

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/testdb"
)

// The daemon's retention pass deletes runs older than history.retention and
// stops with its context.
func TestRetentionLoopPrunes(t *testing.T) {
	st := testdb.New(t)
	_, err := st.Pool().Exec(context.Background(), `
INSERT INTO entraprov.sync_runs (job, trigger, mode, status, started_at, finished_at)
SELECT 'nightly', 'schedule', 'apply', 'succeeded', now() - g * interval '100 days', now() - g * interval '100 days'
  FROM generate_series(0, 5) g`)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		retentionLoop(ctx, st, 399*24*time.Hour, 0, time.Hour, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		if err := st.Pool().QueryRow(context.Background(), `SELECT count(*) FROM entraprov.sync_runs`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d runs left after 10s; want the 4 younger than 399 days", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("retention loop did not stop with its context")
	}
}
