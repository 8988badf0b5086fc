package daemon

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/jobs"
	"github.com/entraprov/entraprov/internal/store"
	"github.com/entraprov/entraprov/internal/webhook"
)

// The daemon posts blocked, quarantined and recovery events of a job to its
// webhook (retrying a 500), and nothing for a healthy job staying healthy.
func TestDaemonSendsWebhookEvents(t *testing.T) {
	var mu sync.Mutex
	var got []webhook.Payload
	first := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if first { // the first attempt fails: the payload must come again
			first = false
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		b, _ := io.ReadAll(r.Body)
		var p webhook.Payload
		if err := json.Unmarshal(b, &p); err != nil {
			t.Errorf("payload is not JSON: %v", err)
		}
		got = append(got, p)
	}))
	defer srv.Close()

	job := config.DefaultJob()
	job.Name = "nightly"
	// The URL from a file, as for a receiver whose URL embeds its token.
	urlFile := filepath.Join(t.TempDir(), "webhook-url")
	if err := os.WriteFile(urlFile, []byte(srv.URL+"/hook\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	job.Webhook = config.Webhook{URL: config.URLRef{Ref: config.SecretRef{File: urlFile}}, Timeout: config.Duration{Duration: 10 * time.Second}, Retries: 2}
	cfg := &config.Config{Jobs: []config.Job{job}, Quarantine: config.Default().Quarantine}
	d := &workerd{log: slog.New(slog.NewTextHandler(io.Discard, nil)), cfg: cfg,
		hooks: &hookState{unwell: map[string]bool{}, sender: &webhook.Sender{FirstWait: time.Millisecond}}}

	until := time.Now().Add(2 * time.Hour)
	results := []jobs.Result{
		{Job: "nightly", Run: store.Run{ID: 1, Job: "nightly", Mode: "apply", Status: store.RunSucceeded}},
		{Job: "nightly", Run: store.Run{ID: 2, Job: "nightly", Mode: "apply", Status: store.RunBlocked,
			Counts: store.RunCounts{ByAction: map[string]int{"disable": 900}}, ErrorSummary: "900 disables exceed max_count 500"}},
		{Job: "nightly", Run: store.Run{ID: 3, Job: "nightly", Mode: "apply", Status: store.RunFailed, ErrorSummary: "AADSTS7000222"},
			Quarantine: &jobs.QuarantineDecision{Failures: 5, Until: &until, Reason: "5 consecutive failed runs"}},
		{Job: "nightly", Skipped: true},
		{Job: "nightly", Run: store.Run{ID: 4, Job: "nightly", Mode: "apply", Status: store.RunSucceeded}},
		{Job: "nightly", Run: store.Run{ID: 5, Job: "nightly", Mode: "apply", Status: store.RunSucceeded}},
	}
	for _, res := range results {
		d.sendWebhook(res)
		d.hooks.pending.Wait() // keep the order for the assertions
	}
	mu.Lock()
	defer mu.Unlock()
	want := []struct {
		ev  webhook.Event
		run int64
	}{{webhook.EventBlocked, 2}, {webhook.EventQuarantined, 3}, {webhook.EventRecovered, 4}}
	if len(got) != len(want) {
		t.Fatalf("webhook got %d payloads: %+v; want %d", len(got), got, len(want))
	}
	for i, w := range want {
		if got[i].Event != w.ev || got[i].RunID != w.run || got[i].Job != "nightly" {
			t.Errorf("payload %d = %+v; want %s of run %d", i, got[i], w.ev, w.run)
		}
	}
	if got[0].Counts["disable"] != 900 || got[0].Inspect != "worker show 2" {
		t.Errorf("blocked payload = %+v; want counts and the inspect command", got[0])
	}
	if q := got[1].Quarantine; q == nil || q.Failures != 5 || !q.Until.Equal(until) {
		t.Errorf("quarantined payload = %+v", got[1])
	}
}
