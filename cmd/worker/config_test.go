package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/config"
)

// runWorker runs the worker CLI in-process and returns stdout, stderr and
// the error the command returned (what main would print and map to an exit
// code).
func runWorker(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	globals = globalFlags{}
	root := newRootCommand()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	// No terminal on stdin: commands that would ask for confirmation
	// want --yes instead.
	root.SetIn(strings.NewReader(""))
	err = execute(context.Background(), root)
	if err != nil {
		errOut.WriteString("worker: " + err.Error() + "\n") // as exitCode prints it
	}
	return out.String(), errOut.String(), err
}

func exitCodeOf(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if err != nil {
		return exitFail
	}
	return exitOK
}

func writeFile(t testing.TB, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// The invariant: no secret value reaches the output of `config validate`,
// whether the configuration is valid (secrets are read to check them) or
// not (a literal secret is refused without being echoed).
func TestConfigValidate_neverPrintsSecrets(t *testing.T) {
	dir := t.TempDir()
	secrets := map[string]string{
		"file":       "file-Secret-Value-1",
		"env":        "env-Secret-Value-2",
		"credential": "cred-Secret-Value-3",
		"dbpassword": "db-Secret-Value-4",
		"url":        "url-Secret-Value-5",
	}
	secretFile := writeFile(t, filepath.Join(dir, "graph-secret"), secrets["file"]+"\n")
	credDir := filepath.Join(dir, "creds")
	if err := os.Mkdir(credDir, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(credDir, "graph-secret"), secrets["credential"])
	t.Setenv("CREDENTIALS_DIRECTORY", credDir)
	t.Setenv("TEST_GRAPH_SECRET", secrets["env"])
	t.Setenv("TEST_DB_PASSWORD", secrets["dbpassword"])
	t.Setenv("ENTRAPROV_DATABASE_URL", "postgres://app:"+secrets["url"]+"@db.example.com/entraprov")
	t.Setenv("ENTRAPROV_CONFIG", "")

	job := func(name, tenant, secretRef string) string {
		return `  - name: ` + name + `
    tenant_id: ` + tenant + `
    auth:
      method: secret
      client_id: 11111111-2222-3333-4444-555555555555
      client_secret: ` + secretRef + `
    schedule: "CRON_TZ=Europe/Paris 0 2 * * *"
    allowed_domains: [contoso.com]
`
	}
	cfg := writeFile(t, filepath.Join(dir, "ok.yaml"), `database:
  password: {env: TEST_DB_PASSWORD}
jobs:
`+job("from-file", "a.onmicrosoft.com", "{file: "+secretFile+"}")+
		job("from-env", "b.onmicrosoft.com", "{env: TEST_GRAPH_SECRET}")+
		job("from-credential", "c.onmicrosoft.com", "{credential: graph-secret}"))

	stdout, stderr, err := runWorker(t, "config", "validate", "--config", cfg)
	if err != nil {
		t.Fatalf("config validate: %v\n%s", err, stderr)
	}
	for _, want := range []string{"config OK: 3 jobs", "from-credential", "secret", "CRON_TZ=Europe/Paris 0 2 * * *",
		"env TEST_GRAPH_SECRET (readable)", "credential graph-secret (readable)", "xxxxx@db.example.com", "from ENTRAPROV_DATABASE_URL"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	for what, s := range secrets {
		if strings.Contains(stdout+stderr, s) {
			t.Errorf("the %s secret appears in the output:\n%s%s", what, stdout, stderr)
		}
	}

	// Invalid: a literal secret, a password in the file's URL, a secret in
	// a mistyped field. Exit 78, every problem listed, no value echoed.
	bad := writeFile(t, filepath.Join(dir, "bad.yaml"), `database:
  url: postgres://app:`+secrets["url"]+`@db/x
jobs:
`+job("literal", "a.onmicrosoft.com", `"`+secrets["env"]+`"`)+`    batch_size: `+secrets["file"]+"\n")
	stdout, stderr, err = runWorker(t, "config", "validate", "--config", bad)
	if code := exitCodeOf(err); code != exitConfig {
		t.Fatalf("exit code %d, want %d (err %v)", code, exitConfig, err)
	}
	for _, want := range []string{"database.url: contains a password", "jobs[0].auth.client_secret: a literal secret is not allowed", "jobs[0].batch_size: want an integer"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	for what, s := range secrets {
		if strings.Contains(stdout+stderr, s) {
			t.Errorf("the %s secret appears in the output of a bad config:\n%s%s", what, stdout, stderr)
		}
	}
}

func TestConfigValidate_exitCodes(t *testing.T) {
	t.Setenv("ENTRAPROV_CONFIG", "")
	dir := t.TempDir()
	bad := writeFile(t, filepath.Join(dir, "bad.yaml"), "jobs:\n  - name: Bad Name\n    schedule: \"0 2 * *\"\n")
	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"no_config_named", []string{"config", "validate"}, exitConfig, "pass --config FILE or set ENTRAPROV_CONFIG"},
		{"missing_file", []string{"config", "validate", "--config", filepath.Join(dir, "nope.yaml")}, exitConfig, "no such file"},
		{"every_problem_listed", []string{"config", "validate", "--config", bad}, exitConfig, `jobs[0].schedule: "0 2 * *" has 4 fields`},
		{"unknown_flag_is_usage", []string{"config", "validate", "--bogus"}, exitUsage, "unknown flag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, err := runWorker(t, tt.args...)
			if code := exitCodeOf(err); code != tt.code {
				t.Errorf("exit code %d, want %d (%v)", code, tt.code, err)
			}
			if !strings.Contains(stderr, tt.msg) {
				t.Errorf("stderr lacks %q:\n%s", tt.msg, stderr)
			}
		})
	}
}

