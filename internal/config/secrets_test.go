package config

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// warningsOf loads y (which must be valid) and returns its warnings.
func warningsOf(t *testing.T, y string) string {
	t.Helper()
	var b strings.Builder
	for _, p := range mustParse(t, y).Warnings() {
		b.WriteString(p.String() + "\n")
	}
	return b.String()
}

// Whoever can edit the (world-readable) config file must not be able to
// send the job's credential or its Graph tokens to a host of their choice:
// the endpoints may name only the cloud's hosts or loopback, unless the job
// opts in, and then every load warns.
func TestEndpoints_onlyTheCloudsHostsOrLoopbackWithoutOptIn(t *testing.T) {
	tests := []struct {
		name      string
		overrides []string
		key, msg  string // problem expected ("" : valid)
		warning   string // warning expected when valid ("" : none)
	}{
		{"cloud_defaults", nil, "", "", ""},
		{"public_hosts_spelled_out", []string{"authority_host: https://login.microsoftonline.com/", "graph_url: https://graph.microsoft.com/v1.0"}, "", "", ""},
		{"host_case_and_trailing_dot", []string{"authority_host: https://LOGIN.microsoftonline.com./"}, "", "", ""},
		{"usgov_dod_graph", []string{"cloud: usgov", "authority_host: https://login.microsoftonline.us/", "graph_url: https://dod-graph.microsoft.us/v1.0"}, "", "", ""},
		{"china_hosts", []string{"cloud: china", "authority_host: https://login.chinacloudapi.cn/", "graph_url: https://microsoftgraph.chinacloudapi.cn/v1.0"}, "", "", ""},
		{"emulator_on_127.0.0.1", []string{"authority_host: https://127.0.0.1:8443/", "graph_url: https://127.0.0.1:8443/v1.0"}, "", "", ""},
		{"loopback_127_slash_8_ipv6_localhost", []string{"authority_host: https://127.8.9.10:8443/", "graph_url: 'https://[::1]:8443/v1.0'"}, "", "", ""},
		{"localhost", []string{"authority_host: https://localhost:8443/"}, "", "", ""},
		{"foreign_authority", []string{"authority_host: https://login.attacker.example/"}, "jobs[0].authority_host",
			"host login.attacker.example is neither cloud public's token authority (login.microsoftonline.com) nor a loopback address", ""},
		{"foreign_graph", []string{"graph_url: https://graph.attacker.example/v1.0"}, "jobs[0].graph_url",
			"set unsafe_custom_endpoints: true", ""},
		{"look_alike_suffix", []string{"authority_host: https://login.microsoftonline.com.attacker.example/"}, "jobs[0].authority_host", "is neither cloud public's", ""},
		{"other_clouds_host", []string{"graph_url: https://graph.microsoft.us/v1.0"}, "jobs[0].graph_url", "is neither cloud public's Graph (graph.microsoft.com)", ""},
		{"private_address_is_not_loopback", []string{"authority_host: https://10.0.0.5/"}, "jobs[0].authority_host", "host 10.0.0.5 is neither", ""},
		{"opt_in_accepts_a_proxy_and_warns", []string{"unsafe_custom_endpoints: true", "authority_host: https://proxy.corp.example/", "graph_url: https://proxy.corp.example/graph/v1.0"}, "", "",
			"jobs[0].authority_host: unsafe_custom_endpoints: the job's client secret or signed assertion is sent to proxy.corp.example, outside cloud public"},
		{"opt_in_without_use_warns", []string{"unsafe_custom_endpoints: true"}, "", "", "jobs[0].unsafe_custom_endpoints: set, but no endpoint leaves cloud public"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			y := jobYAML(tt.overrides...)
			if tt.key != "" {
				ps := problemsOf(t, y)
				for _, p := range ps {
					if p.Key == tt.key && strings.Contains(p.Msg, tt.msg) {
						return
					}
				}
				t.Fatalf("no problem %s: ...%s...; got %v", tt.key, tt.msg, ps)
			}
			w := warningsOf(t, y)
			if tt.warning == "" && w != "" || !strings.Contains(w, tt.warning) {
				t.Errorf("warnings:\n%s\nwant %q", w, tt.warning)
			}
		})
	}
}

