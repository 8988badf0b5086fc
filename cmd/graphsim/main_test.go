package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/config"
)

// TestRunPrintsOneLineAndServes: the JSON line has everything a client
// needs (URLs, CA file, credentials, certificate files), a token can be
// obtained with it, and cancelling stops the server cleanly.
func TestRunPrintsOneLineAndServes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	caFile := t.TempDir() + "/ca.pem"
	go func() {
		done <- run(ctx, []string{"--time-scale", "10", "--ca-file", caFile, "--latency", "none"}, pw, io.Discard)
	}()
	lineText, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, pr)
	var l line
	if err := json.Unmarshal([]byte(lineText), &l); err != nil {
		t.Fatalf("not one JSON line: %q: %v", lineText, err)
	}
	if !strings.HasSuffix(l.GraphURL, "/v1.0") || !strings.HasSuffix(l.AuthorityHost, "/") || l.CAFile != caFile || len(l.Tenants) != 1 {
		t.Fatalf("line %+v", l)
	}
	app := l.Tenants[0].Apps[0]
	for _, f := range []string{app.CertificateFile, app.KeyFile} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("certificate file: %v", err)
		}
	}
	pem, _ := os.ReadFile(l.CAFile)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("CA file has no certificate")
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := hc.PostForm(l.AuthorityHost+l.Tenants[0].ID+"/oauth2/v2.0/token", url.Values{
		"grant_type": {"client_credentials"}, "client_id": {app.ClientID}, "client_secret": {app.ClientSecret},
		"scope": {"https://graph.microsoft.com/.default"},
	})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("token: %d", resp.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("did not stop")
	}
}

func TestRunRefusesRemoteListen(t *testing.T) {
	err := run(context.Background(), []string{"--listen", "0.0.0.0:0"}, io.Discard, io.Discard)
	var ue usageError
	if err == nil || !errorsAs(err, &ue) {
		t.Fatalf("want usage error, got %v", err)
	}
}

func TestRunSeedFile(t *testing.T) {
	f := t.TempDir() + "/seed.json"
	os.WriteFile(f, []byte(`{"tenants":[{"id":"11111111-1111-1111-1111-111111111111","domains":["fabrikam.example"],
	  "users":[{"user_principal_name":"old@fabrikam.example","display_name":"Old","account_enabled":true}],
	  "apps":[{"client_id":"33333333-3333-3333-3333-333333333333","client_secret":"given-secret","roles":["User.Read.All"]}]}]}`), 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"--seed", f}, pw, io.Discard) }()
	lineText, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, pr)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var l line
	_ = json.Unmarshal([]byte(lineText), &l)
	if len(l.Tenants) != 1 || l.Tenants[0].Apps[0].ClientSecret != "given-secret" || l.Tenants[0].Apps[0].CertificateFile != "" {
		t.Fatalf("%+v", l)
	}
	if err := run(context.Background(), []string{"--seed", "/nonexistent.json"}, io.Discard, io.Discard); err == nil {
		t.Fatal("missing seed file accepted")
	}
}

func errorsAs(err error, target *usageError) bool {
	ue, ok := err.(usageError)
	if ok {
		*target = ue
	}
	return ok
}

// TestHelpExitsCleanly: --help is a request, not a usage error (main
// exits 0 on flag.ErrHelp) and the usage names --write-config.
func TestHelpExitsCleanly(t *testing.T) {
	var usage strings.Builder
	err := run(context.Background(), []string{"--help"}, io.Discard, &usage)
	var ue usageError
	if !errors.Is(err, flag.ErrHelp) || errorsAs(err, &ue) {
		t.Fatalf("--help: %v; want flag.ErrHelp, not a usage error", err)
	}
	if !strings.Contains(usage.String(), "-write-config") {
		t.Fatalf("usage lacks --write-config:\n%s", usage.String())
	}
}

// TestWriteConfigIsAValidWorkerConfig: with a --cert-dir that does not
// exist yet (created) and --write-config in a directory that does not
// exist either, graphsim writes a config that the worker's own loader
// (config.Load: strict decode + validate) accepts as is, pointing at this
// emulator's tenant, app and CA, with the client secret only in a 0600
// file it refers to, which the worker's secret reader reads back.
func TestWriteConfigIsAValidWorkerConfig(t *testing.T) {
	base := t.TempDir()
	cfgPath := filepath.Join(base, "conf", "config.yaml")
	certDir := filepath.Join(base, "no", "such", "certs")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--cert-dir", certDir, "--write-config", cfgPath, "--latency", "none"}, pw, io.Discard)
	}()
	lineText, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(<-done)
	}
	go io.Copy(io.Discard, pr)
	var l line
	if err := json.Unmarshal([]byte(lineText), &l); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(certDir); err != nil || !fi.IsDir() {
		t.Fatalf("--cert-dir not created: %v", err)
	}
	app := l.Tenants[0].Apps[0]

	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatalf("written config does not load:\n%v", err)
	}
	if len(cfg.Jobs) != 1 {
		t.Fatalf("jobs %+v", cfg.Jobs)
	}
	j := cfg.Jobs[0]
	if j.TenantID != l.Tenants[0].ID || j.AuthorityHost != l.AuthorityHost || j.GraphURL != l.GraphURL ||
		j.CAFile != filepath.Join(base, "conf", "graphsim-ca.pem") || j.Auth.ClientID != app.ClientID ||
		j.Auth.Method != "secret" || j.Schedule == "" || len(j.AllowedDomains) == 0 || j.AllowedDomains[0] != l.Tenants[0].Domains[0] {
		t.Fatalf("job %+v does not match line %s", j, lineText)
	}
	if pem, err := os.ReadFile(j.CAFile); err != nil || !x509.NewCertPool().AppendCertsFromPEM(pem) {
		t.Fatalf("ca_file %s: %v", j.CAFile, err)
	}
	text, _ := os.ReadFile(cfgPath)
	if strings.Contains(string(text), app.ClientSecret) {
		t.Fatal("the config holds the client secret itself")
	}
	fi, err := os.Stat(j.Auth.Secret.File)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret file %s: %v mode %v; want 0600", j.Auth.Secret.File, err, fi.Mode())
	}
	secret, err := j.Auth.Secret.Read(context.Background())
	if err != nil || secret != app.ClientSecret {
		t.Fatalf("secret file does not hold the app's secret (err %v)", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
