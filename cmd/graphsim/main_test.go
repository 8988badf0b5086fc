package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
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
