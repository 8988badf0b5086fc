package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// The YAML the tests drive the binary with, built in one place.

// simJobYAML is one job section whose certificate app signs in at a
// graphsim server; extra lines (already indented as job keys) follow.
type simJobYAML struct {
	Name, Tenant, Authority, GraphURL, CAFile string
	ClientID, CertFile, KeyFile               string
	Schedule, Domain                          string
	Extra                                     []string
}

func (j simJobYAML) String() string {
	s := fmt.Sprintf(`  - name: %s
    tenant_id: %s
    authority_host: %s
    graph_url: %s
    ca_file: %s
    auth:
      method: certificate
      client_id: %s
      certificate_file: %s
      key_file: %s
    schedule: %q
`, j.Name, j.Tenant, j.Authority, j.GraphURL, j.CAFile, j.ClientID, j.CertFile, j.KeyFile, j.Schedule)
	for _, l := range j.Extra {
		s += "    " + l + "\n"
	}
	return s + fmt.Sprintf("    allowed_domains: [%s]\n", j.Domain)
}

// metricsOff is the section that keeps `worker run` from binding the
// default metrics port (tests run side by side).
const metricsOff = "metrics:\n  listen: \"\"\n"

// configYAML is a configuration file's text: the database, extra top-level
// sections, JSON logs, then the jobs (each ending with its own newline).
func configYAML(dbURL, jobs string, sections ...string) string {
	return fmt.Sprintf("database:\n  url: %q\n%slog:\n  format: json\njobs:\n%s", dbURL, strings.Join(sections, ""), jobs)
}

// writeConfig writes configYAML to a fresh temporary file and returns its path.
func writeConfig(t testing.TB, dbURL, jobs string, sections ...string) string {
	t.Helper()
	return writeFile(t, filepath.Join(t.TempDir(), "worker.yaml"), configYAML(dbURL, jobs, sections...))
}