// A database password in the file's URL, as user:password@ or as a
// connection parameter, is refused without being echoed; wherever a URL is
// shown, its secrets are masked.
func TestDatabaseURL_secretParametersRefusedAndRedacted(t *testing.T) {
	const secret = "Db-S3cret-Value"
	for _, u := range []string{
		"postgres://app:" + secret + "@db/x",
		"postgres://app@db/x?sslmode=require&password=" + secret,
		"postgresql://app@db/x?sslpassword=" + secret,
		"postgres://app@db/x?PassWord=" + secret,
		"postgres://app@db/x?pass%77ord=" + secret,
		"postgres://app@db/x?oauth_client_secret=" + secret,
		"host=db sslpassword=" + secret,
		"host=db password='" + secret + " x'",
	} {
		t.Run(u, func(t *testing.T) {
			ps := problemsOf(t, "database: {url: \""+u+"\"}\n"+jobYAML())
			all := (&ValidationError{Problems: ps}).Error()
			if !strings.Contains(all, "database.url: contains a password") {
				t.Errorf("not refused:\n%s", all)
			}
			if strings.Contains(all, secret) {
				t.Errorf("the password is echoed:\n%s", all)
			}
			if r := RedactURL(u); strings.Contains(r, secret) || !strings.Contains(r, "xxxxx") {
				t.Errorf("RedactURL(%q) = %q", u, r)
			}
		})
	}
	// passfile names a file: allowed. (RedactURL's cases:
	// TestDatabase_ConnStringAndRedaction.)
	mustParse(t, "database: {url: 'postgres://app@db/x?passfile=/etc/entraprov/pgpass&sslmode=verify-full'}\n"+jobYAML())
}

// A secret pasted into a field meant for an id or a name is not echoed by
// the validation message (which reaches terminals and, on reload, the
// journal): the message names the key and what is wrong.
func TestValidation_neverEchoesValuesOfFieldsThatMayHoldASecret(t *testing.T) {
	const secret = "Zx8Q~N0tAGuid.S3cr3t-Value_0123456789ab"
	auth := func(rest string) string {
		return "auth: {method: secret, client_id: " + testClientID + ", " + rest + "}"
	}
	tests := []struct{ name, yaml, key string }{
		{"client_id", jobYAML("auth: {method: secret, client_id: '" + secret + "', client_secret: {env: GRAPH_SECRET}}"), "jobs[0].auth.client_id"},
		{"tenant_id", jobYAML("tenant_id: '" + secret + "'"), "jobs[0].tenant_id"},
		{"managed_identity_client_id", jobYAML("auth: {method: managed_identity, managed_identity_client_id: '" + secret + "'}"), "jobs[0].auth.managed_identity_client_id"},
		{"env_name", jobYAML(auth("client_secret: {env: '" + secret + "'}")), "jobs[0].auth.client_secret.env"},
		{"credential_name", jobYAML(auth("client_secret: {credential: '" + secret + "'}")), "jobs[0].auth.client_secret.credential"},
		{"file_path", jobYAML(auth("client_secret: {file: '" + secret + "'}")), "jobs[0].auth.client_secret.file"},
		{"two_sources", jobYAML(auth("client_secret: {env: '" + secret + "', file: /x}")), "jobs[0].auth.client_secret"},
		{"key_credential", jobYAML("auth: {method: certificate, client_id: " + testClientID + ", key_credential: '" + secret + "'}"), "jobs[0].auth.key_credential"},
		{"key_file", jobYAML("auth: {method: certificate, client_id: " + testClientID + ", certificate_file: /etc/passwd, key_file: '" + secret + "'}"), "jobs[0].auth.key_file"},
		{"database_password_env", "database: {password: {env: '" + secret + "'}}\n" + jobYAML(), "database.password.env"},
		{"webhook_url_query", jobYAML("webhook: {url: 'https://hooks.example.com/x?token=" + secret + "'}"), "jobs[0].webhook.url"},
		{"webhook_url_userinfo", jobYAML("webhook: {url: 'https://u:" + secret + "@hooks.example.com/x'}"), "jobs[0].webhook.url"},
		{"webhook_http_path_token", jobYAML("webhook: {url: 'http://hooks.example.com/" + secret + "'}"), "jobs[0].webhook.url"},
		{"webhook_url_env", jobYAML("webhook: {url: {env: '" + secret + "'}}"), "jobs[0].webhook.url.env"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps := problemsOf(t, tt.yaml)
			all := (&ValidationError{Problems: ps}).Error()
			if strings.Contains(all, secret) || strings.Contains(all, "S3cr3t") {
				t.Fatalf("the value is echoed:\n%s", all)
			}
			for _, p := range ps {
				if p.Key == tt.key && p.Line > 0 {
					return
				}
			}
			t.Errorf("no problem for %s with its line:\n%s", tt.key, all)
		})
	}
}

