package conformance_test

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/graphsim"
)

// markerBase starts the userPrincipalName and mailNickname of every user
// the suite creates; a run adds its own random part (runMarker). The sweep
// of leftovers removes users carrying markerBase, nothing else.
const markerBase = "entraprov-conf-"

// The variables that choose and describe the target.
const (
	envTarget       = "CONFORMANCE_TARGET" // graphsim (default) | tenant
	envTenant       = "ENTRAPROV_CONF_TENANT_ID"
	envClient       = "ENTRAPROV_CONF_CLIENT_ID"
	envSecret       = "ENTRAPROV_CONF_CLIENT_SECRET"
	envCert         = "ENTRAPROV_CONF_CERTIFICATE_FILE"
	envCertPassword = "ENTRAPROV_CONF_CERTIFICATE_PASSWORD"
	envDomain       = "ENTRAPROV_CONF_DOMAIN"
	envGroup        = "ENTRAPROV_CONF_GROUP_ID"
	envCloud        = "ENTRAPROV_CONF_CLOUD"
)

// Credential kinds a target may offer; the suite signs in with each.
const (
	credSecret = "secret"
	credCert   = "certificate"
)

// target is where the script runs: graphsim in-process, or a real tenant.
type target struct {
	name     string // "graphsim" or "tenant"
	tenantID string
	clientID string
	domain   string // verified domain of the test users' UPNs
	groupID  string // group the membership scenarios use
	// jobs are the job configs (endpoints + auth) by credential kind; a kind
	// the target was not given is absent.
	jobs map[string]config.Job
	// transport reaches the token endpoint and Graph (the emulator's CA for
	// graphsim, the system roots for a tenant).
	transport http.RoundTripper
	// patience bounds how long a scenario waits for the directory to show a
	// write (Entra ID is eventually consistent); poll is the interval.
	patience, poll time.Duration
	// minBackoff, maxBackoff tune the executor's retries (fast on graphsim,
	// the production defaults on a tenant).
	minBackoff, maxBackoff time.Duration
	// sim is the emulator (graphsim only).
	sim *graphsim.Sim
	// squeeze, when set, cuts the write quota so that the burst meets
	// throttling, and returns the undo. A real tenant is not squeezed: a
	// small burst there shows the headers of an unthrottled service.
	squeeze func(t *testing.T) func()
	// plantLeftovers, when set, creates users of an "earlier interrupted
	// run" (one live, one soft-deleted) for the sweep to remove.
	plantLeftovers func(t *testing.T)
}

// primaryJob is the job the scenarios write with: the secret if the target
// has one, else the certificate.
func (tg *target) primaryJob() config.Job {
	if j, ok := tg.jobs[credSecret]; ok {
		return j
	}
	return tg.jobs[credCert]
}

// upn is the UPN of one of this run's users.
func (tg *target) upn(run, name string) string { return run + name + "@" + tg.domain }

// newRunMarker is markerBase plus 8 random hex digits and a dash.
func newRunMarker(t *testing.T) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return markerBase + hex.EncodeToString(b) + "-"
}

// loadTarget picks the target from CONFORMANCE_TARGET. "tenant" without
// the variables skips the test with the message naming what to set.
func loadTarget(t *testing.T) *target {
	t.Helper()
	switch v := os.Getenv(envTarget); v {
	case "", "graphsim":
		return graphsimTarget(t)
	case "tenant":
		tg, missing := tenantTarget()
		if len(missing) > 0 {
			t.Skip(skipMessage(missing))
		}
		return tg
	default:
		t.Fatalf("%s=%q: want graphsim (the emulator, the default) or tenant (a real Microsoft Entra tenant)", envTarget, v)
		return nil
	}
}

// skipMessage says exactly what to set to run against a tenant.
func skipMessage(missing []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "SKIPPED: conformance against a real Microsoft Entra tenant is not configured (missing: %s).\nSet:\n",
		strings.Join(missing, ", "))
	for _, v := range [][2]string{
		{envTenant, "directory (tenant) id"},
		{envClient, "application (client) id of the test app registration"},
		{envSecret, "a client secret of that app, and/or"},
		{envCert, "its certificate: PEM holding certificate and private key, or a .pfx/.p12"},
		{envCertPassword, "(optional) the PFX password"},
		{envDomain, "a verified domain of the tenant for the test users' UPNs"},
		{envGroup, "object id of a test group the app may add users to"},
		{envCloud, "(optional) public (default), usgov or china"},
	} {
		fmt.Fprintf(&b, "  %-36s %s\n", v[0], v[1])
	}
	b.WriteString("The app needs the application permissions User.ReadWrite.All, GroupMember.ReadWrite.All and\n" +
		"User.DeleteRestore.All with admin consent (README, \"Verify against your tenant\").\n" +
		"CONFORMANCE_TARGET=graphsim runs the same suite against the in-process emulator instead.")
	return b.String()
}

