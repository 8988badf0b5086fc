package directory_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/graphsim"
)

// TestTransportsShareConnectionsNotCredentials builds a client per "run"
// for three jobs (two tenants of one app, and a second app in the second
// tenant) through one Transports, as the worker's runs do, trusting
// graphsim through the jobs' ca_file. The clients share one connection;
// each signs in with its own credential and gets its own tenant's and
// app's token.
func TestTransportsShareConnectionsNotCredentials(t *testing.T) {
	sim := graphsim.New(graphsim.Options{})
	seeded := sim.SeedDefault()
	srv, err := graphsim.StartTLS(sim, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	const tenant2, app2, secret2 = "00000000-0000-4000-8000-000000000002", "00000000-0000-4000-8000-0000000000a2", "second-app-secret"
	sim.AddTenant(tenant2, "fabrikam.example")
	sim.Consent(tenant2, seeded.ClientID, "User.ReadWrite.All")
	sim.AddApp(graphsim.App{ClientID: app2, HomeTenant: tenant2, Secrets: []graphsim.Secret{{Value: secret2}}})
	sim.Consent(tenant2, app2, "User.Read.All")

	dir := t.TempDir()
	job := func(tenant, client, secret string) config.Job {
		f := filepath.Join(dir, client+"-secret")
		if err := os.WriteFile(f, []byte(secret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return config.Job{Name: "j", TenantID: tenant, Cloud: "public",
			AuthorityHost: srv.AuthorityHost, GraphURL: srv.GraphURL, CAFile: srv.CAFile,
			Auth: config.Auth{Method: "secret", ClientID: client, Secret: config.SecretRef{File: f}}}
	}
	jobs := []config.Job{
		job(seeded.TenantID, seeded.ClientID, seeded.ClientSecret),
		job(tenant2, seeded.ClientID, seeded.ClientSecret),
		job(tenant2, app2, secret2),
	}
	ts := directory.NewTransports()
	ctx := context.Background()
	const runs = 12
	for i := range runs {
		j := jobs[i%len(jobs)]
		c, err := directory.New(ctx, j, directory.Options{Transports: ts})
		if err != nil {
			t.Fatalf("run %d: New: %v", i, err)
		}
		tokens := sim.Counters().TokensIssued
		if err := c.Probe(ctx); err != nil {
			t.Fatalf("run %d: Probe: %v", i, err)
		}
		// The job ran before with a token still valid: a token cache
		// shared between clients would have answered.
		if got := sim.Counters().TokensIssued - tokens; got != 1 {
			t.Errorf("run %d: Probe made %d token requests; want 1 (the client's own sign-in)", i, got)
		}
		_, tid, appID, err := c.TokenRoles(ctx)
		if err != nil {
			t.Fatalf("run %d: TokenRoles: %v", i, err)
		}
		if !strings.EqualFold(tid, j.TenantID) || !strings.EqualFold(appID, j.Auth.ClientID) {
			t.Errorf("run %d: token of tenant %s app %s; want the job's, tenant %s app %s", i, tid, appID, j.TenantID, j.Auth.ClientID)
		}
	}
	if got := srv.Conns().Accepted; got != 1 {
		t.Errorf("%d runs opened %d connections; want 1 (the shared transport's)", runs, got)
	}
	ts.CloseIdleConnections()
	waitOpen(t, srv, 0)

	// A ca_file replaced on disk (a renewed CA bundle) takes effect at the
	// next client: a new transport, the old one's idle connection closed.
	// The same contents again reuse it.
	caCopy := filepath.Join(dir, "ca.pem")
	writeCA := func(extra string) {
		if err := os.WriteFile(caCopy, append(append([]byte(nil), srv.CAPEM...), extra...), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	probe := func() {
		t.Helper()
		j := jobs[0]
		j.CAFile = caCopy
		c, err := directory.New(ctx, j, directory.Options{Transports: ts})
		if err == nil {
			err = c.Probe(ctx)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	writeCA("")
	probe()
	probe()
	if got := srv.Conns().Accepted; got != 2 {
		t.Errorf("accepted %d connections; want 2 (one more for the second ca_file)", got)
	}
	writeCA("\n# renewed\n")
	probe()
	probe()
	if got := srv.Conns().Accepted; got != 3 {
		t.Errorf("accepted %d connections; want 3 (one more for the replaced ca_file)", got)
	}
	waitOpen(t, srv, 1)

	// A ca_file that holds no certificate fails the client, naming the key.
	writeCA("")
	if err := os.WriteFile(caCopy, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := jobs[0]
	bad.CAFile = caCopy
	if _, err := directory.New(ctx, bad, directory.Options{Transports: ts}); err == nil || !strings.Contains(err.Error(), "ca_file") {
		t.Errorf("New with a ca_file holding no certificate: %v; want an error naming ca_file", err)
	}
}

// waitOpen waits (bounded) until graphsim counts want connections open:
// a connection closed by the client is seen closed by the server a moment
// later.
func waitOpen(t *testing.T, srv *graphsim.Server, want int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for srv.Conns().Open != want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := srv.Conns().Open; got != want {
		t.Errorf("%d connections open; want %d", got, want)
	}
}
