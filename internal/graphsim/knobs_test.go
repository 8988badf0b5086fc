package graphsim_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/graphsim"
)

// logBuf is a bytes.Buffer safe for the emulator's goroutines to log into
// while the test reads it.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// adminPost posts a JSON body to an admin endpoint and decodes the answer.
func adminPost(t *testing.T, srv *graphsim.Server, path, body string) (int, map[string]any, string) {
	t.Helper()
	resp, err := srv.Client().Post(srv.URL+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(buf.Bytes(), &m)
	return resp.StatusCode, m, buf.String()
}

// writesUntilThrottled sends PATCHes in-process until the first 429 and
// returns how many were admitted.
func writesUntilThrottled(t *testing.T, sim *graphsim.Sim, token, id string) int {
	t.Helper()
	for n := 0; n < 10000; n++ {
		w := inProcess(sim, token, "PATCH", "/users/"+id, map[string]any{"jobTitle": "x"})
		switch w.Code {
		case http.StatusNoContent:
		case http.StatusTooManyRequests:
			return n
		default:
			t.Fatalf("PATCH: %d %s", w.Code, w.Body.String())
		}
	}
	t.Fatal("no 429 after 10,000 writes")
	return 0
}

// TestQuotaCut: POST /_sim/quota cuts every budget to a tenth at once, GET
// shows the factor and time left, and the quota comes back by itself when
// the time is up, the buckets refilling from where they were.
func TestQuotaCut(t *testing.T) {
	base := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	var off atomic.Int64 // the clock stands still unless moved
	clock := func() time.Time { return base.Add(time.Duration(off.Load())) }
	var logs logBuf
	sim, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{Throttling: true, Now: clock, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	r := newRaw(t, srv, seeded)
	id := r.mustCreate("quota@" + seeded.Domain)
	sim.ResetThrottling()

	for _, bad := range []string{`{"factor":0,"for":"60s"}`, `{"factor":0.1}`, `{"factor":0.1,"for":"soon"}`, `{"for":"60s"}`, `{"factor":0.1,"for":"60s","x":1}`} {
		if st, _, body := adminPost(t, srv, "/_sim/quota", bad); st != 400 {
			t.Errorf("%s: %d %s", bad, st, body)
		}
	}
	st, ans, body := adminPost(t, srv, "/_sim/quota", `{"factor":0.1,"for":"60s"}`)
	if st != 200 || ans["factor"] != 0.1 || ans["left"] != "1m0s" || ans["left_seconds"] != 60.0 || ans["throttling"] != true {
		t.Fatalf("POST quota: %d %s", st, body)
	}
	// The app+tenant write bucket (3,000) is now 300, and nothing refills
	// while the clock stands still.
	if n := writesUntilThrottled(t, sim, r.token, id); n != 300 {
		t.Fatalf("admitted %d writes under a 10%% quota; want 300", n)
	}
	off.Store(int64(30 * time.Second))
	if q := sim.Quota(); q.Factor != 0.1 || q.Left != 30*time.Second {
		t.Fatalf("after 30 s: %+v", q)
	}
	// 30 s at the cut rate (300 per 150 s) earn 60 writes.
	if n := writesUntilThrottled(t, sim, r.token, id); n < 59 || n > 60 {
		t.Fatalf("admitted %d writes after 30 s of the cut; want 60", n)
	}
	off.Store(int64(61 * time.Second))
	resp, err := srv.Client().Get(srv.URL + "/_sim/quota")
	if err != nil {
		t.Fatal(err)
	}
	var q map[string]any
	decode(resp, &q)
	if q["factor"] != 1.0 || q["left_seconds"] != 0.0 {
		t.Fatalf("after the cut: %v", q)
	}
	if !strings.Contains(logs.String(), "quota cut over") || !strings.Contains(logs.String(), "ended_at=2026-11-27T12:01:00Z") {
		t.Fatalf("the end of the cut is not logged: %s", logs.String())
	}
	// 30 s more at the cut rate (60), then 1 s at the normal rate (20).
	if n := writesUntilThrottled(t, sim, r.token, id); n < 79 || n > 80 {
		t.Fatalf("admitted %d writes just after the cut; want 80", n)
	}
	// A full window later the whole burst is back: the capacity is 3,000
	// again, not 300.
	off.Store(int64(61*time.Second + 150*time.Second))
	if n := writesUntilThrottled(t, sim, r.token, id); n != 3000 {
		t.Fatalf("admitted %d writes a window after the cut; want 3000", n)
	}
	// factor 1 ends a cut at once.
	if err := sim.SetQuota(0.5, time.Hour); err != nil {
		t.Fatal(err)
	}
	if st, ans, body := adminPost(t, srv, "/_sim/quota", `{"factor":1}`); st != 200 || ans["factor"] != 1.0 {
		t.Fatalf("factor 1: %d %s", st, body)
	}
}

// TestSecretRotation: POST /_sim/secrets revokes the old secret and adds a
// new one without a restart; the directory stays, the old secret meets
// AADSTS7000215, and no secret value appears in an answer or a log line.
func TestSecretRotation(t *testing.T) {
	var logs logBuf
	sim, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	r := newRaw(t, srv, seeded)
	r.mustCreate("kept@" + seeded.Domain)
	old, fresh := seeded.ClientSecret, graphsim.NewSecret()
	token := func(secret string) (int, map[string]any) {
		return r.tokenRequest(seeded.TenantID, url.Values{
			"grant_type": {"client_credentials"}, "client_id": {seeded.ClientID},
			"client_secret": {secret}, "scope": {"https://graph.microsoft.com/.default"},
		})
	}
	if st, _ := token(fresh); st != 401 {
		t.Fatalf("new secret before rotation: %d", st)
	}
	var answers strings.Builder
	for _, c := range []struct {
		body string
		want int
	}{
		{`{"client_id":"00000000-0000-0000-0000-000000000000","add":"` + fresh + `"}`, 404},
		{`{"client_id":"` + seeded.ClientID + `","add":"` + fresh + `","revoke":"not-a-secret-of-it"}`, 400},
		{`{"client_id":"` + seeded.ClientID + `"}`, 400},
		{`{"add":"` + fresh + `"}`, 400},
	} {
		st, _, body := adminPost(t, srv, "/_sim/secrets", c.body)
		answers.WriteString(body)
		if st != c.want {
			t.Errorf("%s: %d %s; want %d", c.body, st, body, c.want)
		}
	}
	if st, _ := token(fresh); st != 401 {
		t.Fatalf("a refused rotation added the secret: %d", st)
	}
	st, ans, body := adminPost(t, srv, "/_sim/secrets", `{"client_id":"`+strings.ToUpper(seeded.ClientID)+`","add":"`+fresh+`","revoke":"`+old+`"}`)
	answers.WriteString(body)
	if st != 200 || ans["added"] != true || ans["revoked"] != true || ans["secrets"] != 1.0 || ans["client_id"] != seeded.ClientID {
		t.Fatalf("rotation: %d %s", st, body)
	}
	st, tb := token(old)
	if desc, _ := tb["error_description"].(string); st != 401 || !strings.HasPrefix(desc, "AADSTS7000215:") {
		t.Fatalf("old secret after rotation: %d %v", st, tb)
	}
	if st, tb := token(fresh); st != 200 || tb["access_token"] == "" {
		t.Fatalf("new secret after rotation: %d %v", st, tb)
	}
	if len(sim.Users(seeded.TenantID)) != 1 {
		t.Fatalf("the directory was not kept: %v", sim.Users(seeded.TenantID))
	}
	if !strings.Contains(logs.String(), "client secret rotated") {
		t.Fatalf("no log line: %s", logs.String())
	}
	for _, v := range []string{old, fresh} {
		if strings.Contains(answers.String(), v) || strings.Contains(logs.String(), v) {
			t.Fatalf("a secret value was echoed: answers %s logs %s", answers.String(), logs.String())
		}
	}
	// Adding a secret the app already has changes nothing.
	if got, err := sim.RotateSecret(seeded.ClientID, fresh, ""); err != nil || got.Added || got.Secrets != 1 {
		t.Fatalf("re-adding: %+v %v", got, err)
	}
	if _, err := sim.RotateSecret(seeded.ClientID, "", old); !errors.Is(err, graphsim.ErrUnknownSecret) {
		t.Fatalf("revoking a revoked secret: %v", err)
	}
}

// refused says whether dialing addr is refused (nothing listens).
func refused(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// TestOutage: POST /_sim/outage answers, then closes the listener and the
// open connections (a request in flight fails, new connections are
// refused, the token endpoint too), and listens again on the same address
// with the same state by itself.
func TestOutage(t *testing.T) {
	var logs logBuf
	sim, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{
		Latency: graphsim.Latency{Read: 3 * time.Second}, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	r := newRaw(t, srv, seeded)
	id := r.mustCreate("survivor@" + seeded.Domain)

	// A read that takes 3 s is in flight when the server goes down.
	inflight := make(chan error, 1)
	go func() {
		req := newRequest("GET", srv.GraphURL+"/users/"+id, nil, r.token)
		resp, err := srv.Client().Do(req)
		if err == nil {
			resp.Body.Close()
			err = errors.New(resp.Status)
		}
		inflight <- err
	}()
	time.Sleep(300 * time.Millisecond)

	st, ans, body := adminPost(t, srv, "/_sim/outage", `{"for":"1500ms"}`)
	if st != 202 || ans["for"] != "1.5s" || ans["addr"] != srv.Addr() {
		t.Fatalf("POST outage: %d %s", st, body)
	}
	start := time.Now()
	for !refused(srv.Addr()) {
		if time.Since(start) > 2*time.Second {
			t.Fatal("still listening 2 s after the outage was asked for")
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case err := <-inflight:
		if err == nil || strings.Contains(err.Error(), "200") {
			t.Fatalf("the request in flight got an answer: %v", err)
		}
	case <-time.After(10 * time.Second): // an uncut read would answer 200 after 3s
		t.Fatal("the request in flight was not cut")
	}
	if _, err := srv.Client().PostForm(srv.AuthorityHost+seeded.TenantID+"/oauth2/v2.0/token", url.Values{}); err == nil {
		t.Fatal("the token endpoint answered during the outage")
	}
	if err := sim.Outage(time.Second); !errors.Is(err, graphsim.ErrAlreadyDown) {
		t.Fatalf("second outage: %v", err)
	}
	for refused(srv.Addr()) {
		if time.Since(start) > 15*time.Second {
			t.Fatal("not back 15 s after a 1.5 s outage")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if down := time.Since(start); down < time.Second {
		t.Fatalf("back after %s; the outage was 1.5 s", down)
	}
	// Same state, same certificate, and tokens issued before still work.
	if a := r.do("GET", "/users/"+id+"?$select=id", nil); a.status != 200 {
		t.Fatalf("after the outage: %d %v", a.status, a.body)
	}
	// The return is logged by a goroutine watching the server (every
	// 50ms): wait for the line rather than for a fixed time.
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), "outage over"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no \"outage over\" logged within 10s of the server listening again; logs: %s", logs.String())
		}
	}

	// Closing the server during an outage keeps it down.
	if err := sim.Outage(300 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	time.Sleep(600 * time.Millisecond)
	if !refused(srv.Addr()) {
		t.Fatal("a closed server came back after its outage")
	}
	if err := sim.Outage(time.Second); !errors.Is(err, graphsim.ErrNotServed) {
		t.Fatalf("outage of a closed server: %v", err)
	}
	if err := graphsim.New(graphsim.Options{}).Outage(time.Second); !errors.Is(err, graphsim.ErrNotServed) {
		t.Fatalf("outage of an unserved Sim: %v", err)
	}
}
