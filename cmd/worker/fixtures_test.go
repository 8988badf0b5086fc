package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/entraprov/entraprov/internal/graphsim"
	"github.com/entraprov/entraprov/internal/store"
	"github.com/entraprov/entraprov/internal/testdb"
)

// The YAML the tests drive the binary with, built in one place.

// simJobYAML is one job section whose certificate app signs in at a
// graphsim server; extra lines (already indented as job keys) follow. With
// TenantsFrom it is a template (tenants_from instead of tenant_id; no
// allowed_domains when Domain is empty: the rows give them).
type simJobYAML struct {
	Name, Tenant, Authority, GraphURL, CAFile string
	ClientID, CertFile, KeyFile               string
	Schedule, Domain                          string
	TenantsFrom                               string
	Extra                                     []string
}

func (j simJobYAML) String() string {
	tenant := "tenant_id: " + j.Tenant
	if j.TenantsFrom != "" {
		tenant = "tenants_from: " + j.TenantsFrom
	}
	s := fmt.Sprintf(`  - name: %s
    %s
    authority_host: %s
    graph_url: %s
    ca_file: %s
    auth:
      method: certificate
      client_id: %s
      certificate_file: %s
      key_file: %s
    schedule: %q
`, j.Name, tenant, j.Authority, j.GraphURL, j.CAFile, j.ClientID, j.CertFile, j.KeyFile, j.Schedule)
	for _, l := range j.Extra {
		s += "    " + l + "\n"
	}
	if j.Domain == "" {
		return s
	}
	return s + fmt.Sprintf("    allowed_domains: [%s]\n", j.Domain)
}

// startSeededSim starts graphsim over TLS with seed (certificates under a
// temporary directory), stopped when the test ends.
func startSeededSim(t testing.TB, seed *graphsim.SeedFile) (*graphsim.Sim, *graphsim.Server, graphsim.SeedResult) {
	t.Helper()
	sim := graphsim.New(graphsim.Options{})
	seeded, err := sim.ApplySeed(seed, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return sim, graphsim.StartTestTLS(t, sim), seeded
}

// hrWorker starts what most tests of the commands drive: a fresh database
// holding n desired users (seedDesired), graphsim with job hr's tenant, and
// a configuration file naming both (job hr at 02:00, then extra job
// lines). worker runs the command with that configuration and database
// (--database-url: DATABASE_URL, the test server's base database, would
// override the file).
func hrWorker(t *testing.T, n int, extra string) (st *store.Store, sim *graphsim.Sim, worker func(args ...string) (string, string, error)) {
	t.Helper()
	dbURL := testdb.NewURL(t)
	st = openStore(t, dbURL)
	seedDesired(t, st, n)
	jobYAML, sim := simJob(t, graphsim.Options{}, "hr", "0 2 * * *")
	cfg := writeConfig(t, dbURL, jobYAML+extra)
	return st, sim, func(args ...string) (string, string, error) {
		return runWorker(t, append(args, "--config", cfg, "--database-url", dbURL)...)
	}
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
