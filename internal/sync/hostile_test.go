package sync_test

import (
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/graphsim"
	"github.com/entraprov/entraprov/internal/store"
	esync "github.com/entraprov/entraprov/internal/sync"
)

// behind serves e's emulator behind front (a proxy rewriting some answers)
// on a new TLS listener and points the job at it.
func (e *env) behind(front func(http.Handler) http.Handler) {
	e.t.Helper()
	srv := graphsim.StartTestTLS(e.t, front(e.sim))
	e.Srv = srv
	e.job.AuthorityHost, e.job.GraphURL, e.job.CAFile = srv.AuthorityHost, srv.GraphURL, srv.CAFile
}

// A proxy answering every $batch with its HTML error page cut
// mid-character, NUL bytes and a terminal escape in it: PostgreSQL text
// refuses NUL and invalid UTF-8, so before the fix the failed operations'
// history could not be written. Now every row is written, failed, with the
// page's text made storable.
func TestHostileErrorTextIsStored(t *testing.T) {
	t.Parallel()
	e := newEnv(t, graphsim.Options{})
	page := "<html>\x00<h1>502 Bad Gateway</h1>\x1b[2J caf\xc3"
	e.behind(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost && r.URL.Path == "/v1.0/$batch" {
				w.Header().Set("Content-Type", "text/html")
				w.WriteHeader(http.StatusBadGateway)
				_, _ = w.Write([]byte(page))
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	e.insert(e.people(3, 1)...)

	r := e.run(esync.RunOptions{}, store.RunFailed)
	ops := e.ops(r.ID, store.OpFailed)
	if len(ops) != 3 {
		t.Fatalf("%d failed operation rows (counts %v, summary %q); want the 3 creates", len(ops), r.Counts, r.ErrorSummary)
	}
	for _, op := range ops {
		if op.HTTPStatus != http.StatusBadGateway || op.ErrorCode != "Bad Gateway" {
			t.Errorf("operation %d: status %d code %q; want 502 Bad Gateway", op.Seq, op.HTTPStatus, op.ErrorCode)
		}
		if want := "<html><h1>502 Bad Gateway</h1>[2J caf\uFFFD"; op.Message != want {
			t.Errorf("operation %d: message %q; want %q", op.Seq, op.Message, want)
		}
	}
	if p := e.ops(r.ID, store.OpPending); len(p) != 0 {
		t.Errorf("%d operation rows left pending", len(p))
	}
	if !utf8.ValidString(r.ErrorSummary) || strings.ContainsRune(r.ErrorSummary, 0) || !strings.Contains(r.ErrorSummary, "502 Bad Gateway") {
		t.Errorf("run summary %q; want the sanitised page", r.ErrorSummary)
	}
}

// A run that outlives jobs[].max_run_duration (the emulator takes an hour
// per write) stops like a cancellation: in-flight batches are aborted after
// the grace, the run ends interrupted with a cause naming the key to
// raise, no history row is left pending, and the lock is released.
func TestRunDeadlineInterrupts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, graphsim.Options{Latency: graphsim.Latency{Write: time.Hour}})
	e.job.MaxRunDuration = config.Duration{Duration: 5 * time.Second}
	e.insert(e.people(30, 1)...)

	r, err := e.eng.Run(e.ctx, e.job, esync.RunOptions{})
	if r.Status != store.RunInterrupted {
		t.Fatalf("run status %q (summary %q); want interrupted", r.Status, r.ErrorSummary)
	}
	for _, want := range []string{"deadline passed", "jobs[hr].max_run_duration (5s)", "raise max_run_duration"} {
		if !strings.Contains(r.ErrorSummary, want) {
			t.Errorf("summary %q lacks %q", r.ErrorSummary, want)
		}
	}
	if err == nil || !strings.Contains(err.Error(), "max_run_duration") {
		t.Errorf("Run error %v; want one naming max_run_duration", err)
	}
	if !strings.HasPrefix(r.ErrorSummary, "interrupted: ") {
		t.Errorf("summary %q is not an interruption", r.ErrorSummary)
	}
	if p := e.ops(r.ID, store.OpPending); len(p) != 0 {
		t.Errorf("%d operation rows left pending", len(p))
	}
	if n := len(e.ops(r.ID, store.OpInterrupted)) + len(e.ops(r.ID, store.OpNotStarted)); n != 30 {
		t.Errorf("%d of 30 creates interrupted or not started (counts %v); want all: the deadline fell while the writes hung", n, r.Counts)
	}
	unlock, ok, err := e.st.TryLockJob(e.ctx, e.job.Name)
	if err != nil || !ok {
		t.Fatalf("job lock after the deadline: ok %v err %v; want free", ok, err)
	}
	unlock()
}
