package main

// Secrets stay where they belong, seen from the outside: what `worker
// config validate`, `config show`, `check`, `sync` and `run` print when the
// configuration points credentials at a foreign host, holds a database
// password, has a secret in the wrong field, or names secret files other
// accounts can read.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/testdb"
)

// secretsJob is a valid job (client secret from $TEST_GRAPH_SECRET) with
// each "key: value" of extra added or replacing the line with that key.
// Its endpoints refuse connections at once (check stays offline and fast).
func secretsJob(extra ...string) string {
	lines := []string{
		"name: staff",
		"tenant_id: 4f1c7c3a-9a43-4d5e-8d57-0c2b0d3f1a11",
		"authority_host: https://127.0.0.1:1/",
		"graph_url: https://127.0.0.1:1/v1.0",
		"auth: {method: secret, client_id: 7d0e2a51-2b1f-4c3e-9b8a-5e6f7a8b9c0d, client_secret: {env: TEST_GRAPH_SECRET}}",
		`schedule: "0 2 * * *"`,
		"catch_up: false",
		"allowed_domains: [contoso.example]",
	}
	for _, e := range extra {
		key, _, _ := strings.Cut(e, ":")
		replaced := false
		for i, l := range lines {
			if strings.HasPrefix(l, key+":") {
				lines[i], replaced = e, true
			}
		}
		if !replaced {
			lines = append(lines, e)
		}
	}
	return "  - " + strings.Join(lines, "\n    ") + "\n"
}

// secretsEnv isolates a test from the caller's configuration and database
// variables; the database, when a command needs one, refuses at once.
func secretsEnv(t *testing.T) {
	t.Setenv("ENTRAPROV_CONFIG", "")
	t.Setenv("DATABASE_URL", "postgres://app@127.0.0.1:1/entraprov?connect_timeout=2")
	t.Setenv("ENTRAPROV_DATABASE_URL", "")
	// No TEST_GRAPH_SECRET: check's sign-in then fails before any network retry.
	t.Setenv("TEST_GRAPH_SECRET", "")
}

// An endpoint outside the job's cloud is refused (the client secret would
// go there); with unsafe_custom_endpoints: true it is accepted and every
// command that loads the configuration says so.
func TestForeignEndpointRefusedWithoutOptInAndWarnedWithIt(t *testing.T) {
	secretsEnv(t)
	dir := t.TempDir()
	// .invalid never resolves (RFC 6761): check fails fast, offline.
	const foreign = "authority_host: https://login.attacker.invalid/"
	refused := writeFile(t, filepath.Join(dir, "refused.yaml"), "metrics: {listen: ''}\njobs:\n"+secretsJob(foreign))
	for _, args := range [][]string{{"config", "validate"}, {"config", "show"}, {"check", "--json"}, {"sync", "--job", "staff"}, {"run"}} {
		_, stderr, err := runWorker(t, append(args, "--config", refused)...)
		if code := exitCodeOf(err); code != exitConfig {
			t.Errorf("%v: exit %d, want %d (%v)", args, code, exitConfig, err)
		}
		if args[0] != "check" && !strings.Contains(stderr, "jobs[0].authority_host: host login.attacker.invalid is neither cloud public's token authority") {
			t.Errorf("%v: stderr lacks the refusal:\n%s", args, stderr)
		}
	}

	optIn := writeFile(t, filepath.Join(dir, "opt-in.yaml"), "metrics: {listen: ''}\njobs:\n"+
		secretsJob(foreign, "graph_url: https://graph.attacker.invalid/v1.0", "unsafe_custom_endpoints: true"))
	const warn = "unsafe_custom_endpoints: the job's client secret or signed assertion is sent to login.attacker.invalid, outside cloud public"
	const warnGraph = "unsafe_custom_endpoints: the job's Graph tokens are sent to graph.attacker.invalid"
	stdout, stderr, err := runWorker(t, "config", "validate", "--config", optIn)
	if err != nil || !strings.Contains(stdout, "config OK") {
		t.Fatalf("config validate with the opt-in: %v\n%s%s", err, stdout, stderr)
	}
	if !strings.Contains(stderr, "warning: jobs[0].authority_host: "+warn) || !strings.Contains(stderr, "warning: jobs[0].graph_url: "+warnGraph) {
		t.Errorf("config validate: no warning on stderr:\n%s", stderr)
	}
	rep, _, out := runCheckJSON(t, "--config", optIn)
	warned := 0
	for _, it := range rep.Checks {
		if it.Name == "config" && it.Status == checkWarn && it.Job == "staff" && (strings.Contains(it.Detail, warn) || strings.Contains(it.Detail, warnGraph)) {
			warned++
		}
	}
	if warned != 2 {
		t.Errorf("check: %d endpoint warnings, want 2:\n%s", warned, out)
	}
	// Start-up: sync and run warn before they touch the database.
	for _, args := range [][]string{{"sync", "--job", "staff"}, {"run"}} {
		_, stderr, _ := runWorker(t, append(args, "--config", optIn)...)
		if !strings.Contains(stderr, "configuration: "+warn) || !strings.Contains(stderr, `"key":"jobs[0].authority_host"`) && !strings.Contains(stderr, "key=jobs[0].authority_host") {
			t.Errorf("%v: start-up does not warn:\n%s", args, stderr)
		}
	}
}

