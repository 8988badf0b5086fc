package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestEventFor(t *testing.T) {
	for _, tt := range []struct {
		name     string
		healthy  bool
		status   string
		entered  bool
		want     Event
		wantSend bool
	}{
		{"blocked_run", true, "blocked", false, EventBlocked, true},
		{"failed_run", true, "failed", false, EventFailed, true},
		{"fifth_failure_enters_quarantine", false, "failed", true, EventQuarantined, true},
		{"success_after_a_problem_is_recovery", false, "succeeded", false, EventRecovered, true},
		{"partial_after_a_problem_is_recovery", false, "partial", false, EventRecovered, true},
		{"healthy_job_stays_quiet", true, "succeeded", false, "", false},
		{"interrupted_says_nothing", false, "interrupted", false, "", false},
		{"skipped_says_nothing", false, "skipped", false, "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, send := EventFor(tt.healthy, tt.status, tt.entered)
			if got != tt.want || send != tt.wantSend {
				t.Fatalf("EventFor = %q, %v; want %q, %v", got, send, tt.want, tt.wantSend)
			}
		})
	}
}

// hookServer answers with the given statuses in turn (200 afterwards) and
// records the bodies it received.
type hookServer struct {
	mu       sync.Mutex
	statuses []int
	bodies   []Payload
}

func (h *hookServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var p Payload
	if err := json.Unmarshal(b, &p); err != nil || r.Header.Get("Content-Type") != "application/json" {
		http.Error(w, "bad payload", http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	h.bodies = append(h.bodies, p)
	code := http.StatusOK
	if len(h.statuses) > 0 {
		code, h.statuses = h.statuses[0], h.statuses[1:]
	}
	h.mu.Unlock()
	w.WriteHeader(code)
}

func TestSendRetriesOn500AndDeliversBlockedAndRecovery(t *testing.T) {
	h := &hookServer{statuses: []int{500, 503}}
	srv := httptest.NewServer(h)
	defer srv.Close()
	var logs strings.Builder
	s := &Sender{FirstWait: 10 * time.Millisecond, Log: slog.New(slog.NewTextHandler(&logs, nil))}
	url := srv.URL + "/hooks/T0KEN-in-path?sig=abc"
	now := time.Now()
	blocked := Payload{Event: EventBlocked, Job: "nightly", RunID: 42, Status: "blocked", StartedAt: &now,
		Counts: map[string]int{"disable": 900}, Error: "900 disables exceed deletion_threshold.max_count 500",
		Inspect: "worker show 42"}
	if err := s.Send(context.Background(), url, 10*time.Second, 3, blocked); err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), url, 10*time.Second, 3, Payload{Event: EventRecovered, Job: "nightly", RunID: 43,
		Status: "succeeded", Inspect: "worker show 43"}); err != nil {
		t.Fatal(err)
	}
	if len(h.bodies) != 4 {
		t.Fatalf("server saw %d POSTs; want 3 for blocked (two 5xx, then 200) and 1 for recovery", len(h.bodies))
	}
	got := h.bodies[2]
	if got.Event != EventBlocked || got.Job != "nightly" || got.RunID != 42 || got.Counts["disable"] != 900 ||
		got.Inspect != "worker show 42" || got.SentAt.IsZero() {
		t.Errorf("blocked payload = %+v", got)
	}
	if r := h.bodies[3]; r.Event != EventRecovered || r.RunID != 43 {
		t.Errorf("recovery payload = %+v", r)
	}
	if strings.Contains(logs.String(), "T0KEN") || strings.Contains(logs.String(), "sig=abc") {
		t.Errorf("logs carry the URL's path or query:\n%s", logs.String())
	}
}

func TestSendGivesUpOn4xxAndAfterRetries(t *testing.T) {
	h := &hookServer{statuses: []int{404}}
	srv := httptest.NewServer(h)
	defer srv.Close()
	s := &Sender{FirstWait: time.Millisecond}
	err := s.Send(context.Background(), srv.URL+"/secret-path", 10*time.Second, 3, Payload{Event: EventFailed, Job: "j"})
	if err == nil || len(h.bodies) != 1 || !strings.Contains(err.Error(), "404") || strings.Contains(err.Error(), "secret-path") {
		t.Fatalf("404: err %v after %d POSTs; want one attempt and an error without the path", err, len(h.bodies))
	}

	h = &hookServer{statuses: []int{500, 500, 500}}
	srv2 := httptest.NewServer(h)
	defer srv2.Close()
	err = s.Send(context.Background(), srv2.URL, 10*time.Second, 2, Payload{Event: EventFailed, Job: "j"})
	if err == nil || len(h.bodies) != 3 {
		t.Fatalf("always 500: err %v after %d POSTs; want an error after 1 + 2 retries", err, len(h.bodies))
	}
}

func TestSendTimesOutEachAttempt(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	s := &Sender{FirstWait: time.Millisecond}
	// The endpoint hangs until the test ends: Send returning at all proves
	// each attempt timed out (two of 100ms; 10s is only a safety net).
	errc := make(chan error, 1)
	go func() {
		errc <- s.Send(context.Background(), srv.URL, 100*time.Millisecond, 1, Payload{Event: EventFailed, Job: "j"})
	}()
	select {
	case err := <-errc:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("hanging endpoint: err %v; want a timeout error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Send did not give up on a hanging endpoint (100ms per attempt)")
	}
}

// The URL is a credential and the payload names jobs and errors: a 3xx
// answer (a compromised or misconfigured endpoint) must not move either to
// another server. The redirect is not followed, not retried, and the
// delivery fails naming the answer; with a caller's client that would
// follow redirects too.
func TestSendFollowsNoRedirect(t *testing.T) {
	var mu sync.Mutex
	hits := 0
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits++
		mu.Unlock()
	}))
	defer elsewhere.Close()
	for _, code := range []int{http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		attempts := 0
		redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			attempts++
			http.Redirect(w, r, elsewhere.URL+"/collect?token=x", code)
		}))
		for _, client := range []*http.Client{nil, {}} {
			s := &Sender{Client: client, FirstWait: time.Millisecond}
			err := s.Send(context.Background(), redirector.URL+"/hook", 10*time.Second, 2, Payload{Event: EventFailed, Job: "nightly"})
			if err == nil || !strings.Contains(err.Error(), "redirects are not followed") {
				t.Errorf("%d: Send = %v; want a failure saying redirects are not followed", code, err)
			}
		}
		redirector.Close()
		if attempts != 2 {
			t.Errorf("%d: %d attempts for 2 sends; a redirect is not worth a retry", code, attempts)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if hits != 0 {
		t.Errorf("the redirect target was hit %d times; want 0", hits)
	}
}
