package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// secretFileName is the file, next to the written config, holding the
// app's client secret: the config refers to it, never holds it.
const secretFileName = "graphsim-client-secret"

// writeWorkerConfig writes a worker configuration for the first tenant
// and app of l to path: the same fields scripts/demo.sh fills from the
// JSON line, with the client secret in a 0600 file beside it. The
// database URL is left to $DATABASE_URL (or ENTRAPROV_DATABASE_URL),
// which the worker reads over database.url.
func writeWorkerConfig(path string, l line) error {
	if len(l.Tenants) == 0 || len(l.Tenants[0].Apps) == 0 {
		return fmt.Errorf("--write-config: the seed has no tenant with an app to sign in as")
	}
	t, app := l.Tenants[0], l.Tenants[0].Apps[0]
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("--write-config: %w", err)
	}
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) } // JSON strings are YAML strings
	var auth string
	switch {
	case app.ClientSecret != "":
		secret := filepath.Join(dir, secretFileName)
		abs, err := filepath.Abs(secret)
		if err != nil {
			return fmt.Errorf("--write-config: %w", err)
		}
		// Remove first: WriteFile keeps an existing file's mode.
		_ = os.Remove(secret)
		if err := os.WriteFile(secret, []byte(app.ClientSecret), 0o600); err != nil {
			return fmt.Errorf("--write-config: client secret: %w", err)
		}
		auth = fmt.Sprintf("      method: secret\n      client_id: %s\n      client_secret: {file: %s}\n", q(app.ClientID), q(abs))
	case app.CertificateFile != "":
		auth = fmt.Sprintf("      method: certificate\n      client_id: %s\n      certificate_file: %s\n", q(app.ClientID), q(app.CertificateFile))
		if app.KeyFile != "" {
			auth += fmt.Sprintf("      key_file: %s\n", q(app.KeyFile))
		}
	default:
		return fmt.Errorf("--write-config: app %s has neither a client secret nor a certificate", app.ClientID)
	}
	domains := make([]string, len(t.Domains))
	for i, d := range t.Domains {
		domains[i] = q(d)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `# Written by graphsim --write-config for the emulator it started: valid
# while that graphsim runs (a new start has a new CA and listen address;
# run it again with the same flags to rewrite this file).
# The database comes from $DATABASE_URL (or ENTRAPROV_DATABASE_URL).
log:
  format: text
jobs:
  - name: graphsim
    tenant_id: %s
    authority_host: %s
    graph_url: %s
    ca_file: %s
    auth:
%s    source: entraprov.desired_users
    allowed_domains: [%s]
    schedule: "@every 5m"
    leaver:
      action: disable
`, q(t.ID), q(l.AuthorityHost), q(l.GraphURL), q(l.CAFile), auth, strings.Join(domains, ", "))
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("--write-config: %w", err)
	}
	return nil
}
