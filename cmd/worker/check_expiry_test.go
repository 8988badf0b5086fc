package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/graphsim"
	"github.com/entraprov/entraprov/internal/testdb"
)

func TestExpiryItem(t *testing.T) {
	now := time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		end    time.Time
		status string
		says   string
	}{
		{"a year left", now.AddDate(1, 0, 0), checkOK, "valid until 2027-11-30"},
		{"31 days left", now.Add(31 * 24 * time.Hour), checkOK, "(31 days)"},
		{"30 days left is fine", now.Add(30 * 24 * time.Hour), checkOK, "(30 days)"},
		{"29 days left warns", now.Add(29 * 24 * time.Hour), checkWarn, "expires on 2026-12-29 06:00 UTC, in 29 days"},
		{"one hour left warns", now.Add(time.Hour), checkWarn, "in 1 day"},
		{"expired fails", now.Add(-time.Minute), checkFail, "expired on 2026-11-30 05:59 UTC"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			it := expiryItem("hr", "certificate", tt.end, now, "renew it")
			if it.Status != tt.status || !strings.Contains(it.Detail, tt.says) || it.Name != "credential" || it.Job != "hr" {
				t.Errorf("expiryItem = %+v; want %s saying %q", it, tt.status, tt.says)
			}
			if (tt.status != checkOK) != (it.Advice != "") {
				t.Errorf("advice %q for status %s", it.Advice, it.Status)
			}
		})
	}
}

// Through the binary: the configured certificate file's NotAfter is read
// by check; 29 days left is a warning that does not fail the check, an
// expired certificate fails it.
func TestCheckCertificateExpiry(t *testing.T) {
	tests := []struct {
		name     string
		validity time.Duration
		status   string
		says     string
	}{
		{"29_days_warns", 29 * 24 * time.Hour, checkWarn, "in 29 days"},
		{"expired_fails", -time.Minute, checkFail, "expired on"},
	}
	env := newCheckEnv(t, []string{permUsers})
	cfg, err := os.ReadFile(env.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	certFile := regexp.MustCompile(`certificate_file: (\S+)`).FindSubmatch(cfg)
	keyFile := regexp.MustCompile(`key_file: (\S+)`).FindSubmatch(cfg)
	if certFile == nil || keyFile == nil {
		t.Fatalf("no certificate_file/key_file in\n%s", cfg)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certPEM, keyPEM, err := graphsim.NewCertificate("expiring", tt.validity)
			if err != nil {
				t.Fatal(err)
			}
			// Not the registered certificate: sign-in fails, the expiry is
			// still read from the file.
			writeFile(t, string(certFile[1]), string(certPEM))
			writeFile(t, string(keyFile[1]), string(keyPEM))
			rep, _, out := runCheckJSON(t, "--config", env.cfgPath)
			it := findCheck(rep, "credential")
			if it.Status != tt.status || !strings.Contains(it.Detail, "certificate") || !strings.Contains(it.Detail, tt.says) ||
				!strings.Contains(it.Advice, "upload its public part") {
				t.Fatalf("credential check = %+v; want %s saying %q\n%s", it, tt.status, tt.says, out)
			}
		})
	}
}

