package directory_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/graphsim"
)

// A proxy (or a hostile endpoint) answering 429 with a Retry-After of a
// day, in both the seconds and the HTTP-date form, to $batch and to reads:
// the real SDK client waits the clamped bound instead, converges, and logs
// the clamp once. The cap is lowered through Options so the test does not
// wait the production 5 minutes (TestParseGraphError checks that bound).
func TestHugeRetryAfterIsClamped(t *testing.T) {
	var batches, reads atomic.Int32
	throttled := atomic.Int32{}
	front := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var n int32
			switch {
			case r.Method == http.MethodPost && r.URL.Path == "/v1.0/$batch":
				n = batches.Add(1)
			case r.Method == http.MethodGet && r.URL.Path == "/v1.0/users":
				n = reads.Add(1)
			}
			if n >= 1 && n <= 3 {
				throttled.Add(1)
				ra := "86400"
				if n == 2 {
					ra = time.Now().Add(24 * time.Hour).UTC().Format(http.TimeFormat)
				}
				w.Header().Set("Retry-After", ra)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusTooManyRequests)
				_, _ = io.WriteString(w, `{"error":{"code":"TooManyRequests","message":"Please retry again later."}}`)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	e := newEnvBehind(t, graphsim.Options{}, front, func(_ *config.Job, o *directory.Options) {
		o.MaxRetryAfter = 50 * time.Millisecond
	})
	// A hang guard, not a timing assertion: honouring a day would end
	// here with the operations failed.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	ops := []directory.Operation{createOp(1, e.seeded.Domain, 1), createOp(2, e.seeded.Domain, 2), createOp(3, e.seeded.Domain, 3)}
	res, st := run(t, ctx, e.c, ops)
	for k, r := range res {
		if r.Outcome != directory.Succeeded {
			t.Errorf("operation %d: %s %v; want succeeded after the clamped waits", k, r.Outcome, r.Err)
		}
	}
	if st.Throttled < 3 {
		t.Errorf("executor saw %d throttled answers; want the proxy's 3", st.Throttled)
	}
	if err := e.c.Probe(ctx); err != nil {
		t.Fatalf("read after three 429s with a day's Retry-After: %v", err)
	}
	if reads.Load() != 4 || throttled.Load() != 6 {
		t.Errorf("reads %d, 429s served %d; want 4 and 6", reads.Load(), throttled.Load())
	}
	logs := e.logs.String()
	if n := strings.Count(logs, "Retry-After clamped"); n != 1 {
		t.Errorf("clamp logged %d times; want once per client\n%s", n, logs)
	}
	if !strings.Contains(logs, "asked=") || !strings.Contains(logs, "honoured=50ms") {
		t.Errorf("clamp warning lacks the asked and honoured waits:\n%s", logs)
	}
}

// kiota's RedirectHandler followed a 3xx inside the pipeline, past the
// http.Client's CheckRedirect (and before kiota-http-go 1.5.5 with the
// Authorization header). A Graph endpoint answering a read with 302 and a
// $batch with 307 to another local listener: nothing reaches the listener
// and both calls report the refused redirect.
func TestRedirectIsNotFollowed(t *testing.T) {
	var hits, withAuth atomic.Int32
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.Header.Get("Authorization") != "" {
			withAuth.Add(1)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"value":[]}`)
	}))
	t.Cleanup(elsewhere.Close)
	front := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/v1.0/") {
				code := http.StatusFound
				if r.Method == http.MethodPost {
					code = http.StatusTemporaryRedirect
				}
				http.Redirect(w, r, elsewhere.URL+r.URL.RequestURI(), code)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	e := newEnvBehind(t, graphsim.Options{}, front, nil)
	ctx := context.Background()

	err := e.c.Probe(ctx)
	var ge *directory.GraphError
	if !errors.As(err, &ge) || ge.Status != http.StatusFound {
		t.Fatalf("Probe through a 302: %v; want a GraphError with status 302", err)
	}
	if !strings.Contains(ge.Message, "redirect to "+elsewhere.URL+" not followed") {
		t.Errorf("message %q does not say which redirect was refused", ge.Message)
	}
	res, _ := run(t, ctx, e.c, []directory.Operation{createOp(1, e.seeded.Domain, 1)})
	if r := res[1]; r.Outcome != directory.Failed || r.HTTPStatus != http.StatusTemporaryRedirect {
		t.Errorf("create through a 307: %s status %d %v; want failed with 307", r.Outcome, r.HTTPStatus, r.Err)
	}
	if hits.Load() != 0 {
		t.Fatalf("the redirect target got %d requests (%d with a bearer token); want none", hits.Load(), withAuth.Load())
	}
}