// The webhook URL may be a reference to a secret (file, env, systemd
// credential); config show prints the reference or, for a literal, only
// its scheme and host.
func TestWebhookURL_byReferenceAndRedacted(t *testing.T) {
	dir := t.TempDir()
	const hook = "https://hooks.example.com/services/T0/B0/Hook-T0ken-Value"
	path := filepath.Join(dir, "webhook-url")
	if err := os.WriteFile(path, []byte(hook+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := mustParse(t, jobYAML("webhook: {url: {file: "+path+"}}"))
	u := c.Jobs[0].Webhook.URL
	if u.Ref.File != path || u.Literal != "" {
		t.Fatalf("url = %+v; want a file reference", u)
	}
	if got, err := u.Resolve(context.Background()); err != nil || got != hook {
		t.Fatalf("Resolve = %q, %v", got, err)
	}
	out, err := yaml.Marshal(c.Redacted())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "file: "+path) || strings.Contains(string(out), "T0ken") {
		t.Errorf("redacted config:\n%s", out)
	}

	lit := mustParse(t, jobYAML("webhook: {url: 'https://hooks.example.com/services/T0/B0/Hook-T0ken-Value'}"))
	red := lit.Redacted()
	if got := red.Jobs[0].Webhook.URL.Literal; got != "https://hooks.example.com/…" {
		t.Errorf("redacted literal = %q", got)
	}
	if lit.Jobs[0].Webhook.URL.Literal != hook {
		t.Errorf("Redacted changed the original: %q", lit.Jobs[0].Webhook.URL.Literal)
	}
	if s := lit.Jobs[0].Webhook.URL.String(); strings.Contains(s, "T0ken") {
		t.Errorf("String() = %q", s)
	}
	for _, y := range []string{"webhook: {url: {credential: webhook-url}}", "webhook: {url: {env: WEBHOOK_URL}}"} {
		mustParse(t, jobYAML(y))
	}
}

// A secret file that other accounts can read, or that another account
// owns, is worth a warning: the config names where the secret is, not who
// may read it.
func TestWarnings_secretFilePermissions(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "graph-secret")
	if err := os.WriteFile(path, []byte("s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	y := jobYAML("auth: {method: secret, client_id: " + testClientID + ", client_secret: {file: " + path + "}}")
	if w := warningsOf(t, y); w != "" {
		t.Errorf("0600 file of this user: warnings %s", w)
	}
	for mode, want := range map[os.FileMode]string{0o640: "is group-readable (mode 0640)", 0o644: "is world-readable (mode 0644)"} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		if w := warningsOf(t, y); !strings.Contains(w, "jobs[0].auth.client_secret.file: "+path+" "+want) || !strings.Contains(w, "chmod 600") {
			t.Errorf("mode %o: warnings %q; want %q", mode, w, want)
		}
	}

	// Another owner: as root, give the file away; otherwise a root-owned
	// file serves.
	foreign := "/etc/passwd"
	if os.Geteuid() == 0 {
		if err := os.Chmod(path, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(path, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		foreign = path
	}
	y = jobYAML("auth: {method: certificate, client_id: " + testClientID + ", certificate_file: /etc/passwd, key_file: " + foreign + "}")
	if w := warningsOf(t, y); !strings.Contains(w, "jobs[0].auth.key_file: "+foreign+" is owned by uid") || !strings.Contains(w, "not by the user this process runs as") {
		t.Errorf("foreign owner: warnings %q", w)
	}
}