// A password in the file's database URL (user:password@, ?password=,
// ?sslpassword=, key=value) is refused by every command and never printed;
// one in $ENTRAPROV_DATABASE_URL is accepted (the operator's choice) but
// masked wherever the URL is shown, errors included.
func TestDatabasePasswordInURLRefusedInFileAndNeverPrinted(t *testing.T) {
	secretsEnv(t)
	dir := t.TempDir()
	const s1, s2 = "dbPw-Secret-One", "dbPw-Secret-Two"
	for _, u := range []string{
		"postgres://app@db.example/x?password=" + s1,
		"postgres://app@db.example/x?sslmode=verify-full&sslpassword=" + s1,
		"postgres://app:" + s1 + "@db.example/x",
		"host=db.example sslpassword=" + s1,
	} {
		cfg := writeFile(t, filepath.Join(dir, "file-url.yaml"), fmt.Sprintf("database: {url: %q}\njobs:\n%s", u, secretsJob()))
		for _, args := range [][]string{{"config", "validate"}, {"config", "show"}, {"check", "--json"}, {"run"}, {"history"}} {
			stdout, stderr, err := runWorker(t, append(args, "--config", cfg)...)
			if code := exitCodeOf(err); code != exitConfig {
				t.Errorf("%s: %v: exit %d, want %d", u, args, code, exitConfig)
			}
			if !strings.Contains(stdout+stderr, "database.url: contains a password") {
				t.Errorf("%s: %v: not refused:\n%s%s", u, args, stdout, stderr)
			}
			if strings.Contains(stdout+stderr, s1) {
				t.Errorf("%s: %v: the password is printed:\n%s%s", u, args, stdout, stderr)
			}
		}
	}

	t.Setenv("ENTRAPROV_DATABASE_URL", "postgres://app@127.0.0.1:1/x?connect_timeout=2&password="+s1+"&sslpassword="+s2)
	cfg := writeFile(t, filepath.Join(dir, "env-url.yaml"), "metrics: {listen: ''}\njobs:\n"+secretsJob())
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"config", "validate"}, "database: postgres://app@127.0.0.1:1/x?connect_timeout=2&password=xxxxx&sslpassword=xxxxx (from ENTRAPROV_DATABASE_URL)"},
		{[]string{"config", "show"}, "url: postgres://app@127.0.0.1:1/x?connect_timeout=2&password=xxxxx&sslpassword=xxxxx"},
		{[]string{"check", "--json"}, `"name": "database"`},
		{[]string{"run"}, "connect to database"},
		{[]string{"sync", "--job", "staff"}, "connect to database"},
	} {
		stdout, stderr, _ := runWorker(t, append(tc.args, "--config", cfg)...)
		if !strings.Contains(stdout+stderr, tc.want) {
			t.Errorf("%v: output lacks %q:\n%s%s", tc.args, tc.want, stdout, stderr)
		}
		if strings.Contains(stdout+stderr, s1) || strings.Contains(stdout+stderr, s2) {
			t.Errorf("%v: a password is printed:\n%s%s", tc.args, stdout, stderr)
		}
	}
}