func TestDatabaseURL_precedence(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("ENTRAPROV_CONFIG", "")
	t.Setenv("ENTRAPROV_DATABASE_URL", "")
	t.Setenv("DATABASE_URL", "postgres://env@db/x")
	t.Setenv("TEST_DB_PW", "pw")
	cfg := writeFile(t, filepath.Join(dir, "c.yaml"), `database: {url: "postgres://file@db/x", password: {env: TEST_DB_PW}}
jobs:
  - name: a
    tenant_id: a.onmicrosoft.com
    auth: {method: managed_identity}
    schedule: "@daily"
    allowed_domains: [a.com]
`)
	check := func(name string, want string, args ...string) {
		t.Helper()
		globals = globalFlags{}
		root := newRootCommand()
		root.SetArgs(append(args, "version"))
		root.SetOut(io.Discard)
		if err := root.Execute(); err != nil {
			t.Fatal(err)
		}
		got, err := databaseURL(root)
		if err != nil || got != want {
			t.Errorf("%s: databaseURL = %q, %v; want %q", name, got, err, want)
		}
	}
	check("flag_wins", "postgres://flag@db/x", "--database-url", "postgres://flag@db/x", "--config", cfg)
	check("env_beats_file_password_added", "postgres://env:pw@db/x", "--config", cfg)
	check("env_without_config", "postgres://env@db/x")
	t.Setenv("DATABASE_URL", "")
	check("file_with_password_reference", "postgres://file:pw@db/x", "--config", cfg)
}

func TestConfigShow_printsEffectiveConfigWithoutSecrets(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("ENTRAPROV_CONFIG", "")
	t.Setenv("DATABASE_URL", "")
	t.Setenv("ENTRAPROV_DATABASE_URL", "postgres://app:show-Secret-1@db/x")
	t.Setenv("TEST_GRAPH_SECRET", "show-Secret-2")
	cfg := writeFile(t, filepath.Join(dir, "c.yaml"), `jobs:
  - name: a
    tenant_id: a.onmicrosoft.com
    auth: {method: secret, client_id: 11111111-2222-3333-4444-555555555555, client_secret: {env: TEST_GRAPH_SECRET}}
    schedule: "@daily"
    allowed_domains: [a.com]
`)
	stdout, stderr, err := runWorker(t, "config", "show", "--config", cfg)
	if err != nil {
		t.Fatalf("config show: %v\n%s", err, stderr)
	}
	for _, want := range []string{"batch_size: 20", "max_percent: 10", "adopt_by: none", "env: TEST_GRAPH_SECRET", "url: postgres://app:xxxxx@db/x"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout+stderr, "show-Secret") {
		t.Errorf("a secret appears in config show:\n%s", stdout)
	}
}

// The NEXT RUN column says how long until the run in words an operator
// reads at a glance, also when it is less than a minute away (an @every
// schedule, a run due now), where rounding to minutes left nothing.
func TestUntilNextRun(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{0, "now"},
		{400 * time.Millisecond, "now"},
		{7*time.Second + 300*time.Millisecond, "7s"},
		{29 * time.Second, "29s"},
		{59*time.Second + 600*time.Millisecond, "59s"},
		{90 * time.Second, "2m"},
		{3*time.Hour + 20*time.Minute + 10*time.Second, "3h20m"},
		{24 * time.Hour, "24h0m"},
	} {
		if got := untilNextRun(tc.d); got != tc.want {
			t.Errorf("untilNextRun(%v) = %q; want %q", tc.d, got, tc.want)
		}
	}
}

// An ISV's operator knows the template's name from the file; asking for it
// as a job is a usage error that says what the jobs are called, and any
// other unknown name keeps the plain message.
func TestFindJobTemplateName(t *testing.T) {
	cfg := &config.Config{Jobs: []config.Job{
		{Name: "isv@contoso", Template: "isv"}, {Name: "isv@fabrikam", Template: "isv"}, {Name: "hr"},
	}}
	for _, tc := range []struct{ name, want string }{
		{"isv", `"isv" is a template, not a job: name one of its tenants' jobs, isv@<name> (jobs: isv@contoso, isv@fabrikam, hr)`},
		{"nosuch", `no job "nosuch" in the configuration (jobs: isv@contoso, isv@fabrikam, hr)`},
	} {
		_, err := findJob(cfg, tc.name)
		if err == nil || err.Error() != tc.want || exitCodeOf(err) != exitUsage {
			t.Errorf("findJob(%q) = %v (exit %d); want %q (exit %d)", tc.name, err, exitCodeOf(err), tc.want, exitUsage)
		}
	}
}