// A client-secret job: with Application.Read.All check reads the secret's
// end date from the app registration (graphsim's
// /applications(appId='…')); without it (403) check says it cannot know
// and names the permission that would let it.
func TestCheckSecretExpiry(t *testing.T) {
	const tenant = "4f1c7c3a-9a43-4d5e-8d57-0c2b0d3f1a11"
	const client = "7d0e2a51-2b1f-4c3e-9b8a-5e6f7a8b9c0d"
	dbURL := testdb.NewURL(t)
	t.Setenv("DATABASE_URL", dbURL)
	t.Setenv("ENTRAPROV_DATABASE_URL", "")
	ends := time.Now().Add(29*24*time.Hour + time.Hour).UTC()
	tests := []struct {
		name   string
		roles  []string
		status string
		says   string
	}{
		{"without_Application.Read.All_cannot_know", []string{permUsers}, checkWarn, "cannot know when the client secret expires"},
		{"with_Application.Read.All_29_days_warns", []string{permUsers, directory.PermReadApplication}, checkWarn, "the client secret expires on " + ends.Format("2006-01-02") + ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim := graphsim.New(graphsim.Options{})
			dir := t.TempDir()
			seeded, err := sim.ApplySeed(&graphsim.SeedFile{Tenants: []graphsim.SeedTenant{{
				ID: tenant, Domains: []string{"contoso.example"},
				Apps: []graphsim.SeedApp{{ClientID: client, SecretExpires: &ends, Roles: tt.roles}},
			}}}, dir)
			if err != nil {
				t.Fatal(err)
			}
			secret := seeded.Tenants[0].Apps[0].ClientSecret
			srv := graphsim.StartTestTLS(t, sim)
			secretFile := writeFile(t, filepath.Join(dir, "secret"), secret+"\n")
			if err := os.Chmod(secretFile, 0o600); err != nil {
				t.Fatal(err)
			}
			job := fmt.Sprintf(`  - name: staff
    tenant_id: %s
    authority_host: %s
    graph_url: %s
    ca_file: %s
    auth: {method: secret, client_id: %s, client_secret: {file: %s}}
    schedule: "0 2 * * *"
    allowed_domains: [contoso.example]
`, tenant, srv.AuthorityHost, srv.GraphURL, srv.CAFile, client, secretFile)
			path := writeConfig(t, dbURL, job, metricsOff)
			rep, _, out := runCheckJSON(t, "--config", path)
			it := findCheck(rep, "credential")
			if it.Status != tt.status || !strings.Contains(it.Detail, tt.says) {
				t.Fatalf("credential check = %+v; want %s saying %q\n%s", it, tt.status, tt.says, out)
			}
			if tt.status == checkWarn && len(tt.roles) == 1 && (!strings.Contains(it.Advice, directory.PermReadApplication) || it.ConsentURL == "") {
				t.Errorf("advice %q / consent URL %q should name %s and the consent page", it.Advice, it.ConsentURL, directory.PermReadApplication)
			}
			if len(tt.roles) == 2 && !strings.Contains(it.Detail, "in 30 days") {
				t.Errorf("detail %q: want the started days counted (29 days and an hour: 30)", it.Detail)
			}
			if strings.Contains(out, secret) {
				t.Fatal("check printed the client secret")
			}
		})
	}
}

// The advice for an unknown secret expiry points a tenant of a template at
// the tenant where the app is registered, never at a customer's consent
// page (the registration is not in a customer's tenant); a job of the file
// keeps its own tenant's page.
func TestSecretExpiryUnknownAdvice(t *testing.T) {
	ae := &directory.AuthError{Permission: directory.PermReadApplication,
		ConsentURL: "https://login.microsoftonline.com/cust/adminconsent?client_id=c1"}
	for _, tc := range []struct {
		name    string
		job     config.Job
		consent string
		advice  string
	}{
		{"job of the file", config.Job{Name: "hr"}, ae.ConsentURL, "(and admin consent) to have check"},
		{"tenant of a template", config.Job{Name: "isv@fabrikam", Template: "isv"}, "", "in the tenant where the app is registered"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			it := secretExpiryUnknown(tc.job, ae)
			if it.ConsentURL != tc.consent || !strings.Contains(it.Advice, tc.advice) || it.Status != checkWarn {
				t.Errorf("got %+v; want consent_url %q, advice with %q", it, tc.consent, tc.advice)
			}
		})
	}
}

// check's advice names a key the operator can find in the file: a
// template's tenant has none of its own, so it names the template's.
func TestJobKey(t *testing.T) {
	for _, tc := range []struct {
		job  config.Job
		want string
	}{
		{config.Job{Name: "hr"}, "jobs[hr].allowed_groups"},
		{config.Job{Name: "isv@contoso", Template: "isv"}, "jobs[isv].allowed_groups (the template's, for every tenant of it)"},
	} {
		if got := jobKey(tc.job, "allowed_groups"); got != tc.want {
			t.Errorf("jobKey(%s) = %q; want %q", tc.job.Name, got, tc.want)
		}
	}
}