// A secret pasted where an id or a name belongs is refused without being
// echoed, by config validate and check (and, in the next test, reload).
func TestSecretInTheWrongFieldIsNeverEchoed(t *testing.T) {
	secretsEnv(t)
	const secret = "Zx8Q~Wr0ngField.S3cr3t-Value_0123456789ab"
	auth := func(rest string) string {
		return "auth: {method: secret, client_id: 7d0e2a51-2b1f-4c3e-9b8a-5e6f7a8b9c0d, " + rest + "}"
	}
	tests := []struct{ name, field, key string }{
		{"client_id", "auth: {method: secret, client_id: '" + secret + "', client_secret: {env: TEST_GRAPH_SECRET}}", "jobs[0].auth.client_id"},
		{"tenant_id", "tenant_id: '" + secret + "'", "jobs[0].tenant_id"},
		{"env_name", auth("client_secret: {env: '" + secret + "'}"), "jobs[0].auth.client_secret.env"},
		{"credential_name", auth("client_secret: {credential: '" + secret + "'}"), "jobs[0].auth.client_secret.credential"},
		{"file_path", auth("client_secret: {file: '" + secret + "'}"), "jobs[0].auth.client_secret.file"},
		{"managed_identity_client_id", "auth: {method: managed_identity, managed_identity_client_id: '" + secret + "'}", "jobs[0].auth.managed_identity_client_id"},
		{"key_credential", "auth: {method: certificate, client_id: 7d0e2a51-2b1f-4c3e-9b8a-5e6f7a8b9c0d, key_credential: '" + secret + "'}", "jobs[0].auth.key_credential"},
		{"webhook_url_token", "webhook: {url: 'https://hooks.example/in?token=" + secret + "'}", "jobs[0].webhook.url"},
	}
	dir := t.TempDir()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := writeFile(t, filepath.Join(dir, tt.name+".yaml"), "jobs:\n"+secretsJob(tt.field))
			_, stderr, err := runWorker(t, "config", "validate", "--config", cfg)
			if code := exitCodeOf(err); code != exitConfig || !strings.Contains(stderr, tt.key+": ") {
				t.Errorf("config validate: exit %d, want %d naming %s:\n%s", code, exitConfig, tt.key, stderr)
			}
			_, _, out := runCheckJSON(t, "--config", cfg)
			for what, s := range map[string]string{"config validate": stderr, "check": out} {
				if strings.Contains(s, secret) || strings.Contains(s, "S3cr3t") {
					t.Errorf("%s echoes the value:\n%s", what, s)
				}
			}
		})
	}
}

// The running service: at start-up it warns about risky settings (a
// world-readable secret file, an opted-in foreign endpoint), and a reload
// (SIGHUP) of a file with a secret in the wrong field is refused without
// the secret reaching the journal.
func TestRunWarnsAtStartAndReloadNeverEchoesSecrets(t *testing.T) {
	bin := buildWorker(t)
	dbURL := testdb.NewURL(t)
	dir := t.TempDir()
	secretFile := writeFile(t, filepath.Join(dir, "graph-secret"), "graph-Secret-Value-8\n")
	if err := os.Chmod(secretFile, 0o644); err != nil {
		t.Fatal(err)
	}
	good := func(extra ...string) string {
		return fmt.Sprintf("database: {url: %q}\nmetrics: {listen: ''}\nlog: {format: json}\njobs:\n", dbURL) + secretsJob(append([]string{
			"auth: {method: secret, client_id: 7d0e2a51-2b1f-4c3e-9b8a-5e6f7a8b9c0d, client_secret: {file: " + secretFile + "}}",
			"unsafe_custom_endpoints: true", "graph_url: https://graph.proxy.invalid/v1.0"}, extra...)...)
	}
	cfgPath := writeFile(t, filepath.Join(dir, "config.yaml"), good())
	p := startWorkerProc(t, bin, cfgPath)
	waitLog(t, p, "worker ready", 30*time.Second)
	logs := p.logs.String()
	for _, want := range []string{
		`"msg":"configuration: ` + secretFile + ` is world-readable (mode 0644)`, `"key":"jobs[0].auth.client_secret.file"`,
		`"msg":"configuration: unsafe_custom_endpoints: the job's Graph tokens are sent to graph.proxy.invalid`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("start-up log lacks %s:\n%s", want, logs)
		}
	}

	const secret = "Zx8Q~Rel0ad.S3cr3t-Value_0123456789ab"
	writeFile(t, cfgPath, good("tenant_id: '"+secret+"'", "auth: {method: secret, client_id: '"+secret+"', client_secret: {env: '"+secret+"'}}"))
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, p, "reload refused", 15*time.Second)
	if code := p.term(t, 15*time.Second); code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}
	logs = p.logs.String()
	for _, key := range []string{"jobs[0].tenant_id", "jobs[0].auth.client_id", "jobs[0].auth.client_secret.env"} {
		if !strings.Contains(logs, key+": ") {
			t.Errorf("the refused reload does not name %s:\n%s", key, logs)
		}
	}
	if strings.Contains(logs, "S3cr3t") || strings.Contains(logs, "graph-Secret-Value-8") {
		t.Errorf("a secret reached the log:\n%s", logs)
	}
}