// tenantTarget reads the tenant's variables; missing lists the unset ones.
// The secret itself is never read here: the job refers to its variable.
func tenantTarget() (*target, []string) {
	var missing []string
	get := func(name string) string {
		v := strings.TrimSpace(os.Getenv(name))
		if v == "" {
			missing = append(missing, name)
		}
		return v
	}
	tenant, client, domain, group := get(envTenant), get(envClient), get(envDomain), get(envGroup)
	hasSecret := os.Getenv(envSecret) != ""
	certFile := strings.TrimSpace(os.Getenv(envCert))
	if !hasSecret && certFile == "" {
		missing = append(missing, envSecret+" or "+envCert)
	}
	if len(missing) > 0 {
		return nil, missing
	}
	base := config.Job{Name: "conformance", TenantID: tenant, Cloud: os.Getenv(envCloud), BatchSize: 20, MaxConcurrency: 2}
	tg := &target{
		name: "tenant", tenantID: tenant, clientID: client, domain: domain, groupID: group,
		jobs:      map[string]config.Job{},
		transport: http.DefaultTransport.(*http.Transport).Clone(),
		patience:  3 * time.Minute, poll: 2 * time.Second,
		minBackoff: time.Second, maxBackoff: 30 * time.Second,
	}
	if hasSecret {
		j := base
		j.Auth = config.Auth{Method: "secret", ClientID: client, Secret: config.SecretRef{Env: envSecret}}
		tg.jobs[credSecret] = j
	}
	if certFile != "" {
		j := base
		j.Auth = config.Auth{Method: "certificate", ClientID: client}
		switch strings.ToLower(filepath.Ext(certFile)) {
		case ".pfx", ".p12":
			j.Auth.PFXFile = certFile
			if os.Getenv(envCertPassword) != "" {
				j.Auth.PFXPassword = config.SecretRef{Env: envCertPassword}
			}
		default:
			j.Auth.CertificateFile = certFile
		}
		tg.jobs[credCert] = j
	}
	return tg, nil
}

// graphsimTarget starts the emulator over TLS with throttling on (time
// ×100, so the squeezed burst refills in seconds) and a replication delay,
// so the script meets eventual consistency as it does on a tenant.
func graphsimTarget(t *testing.T) *target {
	t.Helper()
	sim, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{
		Throttling: true, TimeScale: 100, ConsistencyDelay: 300 * time.Millisecond, Seed: 14,
	})
	// The permission the clean-up's permanent delete needs on a tenant,
	// so the sign-in scenarios check the same roles on both targets.
	sim.Consent(seeded.TenantID, seeded.ClientID, "User.DeleteRestore.All")
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "client-secret")
	certFile := filepath.Join(dir, "app.pem")
	if err := os.WriteFile(secretFile, []byte(seeded.ClientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, append(append([]byte{}, seeded.CertPEM...), seeded.KeyPEM...), 0o600); err != nil {
		t.Fatal(err)
	}
	base := config.Job{Name: "conformance", TenantID: seeded.TenantID, Cloud: "public",
		AuthorityHost: srv.AuthorityHost, GraphURL: srv.GraphURL, BatchSize: 20, MaxConcurrency: 2}
	secretJob, certJob := base, base
	secretJob.Auth = config.Auth{Method: "secret", ClientID: seeded.ClientID, Secret: config.SecretRef{File: secretFile}}
	certJob.Auth = config.Auth{Method: "certificate", ClientID: seeded.ClientID, CertificateFile: certFile}
	tg := &target{
		name: "graphsim", tenantID: seeded.TenantID, clientID: seeded.ClientID, domain: seeded.Domain,
		groupID:   seeded.GroupIDs["Engineering"],
		jobs:      map[string]config.Job{credSecret: secretJob, credCert: certJob},
		transport: srv.Transport(),
		patience:  20 * time.Second, poll: 50 * time.Millisecond,
		minBackoff: 20 * time.Millisecond, maxBackoff: time.Second,
		sim: sim,
	}
	tg.squeeze = func(t *testing.T) func() {
		// A hundredth of the write quota: 30 writes of burst, refilling at
		// 20/s at time ×100. The burst's 60 writes meet 429s.
		if err := sim.SetQuota(0.01, time.Minute); err != nil {
			t.Fatal(err)
		}
		return func() { _ = sim.SetQuota(1, 0) }
	}
	tg.plantLeftovers = func(t *testing.T) {
		old := markerBase + "0ldrun00-"
		sim.AddUser(seeded.TenantID, graphsim.UserSeed{UserPrincipalName: old + "live@" + seeded.Domain,
			DisplayName: "leftover live", MailNickname: old + "live", AccountEnabled: true})
		sim.AddUser(seeded.TenantID, graphsim.UserSeed{UserPrincipalName: old + "gone@" + seeded.Domain,
			DisplayName: "leftover deleted", MailNickname: old + "gone", AccountEnabled: true, Deleted: true})
		// Not the suite's: the sweep must leave it alone.
		sim.AddUser(seeded.TenantID, graphsim.UserSeed{UserPrincipalName: "entraprov-config@" + seeded.Domain,
			DisplayName: "bystander", AccountEnabled: true})
	}
	return tg
}
