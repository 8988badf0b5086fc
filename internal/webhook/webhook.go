// Package webhook tells an operator's endpoint when a job needs attention:
// a JSON POST when a run is blocked by the change budget or fails,
// when the job is quarantined, and when it recovers.
//
// It owns the payload, the rule that picks the event from a run's outcome
// (EventFor, pure) and the delivery (Sender: per-attempt timeout, retries
// with doubling waits on network errors, 429 and 5xx; redirects are not
// followed). It must not put a
// secret, a token or a user's personal data in a payload — job name, run
// id, status, counts and the run's error summary only — nor log the URL
// beyond its scheme and host (webhook URLs often embed a token).
package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"
)

// Event names the state change a payload reports.
type Event string

// Events.
const (
	EventBlocked     Event = "blocked"
	EventFailed      Event = "failed"
	EventQuarantined Event = "quarantined"
	EventRecovered   Event = "recovered"
)

// Quarantine is the job's quarantine in a payload.
type Quarantine struct {
	Failures int       `json:"consecutive_failures"`
	Until    time.Time `json:"until"`
	Reason   string    `json:"reason"`
}

// Payload is the JSON body POSTed.
type Payload struct {
	Event      Event          `json:"event"`
	Job        string         `json:"job"`
	RunID      int64          `json:"run_id,omitempty"`
	Status     string         `json:"status,omitempty"`
	Trigger    string         `json:"trigger,omitempty"`
	StartedAt  *time.Time     `json:"started_at,omitempty"`
	FinishedAt *time.Time     `json:"finished_at,omitempty"`
	Counts     map[string]int `json:"counts,omitempty"`
	Error      string         `json:"error,omitempty"`
	Quarantine *Quarantine    `json:"quarantine,omitempty"`
	// Inspect is the command that shows the run.
	Inspect string    `json:"inspect"`
	Host    string    `json:"host,omitempty"`
	SentAt  time.Time `json:"sent_at"`
}

// EventFor picks the event to send after a run: entering quarantine wins,
// then blocked and failed; a succeeded or partial run after a reported
// problem (healthy false) is a recovery. Other outcomes (interrupted,
// skipped, a healthy job staying healthy) send nothing.
func EventFor(healthy bool, status string, enteredQuarantine bool) (Event, bool) {
	switch {
	case enteredQuarantine:
		return EventQuarantined, true
	case status == "blocked":
		return EventBlocked, true
	case status == "failed":
		return EventFailed, true
	case (status == "succeeded" || status == "partial") && !healthy:
		return EventRecovered, true
	}
	return "", false
}

// Sender delivers payloads.
type Sender struct {
	// Client sends the requests (nil: http.DefaultClient's transport).
	// Whatever its CheckRedirect, Send follows no redirect: the URL is a
	// credential, and a 3xx would send the payload (and, for a same-host
	// redirect, any header) to wherever the answer points.
	Client *http.Client
	Log    *slog.Logger
	// FirstWait is the wait before the first retry (0: 1s); it doubles.
	FirstWait time.Duration
}

// Send POSTs p to rawURL: one attempt of at most timeout, then up to
// retries more after a network error, a 429 or a 5xx, waiting FirstWait,
// then twice as long each time. It returns nil on a 2xx answer.
func (s *Sender) Send(ctx context.Context, rawURL string, timeout time.Duration, retries int, p Payload) error {
	if p.SentAt.IsZero() {
		p.SentAt = time.Now().UTC()
	}
	body, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("webhook %s: encode payload: %w", p.Event, err)
	}
	client := &http.Client{}
	if s.Client != nil {
		c := *s.Client
		client = &c
	}
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	wait := s.FirstWait
	if wait <= 0 {
		wait = time.Second
	}
	dest := redact(rawURL)
	var last error
	for attempt := 0; attempt <= retries; attempt++ {
		if attempt > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("webhook %s to %s: %w (last: %w)", p.Event, dest, ctx.Err(), last)
			}
			wait *= 2
		}
		retry, err := s.post(ctx, client, rawURL, timeout, body)
		if err == nil {
			if s.Log != nil {
				s.Log.Info("webhook sent", "event", p.Event, "job", p.Job, "run_id", p.RunID, "to", dest, "attempts", attempt+1)
			}
			return nil
		}
		last = err
		if !retry {
			break
		}
		if s.Log != nil {
			s.Log.Warn("webhook attempt failed", "event", p.Event, "job", p.Job, "to", dest, "attempt", attempt+1, "err", err)
		}
	}
	return fmt.Errorf("webhook %s to %s: %w", p.Event, dest, last)
}

// post makes one attempt; retry says whether another may succeed.
func (s *Sender) post(ctx context.Context, client *http.Client, rawURL string, timeout time.Duration, body []byte) (retry bool, err error) {
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, rawURL, bytes.NewReader(body))
	if err != nil {
		return false, errors.New("invalid webhook URL")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "entraprov-worker")
	resp, err := client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // url.Error repeats the full URL
		}
		return true, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return false, nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return true, fmt.Errorf("answered %s", resp.Status)
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return false, fmt.Errorf("answered %s: redirects are not followed; configure the URL it redirects to", resp.Status)
	default:
		return false, fmt.Errorf("answered %s (not retried)", resp.Status)
	}
}

// redact keeps the scheme and host of a URL: paths and queries of webhook
// URLs often carry a token.
func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return "(invalid URL)"
	}
	return u.Scheme + "://" + u.Host + "/…"
}