// Secret files other accounts can read get a warning from config validate
// and check (start-up: the previous test).
func TestSecretFilePermissionWarning(t *testing.T) {
	secretsEnv(t)
	dir := t.TempDir()
	// Empty: check's sign-in fails before any network retry.
	secretFile := writeFile(t, filepath.Join(dir, "graph-secret"), "\n")
	cfg := writeFile(t, filepath.Join(dir, "c.yaml"), "metrics: {listen: ''}\njobs:\n"+secretsJob(
		"auth: {method: secret, client_id: 7d0e2a51-2b1f-4c3e-9b8a-5e6f7a8b9c0d, client_secret: {file: "+secretFile+"}}"))
	const want = "jobs[0].auth.client_secret.file: "
	if _, stderr, err := runWorker(t, "config", "validate", "--config", cfg); err != nil || strings.Contains(stderr, "warning") {
		t.Fatalf("0600: %v, warnings:\n%s", err, stderr)
	}
	if err := os.Chmod(secretFile, 0o640); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := runWorker(t, "config", "validate", "--config", cfg)
	if err != nil || !strings.Contains(stderr, "warning: "+want+secretFile+" is group-readable (mode 0640)") {
		t.Errorf("config validate: %v\n%s", err, stderr)
	}
	rep, _, out := runCheckJSON(t, "--config", cfg)
	found := false
	for _, it := range rep.Checks {
		found = found || it.Name == "config" && it.Status == checkWarn && strings.Contains(it.Detail, want+secretFile+" is group-readable")
	}
	if !found {
		t.Errorf("check has no permission warning:\n%s", out)
	}
}

// A webhook URL kept in a file (it usually embeds the receiver's token) is
// read when an event is sent, and config show prints the reference, never
// the URL; a literal URL is cut to its scheme and host.
func TestWebhookURLFromFileIsUsedAndRedacted(t *testing.T) {
	secretsEnv(t)
	dir := t.TempDir()
	const hook = "https://hooks.example/services/T0/B0/Hook-Token-Value"
	urlFile := writeFile(t, filepath.Join(dir, "webhook-url"), hook+"\n")
	for _, tc := range []struct {
		name, url, want string
	}{
		{"file", "{file: " + urlFile + "}", "file: " + urlFile},
		{"literal", "'" + hook + "'", "url: https://hooks.example/…"},
	} {
		cfg := writeFile(t, filepath.Join(dir, tc.name+".yaml"), "jobs:\n"+secretsJob("webhook: {url: "+tc.url+"}"))
		stdout, stderr, err := runWorker(t, "config", "show", "--config", cfg)
		if err != nil || !strings.Contains(stdout, tc.want) {
			t.Errorf("%s: config show: %v; lacks %q:\n%s%s", tc.name, err, tc.want, stdout, stderr)
		}
		vout, _, err := runWorker(t, "config", "validate", "--config", cfg)
		if err != nil {
			t.Errorf("%s: config validate: %v", tc.name, err)
		}
		rep, _, cout := runCheckJSON(t, "--config", cfg)
		if it := findCheck(rep, "webhook"); it.Status != checkOK || !strings.Contains(it.Detail, "events go to https://hooks.example/…") {
			t.Errorf("%s: check's webhook item: %+v", tc.name, it)
		}
		if strings.Contains(stdout+stderr+vout+cout, "Hook-Token-Value") {
			t.Errorf("%s: the webhook URL is printed:\n%s%s%s%s", tc.name, stdout, stderr, vout, cout)
		}
	}
	// What the file holds is checked by check, not echoed.
	writeFile(t, urlFile, "ftp://hooks.example/Hook-Token-Value\n")
	rep, _, cout := runCheckJSON(t, "--config", filepath.Join(dir, "file.yaml"))
	if it := findCheck(rep, "webhook"); it.Status != checkFail || !strings.Contains(it.Detail, "not an http(s) URL") || strings.Contains(cout, "Hook-Token-Value") {
		t.Errorf("a file holding a bad URL: %+v\n%s", it, cout)
	}
}
