package directory_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/graphsim"
	"github.com/entraprov/entraprov/internal/profile"
)

// env is one emulator and a directory client signed in to it with the real
// azidentity credential over TLS.
type env struct {
	sim    *graphsim.Sim
	srv    *graphsim.Server
	seeded graphsim.Seeded
	job    config.Job
	c      *directory.Client
	rec    *recorder
	logs   *bytes.Buffer
}

// recorder observes the requests leaving the SDK pipeline (it does not
// change them): what headers Graph really gets.
type recorder struct {
	next    http.RoundTripper
	mu      sync.Mutex
	reqs    []http.Header
	urls    []string
	queries []string
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if strings.HasPrefix(req.URL.Path, "/v1.0/") {
		r.mu.Lock()
		r.reqs = append(r.reqs, req.Header.Clone())
		r.urls = append(r.urls, req.URL.Path)
		r.queries = append(r.queries, req.URL.RawQuery)
		r.mu.Unlock()
	}
	return r.next.RoundTrip(req)
}

func newEnv(t testing.TB, so graphsim.Options, tune func(*config.Job, *directory.Options)) *env {
	t.Helper()
	return newEnvBehind(t, so, nil, tune)
}

// newEnvBehind is newEnv with the emulator served behind front (a hostile
// proxy rewriting some answers); nil serves it directly.
func newEnvBehind(t testing.TB, so graphsim.Options, front func(http.Handler) http.Handler, tune func(*config.Job, *directory.Options)) *env {
	t.Helper()
	sim := graphsim.New(so)
	seeded := sim.SeedDefault()
	var h http.Handler = sim
	if front != nil {
		h = front(sim)
	}
	srv, err := graphsim.StartTLS(h, "127.0.0.1:0")
	if err != nil {
		t.Fatalf("graphsim: %v", err)
	}
	t.Cleanup(srv.Close)
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte(seeded.ClientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	job := config.Job{
		Name: "test", TenantID: seeded.TenantID, Cloud: "public",
		AuthorityHost: srv.AuthorityHost, GraphURL: srv.GraphURL,
		Auth:      config.Auth{Method: "secret", ClientID: seeded.ClientID, Secret: config.SecretRef{File: secretFile}},
		BatchSize: 20, MaxConcurrency: 8,
	}
	rec := &recorder{next: srv.Transport()}
	logs := &bytes.Buffer{}
	opts := directory.Options{
		HTTPClient: &http.Client{Transport: rec, Timeout: 30 * time.Second},
		UserAgent:  "entraprov/test",
		Logger:     slog.New(slog.NewTextHandler(&lockedWriter{w: logs}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 500 * time.Millisecond,
	}
	if tune != nil {
		tune(&job, &opts)
	}
	c, err := directory.New(context.Background(), job, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return &env{sim: sim, srv: srv, seeded: seeded, job: job, c: c, rec: rec, logs: logs}
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// run executes ops and returns the results by key, failing the test if an
// operation gets no result or more than one.
func run(t testing.TB, ctx context.Context, c *directory.Client, ops []directory.Operation) (map[int64]directory.Result, directory.Stats) {
	t.Helper()
	in := make(chan directory.Operation)
	out := make(chan directory.Result, 64)
	var stats directory.Stats
	go func() {
		defer close(in)
		for _, op := range ops {
			select {
			case in <- op:
			case <-ctx.Done():
				// Keep handing over: Execute answers NotStarted.
				in <- op
			}
		}
	}()
	go func() {
		stats = c.Execute(ctx, in, out)
		close(out)
	}()
	got := make(map[int64]directory.Result, len(ops))
	for r := range out {
		if prev, dup := got[r.Key]; dup {
			t.Fatalf("operation %d answered twice: %+v then %+v", r.Key, prev, r)
		}
		got[r.Key] = r
	}
	if len(got) != len(ops) {
		t.Fatalf("%d results for %d operations", len(got), len(ops))
	}
	return got, stats
}

func createOp(key int64, domain string, i int) directory.Operation {
	upn := fmt.Sprintf("user%05d@%s", i, domain)
	return directory.Operation{Key: key, Kind: directory.OpCreate, Password: "Init-Pw-" + fmt.Sprint(i) + "!x",
		Fields: map[string]any{"userPrincipalName": upn, "displayName": fmt.Sprintf("User %d", i),
			"mailNickname": fmt.Sprintf("user%05d", i), "accountEnabled": true, "department": "Ops"}}
}

func TestRequestsCarryBearerTokenAndHeaders(t *testing.T) {
	e := newEnv(t, graphsim.Options{}, nil)
	ctx := context.Background()
	if err := e.c.Probe(ctx); err != nil {
		t.Fatalf("Probe: %v", err)
	}
	res, _ := run(t, ctx, e.c, []directory.Operation{createOp(1, e.seeded.Domain, 1)})
	if r := res[1]; r.Outcome != directory.Succeeded || r.ObjectID == "" || r.HTTPStatus != 201 {
		t.Fatalf("create = %+v", r)
	}
	e.rec.mu.Lock()
	defer e.rec.mu.Unlock()
	if len(e.rec.reqs) < 2 {
		t.Fatalf("saw %d Graph requests", len(e.rec.reqs))
	}
	var token string
	for i, h := range e.rec.reqs {
		auth := h.Get("Authorization")
		if !strings.HasPrefix(auth, "Bearer ") {
			t.Errorf("%s without bearer token", e.rec.urls[i])
		}
		token = strings.TrimPrefix(auth, "Bearer ")
		if h.Get("x-ms-throttle-priority") != "low" || h.Get("User-Agent") != "entraprov/test" {
			t.Errorf("%s headers: priority %q UA %q", e.rec.urls[i], h.Get("x-ms-throttle-priority"), h.Get("User-Agent"))
		}
		if h.Get("Content-Encoding") != "" {
			t.Errorf("%s: request body compressed (%s); compression middleware should be off", e.rec.urls[i], h.Get("Content-Encoding"))
		}
	}
	if ctr := e.sim.Counters(); ctr.Unauthenticated != 0 || ctr.LowPriority < 1 {
		t.Errorf("emulator saw %d unauthenticated, %d low-priority calls", ctr.Unauthenticated, ctr.LowPriority)
	}
	roles, tenant, app, err := e.c.TokenRoles(ctx)
	if err != nil || tenant != e.seeded.TenantID || app != e.seeded.ClientID || !contains(roles, "User.ReadWrite.All") {
		t.Fatalf("TokenRoles = %v %s %s %v", roles, tenant, app, err)
	}
	for _, secret := range []string{token, e.seeded.ClientSecret, "Init-Pw-1!x"} {
		if strings.Contains(e.logs.String(), secret) {
			t.Fatalf("a secret, password or token reached the log")
		}
	}
}

func contains(list []string, v string) bool {
	for _, s := range list {
		if s == v {
			return true
		}
	}
	return false
}

// Invariant: with throttling on, every operation gets exactly one result,
// nothing is sent again after it succeeded, and once the burst is spent the
// executor paces itself: under 1% of steps are throttled at steady state.
func TestExecuteMixedOperationsUnderThrottling(t *testing.T) {
	// Time ×25 (500 writes/s): fast enough for a unit test, slow enough that
	// a scheduling stall of a loaded CI machine (several ms) is small next to
	// one batch's share of the refill.
	e := newEnv(t, graphsim.Options{Throttling: true, TimeScale: 25, Seed: 1}, nil)
	ctx := context.Background()
	const seededUsers = 1000
	ids := make([]string, seededUsers)
	for i := range ids {
		ids[i] = e.sim.AddUser(e.seeded.TenantID, graphsim.UserSeed{UserPrincipalName: fmt.Sprintf("old%04d@%s", i, e.seeded.Domain), DisplayName: "Old", AccountEnabled: true})
	}
	group := e.seeded.GroupIDs["Engineering"]
	var ops []directory.Operation
	for i := 0; i < 5000; i++ {
		k := int64(i)
		switch {
		case i%2 == 0:
			ops = append(ops, createOp(k, e.seeded.Domain, i))
		case i%10 == 1 || i%10 == 3 || i%10 == 5:
			ops = append(ops, directory.Operation{Key: k, Kind: directory.OpUpdate, ObjectID: ids[i%seededUsers], Fields: map[string]any{"jobTitle": fmt.Sprintf("T%d", i)}})
		case i%10 == 7:
			ops = append(ops, directory.Operation{Key: k, Kind: directory.OpSetManager, ObjectID: ids[i%seededUsers], RelatedID: ids[(i+1)%seededUsers]})
		default:
			ops = append(ops, directory.Operation{Key: k, Kind: directory.OpAddMember, ObjectID: ids[i/10], RelatedID: group})
		}
	}
	// Spend the 3,000-write burst first and go past it until the client
	// has met the quota (how many writes that takes depends on how fast
	// this machine is), so the measured stream runs at steady state.
	var warm []directory.Operation
	var warmStats directory.Stats
	for round := 0; e.c.Stats().Throttled == 0; round++ {
		if round == 5 {
			// A machine slower than the quota (-race on a loaded runner)
			// never meets it: the stream below is then not throttled at
			// all, and the assertions still hold.
			t.Logf("the quota was not reached in %d warm-up creates: this machine sends slower than it", len(warm))
			break
		}
		var batch []directory.Operation
		for i := 0; i < 2000; i++ {
			n := 100000 + len(warm) + i
			batch = append(batch, createOp(int64(n), e.seeded.Domain, n))
		}
		warm = append(warm, batch...)
		res, st := run(t, ctx, e.c, batch)
		for _, r := range res {
			if r.Outcome != directory.Succeeded {
				t.Fatalf("warm-up op %d: %s %v", r.Key, r.Outcome, r.Err)
			}
		}
		warmStats.Steps += st.Steps
		warmStats.Throttled += st.Throttled
	}
	start := time.Now()
	got, stats := run(t, ctx, e.c, ops)
	el := time.Since(start)
	failed := 0
	for _, r := range got {
		if r.Outcome != directory.Succeeded {
			failed++
			if failed < 5 {
				t.Errorf("op %d %s: %s %v", r.Key, r.Kind, r.Outcome, r.Err)
			}
		}
	}
	ctr := e.sim.Counters()
	if d := ctr.Duplicates(); len(d) > 0 {
		t.Errorf("users created twice: %v", d)
	}
	// Nothing is re-sent after success: successful writes = operations.
	if want := int64(len(ops) + len(warm)); ctr.Writes != want {
		t.Errorf("emulator applied %d writes for %d operations", ctr.Writes, want)
	}
	t.Logf("warm-up: %d creates, %d steps, %d throttled; measured: %d ops in %v: %d requests, %d batches, %d steps, %d throttled, %d retried",
		len(warm), warmStats.Steps, warmStats.Throttled, len(ops), el.Round(time.Millisecond), stats.Requests, stats.Batches, stats.Steps, stats.Throttled, stats.Retried)
	// Graph throttles each batch step as its own request, so 429 answers
	// are counted against steps sent.
	if float64(stats.Throttled) >= 0.01*float64(stats.Steps) {
		t.Errorf("steady state: %d of %d steps throttled, want < 1%%", stats.Throttled, stats.Steps)
	}
}

// Invariant: with 10% of calls answered 503/504 and 10% of connections
// dropped (half of them after the write took effect), every operation
// converges and no user is created twice.
func TestExecuteConvergesThroughFaults(t *testing.T) {
	e := newEnv(t, graphsim.Options{Seed: 7, ConsistencyDelay: 50 * time.Millisecond, Faults: graphsim.Faults{Rate5xx: 0.10, DropRate: 0.10, CommitBeforeFault: 0.5}}, func(_ *config.Job, o *directory.Options) {
		o.MaxAttempts = 12
	})
	ctx := context.Background()
	var ops []directory.Operation
	for i := 0; i < 1000; i++ {
		ops = append(ops, createOp(int64(i), e.seeded.Domain, i))
	}
	res, stats := run(t, ctx, e.c, ops)
	recovered := 0
	for _, r := range res {
		if r.Outcome != directory.Succeeded || r.ObjectID == "" {
			t.Fatalf("op %d: %s %v", r.Key, r.Outcome, r.Err)
		}
		if r.Recovered {
			recovered++
		}
	}
	ctr := e.sim.Counters()
	if d := ctr.Duplicates(); len(d) > 0 {
		t.Fatalf("users created twice: %v", d)
	}
	seen := map[string]string{}
	for _, u := range e.sim.Users(e.seeded.TenantID) {
		seen[strings.ToLower(u.UserPrincipalName)] = u.ID
	}
	for _, r := range res {
		upn := strings.ToLower(ops[r.Key].Fields["userPrincipalName"].(string))
		if seen[upn] != r.ObjectID {
			t.Fatalf("op %d: reported id %s, directory has %s", r.Key, r.ObjectID, seen[upn])
		}
	}
	if ctr.Faults == 0 || ctr.Dropped == 0 || recovered == 0 {
		t.Errorf("faults %d, dropped %d, recovered creates %d: the test did not exercise unknown outcomes", ctr.Faults, ctr.Dropped, recovered)
	}
	t.Logf("faults %d, dropped %d, recovered %d, batches %d, steps %d, retried %d", ctr.Faults, ctr.Dropped, recovered, stats.Batches, stats.Steps, stats.Retried)
}

// Invariant: tokens that expire during a long stream are renewed and no 401
// reaches the caller.
func TestExecuteRenewsShortLivedTokens(t *testing.T) {
	e := newEnv(t, graphsim.Options{TokenLifetime: time.Second, Latency: graphsim.Latency{Batch: 50 * time.Millisecond}}, func(j *config.Job, _ *directory.Options) {
		j.MaxConcurrency = 2
	})
	ctx := context.Background()
	var ops []directory.Operation
	for i := 0; i < 1500; i++ {
		ops = append(ops, createOp(int64(i), e.seeded.Domain, i))
	}
	start := time.Now()
	res, _ := run(t, ctx, e.c, ops)
	for _, r := range res {
		if r.Outcome != directory.Succeeded || r.HTTPStatus == 401 {
			t.Fatalf("op %d: %s %d %v", r.Key, r.Outcome, r.HTTPStatus, r.Err)
		}
	}
	ctr := e.sim.Counters()
	if el := time.Since(start); el < 2*time.Second {
		t.Fatalf("stream took %v, shorter than the token lifetime", el)
	}
	if ctr.TokensIssued < 2 {
		t.Fatalf("%d tokens issued over a stream longer than their lifetime", ctr.TokensIssued)
	}
	t.Logf("%d tokens issued, %d unauthenticated calls", ctr.TokensIssued, ctr.Unauthenticated)
}

// Invariant: without admin consent the operator is told which permission
// is missing and where to grant it.
func TestConsentMissingNamesPermissionAndURL(t *testing.T) {
	e := newEnv(t, graphsim.Options{}, nil)
	e.sim.RevokeConsent(e.seeded.TenantID, e.seeded.ClientID)
	ctx := context.Background()
	want := e.srv.AuthorityHost + e.seeded.TenantID + "/adminconsent?client_id=" + e.seeded.ClientID
	err := e.c.Probe(ctx)
	if !errors.Is(err, directory.ErrConsentMissing) {
		t.Fatalf("Probe = %v, want ErrConsentMissing", err)
	}
	var ae *directory.AuthError
	if !errors.As(err, &ae) || ae.ConsentURL != want || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "User.Read.All") {
		t.Fatalf("Probe error %q should name User.Read.All and %s", err, want)
	}
	res, _ := run(t, ctx, e.c, []directory.Operation{createOp(1, e.seeded.Domain, 1)})
	r := res[1]
	if r.Outcome != directory.Failed || !errors.Is(r.Err, directory.ErrConsentMissing) || !strings.Contains(r.Err.Error(), "User.ReadWrite.All") || r.HTTPStatus != 403 {
		t.Fatalf("create without consent = %+v", r)
	}
	var ge *directory.GraphError
	if !errors.As(r.Err, &ge) || ge.Code != "Authorization_RequestDenied" {
		t.Fatalf("GraphError not reachable: %v", r.Err)
	}
	roles, _, _, err := e.c.TokenRoles(ctx)
	if err != nil || len(roles) != 0 {
		t.Fatalf("TokenRoles without consent = %v, %v", roles, err)
	}
}

// Invariant: token-endpoint failures reach the operator as advice keyed
// by the AADSTS code, through the real azidentity client, without the
// secret.
func TestTokenFailuresAreTranslated(t *testing.T) {
	tests := []struct {
		name  string
		setup func(e *env) config.Job
		code  int
		says  string
	}{
		{"wrong_secret", func(e *env) config.Job {
			e.sim.RevokeSecret(e.seeded.ClientID, e.seeded.ClientSecret)
			return e.job
		}, 7000215, "client secret is wrong"},
		{"expired_secret_names_where_to_update_it", func(e *env) config.Job {
			e.sim.RevokeSecret(e.seeded.ClientID, e.seeded.ClientSecret)
			e.sim.AddSecret(e.seeded.ClientID, graphsim.Secret{Value: e.seeded.ClientSecret, Expires: time.Now().Add(-time.Hour)})
			return e.job
		}, 7000222, "client secret expired: create a new one in the app registration (Certificates & secrets) and update file "},
		{"unknown_app", func(e *env) config.Job {
			j := e.job
			j.Auth.ClientID = "11111111-2222-3333-4444-555555555555"
			return j
		}, 700016, "not found in tenant"},
		{"unknown_tenant", func(e *env) config.Job {
			j := e.job
			j.TenantID = "99999999-2222-3333-4444-555555555555"
			return j
		}, 90002, "does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, graphsim.Options{}, nil)
			job := tt.setup(e)
			c, err := directory.New(context.Background(), job, directory.Options{HTTPClient: e.srv.Client()})
			if err != nil {
				t.Fatal(err)
			}
			err = c.Probe(context.Background())
			var ae *directory.AuthError
			if !errors.As(err, &ae) || ae.Code != tt.code || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("Probe = %v, want AADSTS%d saying %q", err, tt.code, tt.says)
			}
			if strings.Contains(err.Error(), e.seeded.ClientSecret) {
				t.Fatal("the error shows the secret")
			}
		})
	}
}

func TestCertificateCredential(t *testing.T) {
	e := newEnv(t, graphsim.Options{}, nil)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "app.crt"), filepath.Join(dir, "app.key")
	os.WriteFile(certFile, e.seeded.CertPEM, 0o600)
	os.WriteFile(keyFile, e.seeded.KeyPEM, 0o600)
	job := e.job
	job.Auth = config.Auth{Method: "certificate", ClientID: e.seeded.ClientID, CertificateFile: certFile, KeyFile: keyFile}
	c, err := directory.New(context.Background(), job, directory.Options{HTTPClient: e.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Probe(context.Background()); err != nil {
		t.Fatalf("Probe with certificate: %v", err)
	}
}

func TestReaders(t *testing.T) {
	e := newEnv(t, graphsim.Options{}, nil)
	ctx := context.Background()
	mgr := e.sim.AddUser(e.seeded.TenantID, graphsim.UserSeed{UserPrincipalName: "boss@" + e.seeded.Domain, DisplayName: "Boss", AccountEnabled: true})
	for i := 0; i < 1200; i++ {
		e.sim.AddUser(e.seeded.TenantID, graphsim.UserSeed{UserPrincipalName: fmt.Sprintf("r%04d@%s", i, e.seeded.Domain), DisplayName: "R", EmployeeID: fmt.Sprintf("E%04d", i), AccountEnabled: i%2 == 0, ManagerID: mgr})
	}
	n := 0
	e.rec.mu.Lock()
	before := len(e.rec.urls)
	e.rec.mu.Unlock()
	if err := e.c.ListUsers(ctx, func(u directory.User) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 1201 {
		t.Fatalf("ListUsers saw %d users, want 1201 (paging)", n)
	}
	// With $expand Graph pages at 100 whatever $top says: the full read asks
	// for what it gets, 13 pages for 1,201 users.
	e.rec.mu.Lock()
	pages := e.rec.queries[before:]
	e.rec.mu.Unlock()
	if len(pages) != 13 || !strings.Contains(pages[0], "%24top=100&") && !strings.Contains(pages[0], "$top=100&") {
		t.Fatalf("ListUsers sent %d requests, first query %q; want 13 pages of $top=100", len(pages), pages[0])
	}
	// UPN or employeeId: default filter clauses, no advanced parameters.
	if found, err := e.c.FindUsers(ctx, "r0003@"+e.seeded.Domain, "E0004"); err != nil || len(found) != 2 {
		t.Fatalf("FindUsers by UPN or employeeId = %+v, %v", found, err)
	}
	found, err := e.c.FindUsers(ctx, "", "E0007")
	if err != nil || len(found) != 1 || found[0].UPN() != "r0007@"+e.seeded.Domain || found[0].AccountEnabled {
		t.Fatalf("FindUsers = %+v, %v", found, err)
	}
	found, err = e.c.FindUsers(ctx, "O'Brien@"+e.seeded.Domain, "")
	if err != nil || len(found) != 0 {
		t.Fatalf("FindUsers with a quote = %+v, %v", found, err)
	}

	resets := 0
	seen := 0
	link, full, err := e.c.Delta(ctx, "", func(context.Context) error { resets++; seen = 0; return nil }, func(directory.User) error { seen++; return nil })
	if err != nil || !full || link == "" || resets != 1 || seen < 1201 {
		t.Fatalf("first delta: full %v link %q resets %d seen %d err %v", full, link, resets, seen, err)
	}
	// One change, one removal.
	res, _ := run(t, ctx, e.c, []directory.Operation{
		{Key: 1, Kind: directory.OpUpdate, ObjectID: found0(t, e, "r0001"), Fields: map[string]any{"department": "X"}},
		{Key: 2, Kind: directory.OpDelete, ObjectID: found0(t, e, "r0002")},
	})
	for _, r := range res {
		if r.Outcome != directory.Succeeded {
			t.Fatalf("%+v", r)
		}
	}
	var changed []directory.User
	link2, full, err := e.c.Delta(ctx, link, func(context.Context) error { t.Fatal("reset on a valid link"); return nil }, func(u directory.User) error { changed = append(changed, u); return nil })
	if err != nil || full || link2 == "" {
		t.Fatalf("incremental delta: full %v err %v", full, err)
	}
	var sawUpdate, sawRemoved bool
	for _, u := range changed {
		sawUpdate = sawUpdate || u.Get(profile.Department) == "X"
		sawRemoved = sawRemoved || (u.Deleted || u.Purged)
	}
	if !sawUpdate || !sawRemoved {
		t.Fatalf("incremental delta missed changes: %+v", changed)
	}
	// An expired token falls back to a full read, announced before any user.
	e.sim.ExpireDeltaTokens(e.seeded.TenantID)
	resets, seen = 0, 0
	_, full, err = e.c.Delta(ctx, link2, func(context.Context) error {
		if seen != 0 {
			t.Error("onReset after users were delivered")
		}
		resets++
		return nil
	}, func(directory.User) error { seen++; return nil })
	if err != nil || !full || resets != 1 || seen < 1200 {
		t.Fatalf("expired delta: full %v resets %d seen %d err %v", full, resets, seen, err)
	}
}

func found0(t *testing.T, e *env, local string) string {
	t.Helper()
	u, ok := e.sim.User(e.seeded.TenantID, local+"@"+e.seeded.Domain)
	if !ok {
		t.Fatalf("no user %s", local)
	}
	return u.ID
}

// Invariant: cancelling stops the stream within a round-trip and still
// answers every operation exactly once.
func TestExecuteCancellation(t *testing.T) {
	e := newEnv(t, graphsim.Options{Latency: graphsim.Latency{Batch: 30 * time.Millisecond}}, func(j *config.Job, _ *directory.Options) {
		j.MaxConcurrency = 2
	})
	ctx, cancel := context.WithCancel(context.Background())
	var ops []directory.Operation
	for i := 0; i < 3000; i++ {
		ops = append(ops, createOp(int64(i), e.seeded.Domain, i))
	}
	// Cancel once the stream is under way (the emulator applied a write),
	// not at a fixed time a loaded machine may not have got anywhere by;
	// then count the batches that reach the emulator afterwards.
	var atCancel int64
	cancelled := make(chan struct{})
	go func() {
		defer close(cancelled)
		for deadline := time.Now().Add(30 * time.Second); e.sim.Counters().Writes == 0 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		cancel()
		atCancel = e.sim.Counters().Batches
	}()
	start := time.Now()
	res, _ := run(t, ctx, e.c, ops)
	el := time.Since(start)
	count := map[directory.Outcome]int{}
	for _, r := range res {
		count[r.Outcome]++
		if r.Outcome == directory.NotStarted && !errors.Is(r.Err, context.Canceled) {
			t.Fatalf("NotStarted without the cancellation: %+v", r)
		}
	}
	created := len(e.sim.Users(e.seeded.TenantID))
	if count[directory.Succeeded] != created {
		t.Errorf("reported %d successes, directory has %d users", count[directory.Succeeded], created)
	}
	if count[directory.NotStarted] == 0 || count[directory.Succeeded] == 0 {
		t.Errorf("outcomes %v: cancellation did not cut the stream", count)
	}
	// No batch leaves after the cancellation: only the two in flight
	// (max_concurrency) may still reach the emulator.
	<-cancelled
	if after := e.sim.Counters().Batches - atCancel; after > 2 {
		t.Errorf("%d batches reached the emulator after the cancellation; want at most the 2 in flight", after)
	}
	// Those are answered within their round-trip, not after the 15s grace
	// Execute gives them (10s leaves a loaded machine room).
	if el > 10*time.Second {
		t.Errorf("Execute returned %v after start", el)
	}
	t.Logf("outcomes %v in %v", count, el.Round(time.Millisecond))
}

// Invariant: a patch or reference write aimed at a user created a moment
// ago succeeds once the user becomes visible (eventual consistency), and a
// 404 on a delete is final.
func TestEventualConsistency404IsRetried(t *testing.T) {
	// The emulator's clock stands still until each write has met the lag
	// (a loaded machine may take longer than the delay between the creates
	// and the writes); then the test moves it past the delay. The retries
	// of a fresh object's 404 wait 0.1-0.2 s, then twice as long each time:
	// over 3 s in all for that.
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	e := newEnv(t, graphsim.Options{ConsistencyDelay: 300 * time.Millisecond, Now: func() time.Time { return time.Unix(0, clock.Load()) }},
		func(_ *config.Job, o *directory.Options) {
			o.MinBackoff, o.MaxBackoff = 200*time.Millisecond, 4*time.Second
		})
	ctx := context.Background()
	res, _ := run(t, ctx, e.c, []directory.Operation{createOp(1, e.seeded.Domain, 1), createOp(2, e.seeded.Domain, 2)})
	a, b := res[1].ObjectID, res[2].ObjectID
	if a == "" || b == "" {
		t.Fatalf("creates: %+v", res)
	}
	lagged := func() bool {
		var patch, manager, member bool
		for k, n := range e.sim.Counters().Steps {
			if n == 0 || !strings.HasSuffix(k, " 404") {
				continue
			}
			patch = patch || strings.HasPrefix(k, "PATCH ")
			manager = manager || strings.Contains(k, "/manager/")
			member = member || strings.Contains(k, "/members/")
		}
		return patch && manager && member
	}
	moved := make(chan struct{})
	go func() {
		defer close(moved)
		for deadline := time.Now().Add(10 * time.Second); !lagged() && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		clock.Add(int64(300 * time.Millisecond))
	}()
	defer func() { <-moved }()
	res, _ = run(t, ctx, e.c, []directory.Operation{
		{Key: 1, Kind: directory.OpUpdate, ObjectID: a, Fields: map[string]any{"jobTitle": "Eng"}},
		{Key: 2, Kind: directory.OpSetManager, ObjectID: a, RelatedID: b},
		{Key: 3, Kind: directory.OpAddMember, ObjectID: b, RelatedID: e.seeded.GroupIDs["Sales"]},
		{Key: 4, Kind: directory.OpDelete, ObjectID: "00000000-0000-0000-0000-000000000404"},
	})
	for k := int64(1); k <= 3; k++ {
		if r := res[k]; r.Outcome != directory.Succeeded || r.Attempts < 2 {
			t.Errorf("op %d: %s after %d attempts: %v (want success after a 404 retry)", k, r.Outcome, r.Attempts, r.Err)
		}
	}
	var ge *directory.GraphError
	if r := res[4]; r.Outcome != directory.Failed || r.Attempts != 1 || !errors.As(r.Err, &ge) || ge.Status != 404 {
		t.Errorf("delete of a missing user: %+v", r)
	}
	if u, _ := e.sim.User(e.seeded.TenantID, a); u.ManagerID != b {
		t.Errorf("manager of %s = %q, want %s", a, u.ManagerID, b)
	}
}

// Invariant: Execute returns as soon as every operation has its answer, even
// when ops closes while nothing is in flight and the context is never
// cancelled (the caller must not need a cancel to get control back).
func TestExecuteReturnsWhenOpsCloseWithNothingInFlight(t *testing.T) {
	e := newEnv(t, graphsim.Options{}, nil)
	for _, n := range []int{0, 1} {
		ops := make(chan directory.Operation, 1)
		if n == 1 {
			// Refused before it is sent: the answer is immediate.
			ops <- directory.Operation{Key: 1, Kind: directory.OpKind("bogus")}
		}
		close(ops)
		results := make(chan directory.Result, 1)
		returned := make(chan struct{})
		go func() {
			e.c.Execute(context.Background(), ops, results)
			close(returned)
		}()
		select {
		case <-returned:
		case <-time.After(5 * time.Second):
			t.Fatalf("%d ops: Execute did not return after ops closed", n)
		}
		if len(results) != n {
			t.Errorf("%d ops: got %d results", n, len(results))
		}
	}
}

// A step Graph never answers (the service unreachable for longer than the
// retries) fails saying Graph was unreachable and what to check, with the
// transport error still inside: an outage must not read like a bad user.
func TestUnreachableGraphFailsWithAdvice(t *testing.T) {
	e := newEnv(t, graphsim.Options{}, func(_ *config.Job, o *directory.Options) { o.MaxAttempts = 3 })
	ctx := context.Background()
	// A first write fetches the token while the emulator is up.
	if res, _ := run(t, ctx, e.c, []directory.Operation{createOp(1, e.seeded.Domain, 1)}); res[1].Outcome != directory.Succeeded {
		t.Fatalf("first create: %s %v", res[1].Outcome, res[1].Err)
	}
	if err := e.srv.Outage(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100 && !e.srv.Down(); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	res, _ := run(t, ctx, e.c, []directory.Operation{createOp(2, e.seeded.Domain, 2)})
	r := res[2]
	if r.Outcome != directory.Failed || r.Err == nil {
		t.Fatalf("create during the outage: %s %v; want failed", r.Outcome, r.Err)
	}
	msg := r.Err.Error()
	for _, want := range []string{"Graph unreachable: 3 attempts", "check the network path", "the next run plans this user again"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	var ne net.Error
	if !errors.As(r.Err, &ne) {
		t.Errorf("error %q does not wrap the transport error", msg)
	}
}

// Invariant: a rehire restores the deleted user through a $batch step that
// Graph accepts: POST …/restore carries Content-Type and body {} (without
// them Graph refuses the whole batch), alongside other writes in the same
// batch.
func TestRestoreDeletedUserThroughBatch(t *testing.T) {
	e := newEnv(t, graphsim.Options{}, nil)
	ctx := context.Background()
	res, _ := run(t, ctx, e.c, []directory.Operation{createOp(1, e.seeded.Domain, 1), createOp(2, e.seeded.Domain, 2)})
	a, b := res[1].ObjectID, res[2].ObjectID
	if a == "" || b == "" {
		t.Fatalf("creates: %+v", res)
	}
	res, _ = run(t, ctx, e.c, []directory.Operation{{Key: 1, Kind: directory.OpDelete, ObjectID: a}})
	if res[1].Outcome != directory.Succeeded {
		t.Fatalf("delete: %+v", res[1])
	}
	res, _ = run(t, ctx, e.c, []directory.Operation{
		{Key: 1, Kind: directory.OpRestore, ObjectID: a},
		{Key: 2, Kind: directory.OpUpdate, ObjectID: b, Fields: map[string]any{"jobTitle": "Lead"}},
	})
	for k, r := range res {
		if r.Outcome != directory.Succeeded || r.Attempts != 1 {
			t.Errorf("op %d %s: %s after %d attempts: %v", k, r.Kind, r.Outcome, r.Attempts, r.Err)
		}
	}
	if u, ok := e.sim.User(e.seeded.TenantID, a); !ok || u.Deleted {
		t.Fatalf("user %s after the restore: %+v", a, u)
	}
	if u, _ := e.sim.User(e.seeded.TenantID, b); u.Properties["jobTitle"] != "Lead" {
		t.Fatalf("update in the same batch: %+v", u.Properties)
	}
	if c := e.sim.Counters(); c.Steps["POST /v1.0/directory/deletedItems/{id}/restore 200"] != 1 {
		t.Fatalf("restore steps: %v", c.Steps)
	}
}

// goneDelta answers an expired delta link the way other Graph resources
// reset a sync (410 Gone), instead of the 400 syncStateNotFound graphsim
// gives for users, so the worker is held to accept both.
type goneDelta struct {
	next http.RoundTripper
	gone *atomic.Int32 // answers turned into 410
}

func (g goneDelta) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := g.next.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusBadRequest || !strings.HasSuffix(req.URL.Path, "/users/delta") {
		return resp, err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if bytes.Contains(b, []byte("syncStateNotFound")) {
		g.gone.Add(1)
		resp.StatusCode, resp.Status = http.StatusGone, "410 Gone"
		b = []byte(`{"error":{"code":"SyncStateNotFound","message":"The sync state is not found."}}`)
		resp.Header.Del("Content-Encoding")
		resp.ContentLength = int64(len(b))
		resp.Header.Set("Content-Length", fmt.Sprint(len(b)))
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp, nil
}

// Invariant: an expired delta link answered 400 syncStateNotFound (users,
// as documented) or 410 Gone (other resources) makes Delta read the whole
// tenant again, announced once before the first user.
func TestDeltaResetOnBothExpiryAnswers(t *testing.T) {
	for _, tc := range []struct {
		name string
		wrap bool
	}{{"400_syncStateNotFound", false}, {"410_gone", true}} {
		t.Run(tc.name, func(t *testing.T) {
			var gone atomic.Int32
			e := newEnv(t, graphsim.Options{}, func(_ *config.Job, o *directory.Options) {
				if tc.wrap {
					o.HTTPClient.Transport = goneDelta{next: o.HTTPClient.Transport, gone: &gone}
				}
			})
			ctx := context.Background()
			for i := 0; i < 3; i++ {
				e.sim.AddUser(e.seeded.TenantID, graphsim.UserSeed{UserPrincipalName: fmt.Sprintf("d%d@%s", i, e.seeded.Domain), DisplayName: "D", AccountEnabled: true})
			}
			link, _, err := e.c.Delta(ctx, "", nil, func(directory.User) error { return nil })
			if err != nil {
				t.Fatal(err)
			}
			e.sim.ExpireDeltaTokens(e.seeded.TenantID)
			resets, seen := 0, 0
			next, full, err := e.c.Delta(ctx, link, func(context.Context) error { resets++; return nil }, func(directory.User) error { seen++; return nil })
			if err != nil || !full || resets != 1 || seen != 3 || next == "" {
				t.Fatalf("expired link: full %v resets %d seen %d next %q err %v", full, resets, seen, next, err)
			}
			// The fallback was driven by the answer under test.
			if c := e.sim.Counters().Requests["GET /v1.0/users/delta 400"]; c != 1 {
				t.Fatalf("graphsim refused %d delta links, want 1", c)
			}
			if want := map[bool]int32{false: 0, true: 1}[tc.wrap]; gone.Load() != want {
				t.Fatalf("%d answers turned into 410, want %d", gone.Load(), want)
			}
		})
	}
}

// Invariant (issue 19): a 404 on an object this client did not just create
// or restore is not replication lag: a group that does not exist, or a user
// deleted meanwhile, fails after one short retry (fresh.go), not after the
// ~20 s of lag retries. (A 404 on a user the client just created is still
// retried through the lag: TestEventualConsistency404IsRetried.)
func TestMissingObject404FailsFast(t *testing.T) {
	e := newEnv(t, graphsim.Options{}, nil)
	ctx := context.Background()
	res, _ := run(t, ctx, e.c, []directory.Operation{createOp(1, e.seeded.Domain, 1), createOp(2, e.seeded.Domain, 2)})
	a, b := res[1].ObjectID, res[2].ObjectID
	if res, _ = run(t, ctx, e.c, []directory.Operation{{Key: 1, Kind: directory.OpDelete, ObjectID: b}}); res[1].Outcome != directory.Succeeded {
		t.Fatalf("delete: %+v", res[1])
	}
	// The next run's client did not create a or b: both are old objects.
	next, err := directory.New(ctx, e.job, directory.Options{HTTPClient: &http.Client{Transport: e.srv.Transport()},
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	res, _ = run(t, ctx, next, []directory.Operation{
		{Key: 1, Kind: directory.OpAddMember, ObjectID: a, RelatedID: "0badc0de-0000-4000-8000-000000000404"},
		{Key: 2, Kind: directory.OpUpdate, ObjectID: b, Fields: map[string]any{"jobTitle": "Gone"}},
		{Key: 3, Kind: directory.OpSetManager, ObjectID: a, RelatedID: b},
	})
	var ge *directory.GraphError
	for k := int64(1); k <= 3; k++ {
		if r := res[k]; r.Outcome != directory.Failed || r.Attempts != 2 || !errors.As(r.Err, &ge) || ge.Status != 404 {
			t.Errorf("op %d on a missing object: %s after %d attempts (%v); want failed with the 404 after 2 attempts", k, r.Outcome, r.Attempts, r.Err)
		}
	}
	// An object the caller wrote minutes ago (an earlier run's create) may
	// still be replicating: its 404 gets the lag retries.
	res, _ = run(t, ctx, next, []directory.Operation{
		{Key: 1, Kind: directory.OpUpdate, ObjectID: b, Fields: map[string]any{"jobTitle": "Gone"}, Recent: true},
	})
	if r := res[1]; r.Outcome != directory.Failed || r.Attempts != 6 {
		t.Errorf("update of a recently written object: %s after %d attempts (%v); want failed after 6 attempts (5 lag retries)", r.Outcome, r.Attempts, r.Err)
	}
}
