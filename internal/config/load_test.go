package config

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

const testClientID = "11111111-2222-3333-4444-555555555555"

// jobYAML renders a one-job config from a valid base job. Each override is a
// "key: value" line replacing the base line with that key (or appended);
// "-key" removes it.
func jobYAML(overrides ...string) string {
	base := []string{
		"name: nightly",
		"tenant_id: contoso.onmicrosoft.com",
		"auth: {method: secret, client_id: " + testClientID + ", client_secret: {env: GRAPH_SECRET}}",
		`schedule: "0 2 * * *"`,
		"allowed_domains: [contoso.com]",
	}
	for _, o := range overrides {
		if rm, ok := strings.CutPrefix(o, "-"); ok {
			for i, l := range base {
				if strings.HasPrefix(l, rm+":") {
					base = append(base[:i], base[i+1:]...)
					break
				}
			}
			continue
		}
		key, _, _ := strings.Cut(o, ":")
		replaced := false
		for i, l := range base {
			if strings.HasPrefix(l, key+":") {
				base[i], replaced = o, true
				break
			}
		}
		if !replaced {
			base = append(base, o)
		}
	}
	return "jobs:\n  - " + strings.Join(base, "\n    ") + "\n"
}

func mustParse(t *testing.T, y string) *Config {
	t.Helper()
	c, err := Parse([]byte(y))
	if err != nil {
		t.Fatalf("Parse:\n%s\nerror: %v", y, err)
	}
	return c
}

func problemsOf(t *testing.T, y string) []Problem {
	t.Helper()
	_, err := Parse([]byte(y))
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Parse:\n%s\nwant *ValidationError, got %v", y, err)
	}
	return ve.Problems
}

// wantProblem fails t unless ps holds a problem on key whose message
// contains msg; the failure lists every problem there is.
func wantProblem(t *testing.T, ps []Problem, key, msg string) {
	t.Helper()
	for _, p := range ps {
		if p.Key == key && strings.Contains(p.Msg, msg) {
			return
		}
	}
	t.Errorf("no problem %s: ...%s...\ngot:\n%s", key, msg, (&ValidationError{Problems: ps}).Error())
}

func TestLoad_minimalJobGetsEveryDefault(t *testing.T) {
	c := mustParse(t, jobYAML())
	want := DefaultJob()
	j := c.Jobs[0]
	if j.Cloud != "public" || j.BatchSize != 20 || j.MaxConcurrency != 4 || j.Leaver.Action != "disable" ||
		j.Budget != DefaultBudget() || j.Threshold != nil || j.Matching.AdoptBy != "none" ||
		j.Password.Length != 16 || !j.Password.ForceChangeNextSignIn || !j.CatchUp || j.Source != "entraprov.desired_users" {
		t.Errorf("job defaults not applied:\n got %+v\nwant %+v", j, want)
	}
	if c.Log.Format != "auto" || c.Log.Level != "info" || c.Metrics.Listen != "127.0.0.1:9464" {
		t.Errorf("top-level defaults not applied: %+v %+v", c.Log, c.Metrics)
	}
	if c.Jobs[0].Auth.Secret.Env != "GRAPH_SECRET" {
		t.Errorf("secret ref = %+v", c.Jobs[0].Auth.Secret)
	}
}

func TestLoad_explicitValueBeatsDefault(t *testing.T) {
	// false, 0 and "" are real choices: catch-up off, no count bound,
	// metrics off. A zero-value default scheme would silently undo them.
	c := mustParse(t, "metrics: {listen: \"\"}\n"+jobYAML("catch_up: false", "deletion_threshold: {max_count: 0}",
		"password: {force_change_next_sign_in: false}", "leaver: {action: delete, delete_after: 30d}"))
	j := c.Jobs[0]
	if j.CatchUp || j.Budget.Disables.MaxCount != 0 || j.Password.ForceChangeNextSignIn || c.Metrics.Listen != "" {
		t.Errorf("explicit values overwritten by defaults: catch_up=%v max_count=%d force=%v listen=%q",
			j.CatchUp, j.Budget.Disables.MaxCount, j.Password.ForceChangeNextSignIn, c.Metrics.Listen)
	}
	if j.Budget.Disables.MaxPercent != 10 || j.Budget.Deletes != j.Budget.Disables || j.Password.Length != 16 {
		t.Errorf("sibling defaults lost: %+v %+v", j.Budget, j.Password)
	}
	if j.Leaver.DeleteAfter.Duration != 30*24*time.Hour {
		t.Errorf("delete_after = %v, want 720h", j.Leaver.DeleteAfter)
	}
}

func TestLoad_yamlAnchorsCountAsSet(t *testing.T) {
	y := "x-common: &common {action: ignore}\n" + jobYAML("leaver: *common")
	// x-common is itself an unknown key: the file must be rejected, but
	// the job must not be: the alias sets leaver.action.
	ps := problemsOf(t, y)
	if len(ps) != 1 || ps[0].Key != "x-common" {
		t.Fatalf("problems = %v, want only x-common", ps)
	}
}

func TestLoad_rejectsBadConfig(t *testing.T) {
	tests := []struct {
		name, yaml, key, msg string
	}{
		{"unknown_key_named_with_line", jobYAML("scheduel: \"0 2 * * *\""), "jobs[0].scheduel", "unknown key; did you mean schedule?"},
		{"unknown_top_level_key", "databse: {url: x}\n" + jobYAML(), "databse", "did you mean database?"},
		{"schedule_with_four_fields", jobYAML(`schedule: "0 2 * *"`), "jobs[0].schedule", `"0 2 * *" has 4 fields; want 5 (minute hour day-of-month month day-of-week) or 6 with seconds`},
		{"schedule_out_of_range", jobYAML(`schedule: "61 2 * * *"`), "jobs[0].schedule", `"61 2 * * *" is not a valid schedule`},
		{"schedule_missing", jobYAML("-schedule"), "jobs[0].schedule", "empty schedule"},
		{"schedule_unknown_zone", jobYAML(`schedule: "CRON_TZ=Europe/Atlantis 0 2 * * *"`), "jobs[0].schedule", `unknown time zone "Europe/Atlantis"`},
		{"schedule_zone_without_spec", jobYAML(`schedule: "CRON_TZ=UTC"`), "jobs[0].schedule", "has a time zone but no schedule"},
		{"bad_every_descriptor", jobYAML(`schedule: "@every soon"`), "jobs[0].schedule", "is not a valid schedule"},
		{"tenant_not_guid_or_domain", jobYAML("tenant_id: not a tenant"), "jobs[0].tenant_id", "neither a GUID"},
		{"tenant_common_refused", jobYAML("tenant_id: organizations"), "jobs[0].tenant_id", "app-only sign-in needs the tenant id"},
		{"client_id_not_guid", jobYAML("auth: {method: certificate, client_id: my-app, certificate_file: /etc/passwd}"), "jobs[0].auth.client_id", "is not a GUID; want the application (client) id"},
		{"cloud_unknown", jobYAML("cloud: germany"), "jobs[0].cloud", "want public, usgov or china"},
		{"auth_method_unknown", jobYAML("auth: {method: password, client_id: " + testClientID + "}"), "jobs[0].auth.method", `"password" is not an auth method`},
		{"secret_method_without_secret", jobYAML("auth: {method: secret, client_id: " + testClientID + "}"), "jobs[0].auth.client_secret", "required with method: secret"},
		{"literal_client_secret", jobYAML(`auth: {method: secret, client_id: ` + testClientID + `, client_secret: "abc"}`), "jobs[0].auth.client_secret",
			"a literal secret is not allowed; use client_secret: {file: /etc/entraprov/secret} or {credential: graph-secret} (systemd LoadCredential=)"},
		{"literal_secret_before_other_keys_on_line", jobYAML(`auth: {client_secret: "abc", method: secret, client_id: ` + testClientID + `}`), "jobs[0].auth.client_secret", "a literal secret is not allowed"},
		{"literal_pfx_password", jobYAML("auth: {method: certificate, client_id: " + testClientID + ", pfx_file: /etc/passwd, pfx_password: hunter2}"), "jobs[0].auth.pfx_password", "use pfx_password: {file:"},
		{"literal_database_password", "database:\n  password: hunter2\n" + jobYAML(), "database.password", "a literal secret is not allowed"},
		{"literal_password_key", jobYAML("auth: {method: managed_identity, password: hunter2}"), "jobs[0].auth.password", "a literal secret is not allowed"},
		{"secret_ref_with_two_sources", jobYAML("auth: {method: secret, client_id: " + testClientID + ", client_secret: {env: A, credential: b}}"), "jobs[0].auth.client_secret", "set exactly one of file, env, credential"},
		{"secret_ref_unknown_key", jobYAML("auth: {method: secret, client_id: " + testClientID + ", client_secret: {path: /x}}"), "jobs[0].auth.client_secret.path", "unknown key (known here: file, env, credential)"},
		{"secret_file_missing", jobYAML("auth: {method: secret, client_id: " + testClientID + ", client_secret: {file: /nonexistent/secret}}"), "jobs[0].auth.client_secret.file", "no such file"},
		{"certificate_without_files", jobYAML("auth: {method: certificate, client_id: " + testClientID + "}"), "jobs[0].auth.certificate_file", "required with method: certificate"},
		{"field_of_other_method", jobYAML("auth: {method: managed_identity, certificate_file: /etc/passwd}"), "jobs[0].auth.certificate_file", "not used with method: managed_identity"},
		{"domain_with_at_sign", jobYAML("allowed_domains: ['@contoso.com']"), "jobs[0].allowed_domains[0]", "write the domain without @"},
		{"domain_syntax", jobYAML("allowed_domains: [contoso.com, 'bad domain']"), "jobs[0].allowed_domains[1]", "is not a domain name"},
		{"no_allowed_domains", jobYAML("-allowed_domains"), "jobs[0].allowed_domains", "required; list the UPN domains"},
		{"allowed_group_not_guid", jobYAML("allowed_groups: [0f5c9c1e-6f9a-4a41-a1f1-3e0e0d1e2f30, Sales Team]"), "jobs[0].allowed_groups[1]", `"Sales Team" is not a group object id; want the group's object id GUID`},
		{"allowed_group_twice", jobYAML("allowed_groups: [0f5c9c1e-6f9a-4a41-a1f1-3e0e0d1e2f30, 0F5C9C1E-6F9A-4A41-A1F1-3E0E0D1E2F30]"), "jobs[0].allowed_groups[1]", "is listed twice"},
		{"allowed_groups_empty", jobYAML("allowed_groups: []"), "jobs[0].allowed_groups", "empty; list the group object ids this job may add users to and remove them from"},
		{"allowed_groups_not_a_list", jobYAML("allowed_groups: 0f5c9c1e-6f9a-4a41-a1f1-3e0e0d1e2f30"), "jobs[0].allowed_groups", "want a list"},
		{"leaver_action_unknown", jobYAML("leaver: {action: archive}"), "jobs[0].leaver.action", "want disable, delete (with delete_after: 30d) or ignore"},
		{"delete_without_grace", jobYAML("leaver: {action: delete}"), "jobs[0].leaver.delete_after", "required and > 0 with action: delete"},
		{"delete_after_without_delete", jobYAML("leaver: {delete_after: 30d}"), "jobs[0].leaver.delete_after", "only used with action: delete"},
		{"bad_duration", jobYAML("leaver: {action: delete, delete_after: 30 days}"), "jobs[0].leaver.delete_after", `"30 days" is not a duration`},
		{"threshold_percent_over_100", jobYAML("deletion_threshold: {max_percent: 150}"), "jobs[0].deletion_threshold.max_percent", "want 0 (no percent bound, the count bound stays) to 100"},
		{"threshold_count_negative", jobYAML("deletion_threshold: {max_count: -1}"), "jobs[0].deletion_threshold.max_count", "is negative"},
		{"adopt_by_unknown", jobYAML("matching: {adopt_by: mail}"), "jobs[0].matching.adopt_by", "want none (never adopt), employee_id or user_principal_name"},
		{"batch_size_over_20", jobYAML("batch_size: 50"), "jobs[0].batch_size", "50 is out of range; want 1..20"},
		{"batch_size_zero_is_not_default", jobYAML("batch_size: 0"), "jobs[0].batch_size", "0 is out of range; want 1..20"},
		{"batch_size_not_integer", jobYAML("batch_size: twenty"), "jobs[0].batch_size", "want an integer, got a string"},
		{"max_concurrency_over_64", jobYAML("max_concurrency: 100"), "jobs[0].max_concurrency", "want 1..64"},
		{"max_run_duration_zero_is_not_unbounded", jobYAML("max_run_duration: 0s"), "jobs[0].max_run_duration", "0s is shorter than 1m; want the longest a run may take"},
		{"max_run_duration_negative", jobYAML("max_run_duration: -1h"), "jobs[0].max_run_duration", "is shorter than 1m"},
		{"job_name_uppercase", jobYAML("name: Nightly"), "jobs[0].name", `"Nightly" is not a valid job name`},
		{"job_name_missing", jobYAML("-name"), "jobs[0].name", "required"},
		{"source_not_relation", jobYAML("source: hr.users; drop table x"), "jobs[0].source", "is not a relation name"},
		{"source_three_parts", jobYAML("source: db.hr.users"), "jobs[0].source", "want table or schema.table"},
		{"authority_host_http", jobYAML("authority_host: http://login.example.com/"), "jobs[0].authority_host", "is not an https URL"},
		{"graph_url_without_version", jobYAML("graph_url: https://graph.example.com/"), "jobs[0].graph_url", "must end in /v1.0"},
		{"ca_file_missing", jobYAML("ca_file: /nonexistent/ca.pem"), "jobs[0].ca_file", "cannot read /nonexistent/ca.pem: no such file"},
		{"ca_file_not_pem", jobYAML("ca_file: /etc/passwd"), "jobs[0].ca_file", "holds no PEM certificate"},
		{"metrics_listen_not_host_port", "metrics: {listen: 9464}\n" + jobYAML(), "metrics.listen", `"9464" is not host:port`},
		{"log_level_unknown", "log: {level: verbose}\n" + jobYAML(), "log.level", "want debug, info, warn or error"},
		{"log_format_unknown", "log: {format: xml}\n" + jobYAML(), "log.format", "want auto"},
		{"no_jobs", "log: {level: info}\n", "jobs", "no jobs defined"},
		{"jobs_not_a_list", "jobs: {name: x}\n", "jobs", "want a list of jobs, got a mapping"},
		{"database_url_with_password", "database: {url: 'postgres://app:pw@db/entraprov'}\n" + jobYAML(), "database.url", "contains a password; a literal secret is not allowed"},
		{"database_url_dsn_with_password", "database: {url: 'host=db password=pw'}\n" + jobYAML(), "database.url", "contains a password"},
		{"database_url_bad_scheme", "database: {url: 'mysql://db/x'}\n" + jobYAML(), "database.url", "unsupported scheme"},
		{"key_twice", jobYAML() + "    batch_size: 10\n    batch_size: 12\n", "jobs[0].batch_size", "key appears twice"},
		{"two_documents", jobYAML() + "---\nlog: {level: info}\n", "", "more than one YAML document"},
		// The change budget: two zeros never mean "off"; the old key's
		// problems are named under it.
		{"budget_two_zeros", jobYAML("change_budget: {disables: {max_count: 0, max_percent: 0}}"), "jobs[0].change_budget.disables",
			"max_count and max_percent are both 0, which would allow any number of changes; set a bound (e.g. max_count: 500, max_percent: 10) or, to turn this bound off, say so: off: true"},
		{"budget_two_zeros_in_the_old_key", jobYAML("deletion_threshold: {max_count: 0, max_percent: 0}"), "jobs[0].deletion_threshold", "off: true"},
		{"budget_negative_count", jobYAML("change_budget: {manager_removals: {max_count: -3}}"), "jobs[0].change_budget.manager_removals.max_count", "is negative"},
		{"budget_percent_over_100", jobYAML("change_budget: {group_removals: {max_percent: 120}}"), "jobs[0].change_budget.group_removals.max_percent", "out of range"},
		{"budget_negative_floor", jobYAML("change_budget: {percent_floor: -1}"), "jobs[0].change_budget.percent_floor", "is negative"},
		{"budget_and_old_key", jobYAML("deletion_threshold: {max_count: 5}", "change_budget: {disables: {max_count: 7}}"), "jobs[0].deletion_threshold",
			"deletion_threshold is the older name of change_budget.disables and .deletes"},
		{"budget_unknown_kind", jobYAML("change_budget: {disable: {max_count: 7}}"), "jobs[0].change_budget.disable", "did you mean disables?"},
		{"schema_extension_type_unknown", jobYAML("schema_extensions: [{name: costCode, type: Float}]"), "jobs[0].schema_extensions[0].type", `"Float" is not an extensionProperty dataType; want String, Integer, Boolean or DateTime`},
		{"schema_extension_name_bad", jobYAML("schema_extensions: [{name: cost-code, type: String}]"), "jobs[0].schema_extensions[0].name", "want 1-40 letters and digits starting with a letter"},
		{"schema_extension_twice", jobYAML("schema_extensions: [{name: costCode, type: String}, {name: costCode, type: Integer}]"), "jobs[0].schema_extensions[1].name", "declared twice"},
		{"schema_extension_shadows_builtin", jobYAML("schema_extensions: [{name: city, type: String}]"), "jobs[0].schema_extensions[0].name", "maps to column city, which a built-in attribute uses"},
		{"managed_identity_client_id_not_guid", jobYAML("auth: {method: managed_identity, managed_identity_client_id: abc}"), "jobs[0].auth.managed_identity_client_id", "is not a GUID; want the user-assigned identity's client id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantProblem(t, problemsOf(t, tt.yaml), tt.key, tt.msg)
		})
	}
}

func TestLoad_duplicateNamesAndTenantSourcePairs(t *testing.T) {
	one := strings.TrimPrefix(jobYAML(), "jobs:\n")
	two := strings.TrimPrefix(jobYAML("tenant_id: CONTOSO.onmicrosoft.com"), "jobs:\n")
	ps := problemsOf(t, "jobs:\n"+one+two)
	want := map[string]string{
		"jobs[1].name":   `"nightly" is already used by jobs[0]`,
		"jobs[1].source": "already used by jobs[0]; two jobs would fight over the same users",
	}
	for _, p := range ps {
		if strings.Contains(p.Msg, want[p.Key]) {
			delete(want, p.Key)
		}
	}
	if len(want) > 0 {
		t.Errorf("missing problems %v in %v", want, ps)
	}
}

func TestLoad_reportsEveryProblemAtOnceInFileOrder(t *testing.T) {
	y := jobYAML("name: Bad Name", `schedule: "0 2 * *"`, "batch_size: 99", "bogus: 1", "cloud: mars")
	ps := problemsOf(t, y)
	keys := map[string]bool{}
	last := 0
	for _, p := range ps {
		keys[p.Key] = true
		if p.Line == 0 || p.Line < last {
			t.Errorf("problem %v out of file order (previous line %d)", p, last)
		}
		last = p.Line
	}
	for _, k := range []string{"jobs[0].name", "jobs[0].schedule", "jobs[0].batch_size", "jobs[0].bogus", "jobs[0].cloud"} {
		if !keys[k] {
			t.Errorf("missing problem for %s in %v", k, ps)
		}
	}
}

func TestLoad_unknownKeyCarriesLineNumber(t *testing.T) {
	ps := problemsOf(t, jobYAML("leaver:\n      actoin: delete"))
	for _, p := range ps {
		if p.Key == "jobs[0].leaver.actoin" {
			if p.Line != 8 || !strings.Contains(p.String(), "(line 8)") {
				t.Errorf("line = %d in %q, want 8", p.Line, p)
			}
			return
		}
	}
	t.Fatalf("no problem for jobs[0].leaver.actoin: %v", ps)
}

func TestLoad_neverEchoesSecretValues(t *testing.T) {
	const s = "Sup3rS3cretValue"
	cases := []string{
		jobYAML(`auth: {method: secret, client_id: ` + testClientID + `, client_secret: "` + s + `"}`),
		jobYAML("auth: {method: managed_identity, password: " + s + "}"),
		jobYAML("batch_size: " + s),                                      // mistyped field
		"database: {url: 'postgres://app:" + s + "@db/x'}\n" + jobYAML(), // password in URL
		"database: {url: 'host=db password=" + s + "'}\n" + jobYAML(),
		jobYAML("auth: {method: certificate, client_id: " + testClientID + ", pfx_file: /etc/passwd, pfx_password: " + s + "}"),
	}
	for _, y := range cases {
		_, err := Parse([]byte(y))
		if err == nil {
			t.Errorf("accepted:\n%s", y)
			continue
		}
		if strings.Contains(err.Error(), s) || strings.Contains(err.Error(), s[:7]) {
			t.Errorf("error echoes the secret:\n%v", err)
		}
	}
}

func TestLoad_databaseURLFromEnvironment(t *testing.T) {
	y := []byte("database: {url: 'postgres://file@db/x'}\n" + jobYAML())
	env := func(m map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
	}
	tests := []struct {
		name     string
		env      map[string]string
		url, src string
	}{
		{"file_when_no_env", nil, "postgres://file@db/x", "file"},
		{"DATABASE_URL_beats_file", map[string]string{"DATABASE_URL": "postgres://generic@db/x"}, "postgres://generic@db/x", "DATABASE_URL"},
		{"ENTRAPROV_DATABASE_URL_beats_DATABASE_URL", map[string]string{"DATABASE_URL": "postgres://generic@db/x", "ENTRAPROV_DATABASE_URL": "postgres://ours:pw@db/x"}, "postgres://ours:pw@db/x", "ENTRAPROV_DATABASE_URL"},
		{"empty_env_ignored", map[string]string{"ENTRAPROV_DATABASE_URL": ""}, "postgres://file@db/x", "file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := load("", y, env(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			if c.Database.URL != tt.url || c.Database.URLFrom != tt.src {
				t.Errorf("url=%q from %q, want %q from %q", c.Database.URL, c.Database.URLFrom, tt.url, tt.src)
			}
		})
	}
}

func TestLoad_fileErrors(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte("jobs: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p)
	if err == nil || !strings.Contains(err.Error(), "not valid YAML") || !strings.Contains(err.Error(), p) {
		t.Errorf("syntax error: %v", err)
	}
}

func TestLoad_exampleConfigIsValid(t *testing.T) {
	// The example in configs/ is documentation; it must stay loadable.
	p := filepath.Join("..", "..", "configs", "entraprov.example.yaml")
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	c, err := load(p, data, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Jobs) == 0 {
		t.Fatal("example has no jobs")
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"30d", 30 * 24 * time.Hour, true},
		{"1d12h", 36 * time.Hour, true},
		{"90s", 90 * time.Second, true},
		{"6h30m", 6*time.Hour + 30*time.Minute, true},
		{"0", 0, true},
		{"", 0, false},
		{"d", 0, false},
		{"30 days", 0, false},
		{"-1d", 0, false},
		{"1d-2h", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
	if s := (Duration{30 * 24 * time.Hour}).String(); s != "30d" {
		t.Errorf("String = %q, want 30d", s)
	}
}

func TestParseSchedule(t *testing.T) {
	after := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		spec string
		next time.Time
	}{
		{"0 2 * * *", time.Date(2026, 1, 2, 2, 0, 0, 0, time.Local)},
		{"30 0 2 * * *", time.Date(2026, 1, 2, 2, 0, 30, 0, time.Local)},
		{"CRON_TZ=Europe/Paris 0 2 * * *", time.Date(2026, 1, 2, 1, 0, 0, 0, time.UTC)},
		{"TZ=UTC   0 2 * * *", time.Date(2026, 1, 2, 2, 0, 0, 0, time.UTC)},
		{"CRON_TZ=UTC @daily", time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)},
		{"@every 6h", after.Add(6 * time.Hour)},
	}
	for _, tt := range tests {
		s, err := ParseSchedule(tt.spec)
		if err != nil {
			t.Errorf("ParseSchedule(%q): %v", tt.spec, err)
			continue
		}
		if got := s.Next(after); !got.Equal(tt.next) {
			t.Errorf("ParseSchedule(%q).Next = %v, want %v", tt.spec, got, tt.next)
		}
	}
}

func TestSecretRef_Read(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	file := filepath.Join(dir, "secret")
	if err := os.WriteFile(file, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "graph-secret"), []byte("from-credential\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CREDENTIALS_DIRECTORY", dir)
	t.Setenv("TEST_ENTRAPROV_SECRET", "from-env")

	for _, tt := range []struct {
		ref  SecretRef
		want string
	}{
		{SecretRef{File: file}, "from-file"},
		{SecretRef{Env: "TEST_ENTRAPROV_SECRET"}, "from-env"},
		{SecretRef{Credential: "graph-secret"}, "from-credential"},
	} {
		got, err := tt.ref.Read(ctx)
		if err != nil || got != tt.want {
			t.Errorf("%v.Read = %q, %v; want %q", tt.ref, got, err, tt.want)
		}
	}

	for _, tt := range []struct {
		ref  SecretRef
		want string
	}{
		{SecretRef{File: filepath.Join(dir, "nope")}, "nope: no such file"},
		{SecretRef{Env: "TEST_ENTRAPROV_UNSET"}, "environment variable TEST_ENTRAPROV_UNSET is not set"},
		{SecretRef{Credential: "missing"}, "credential missing"},
		{SecretRef{Env: "A", File: file}, "set exactly one"},
		{SecretRef{}, "no secret reference set"},
	} {
		_, err := tt.ref.Read(ctx)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v.Read error = %v, want it to contain %q", tt.ref, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "from-file") {
			t.Errorf("error leaks a secret: %v", err)
		}
	}

	t.Setenv("CREDENTIALS_DIRECTORY", "")
	if _, err := (SecretRef{Credential: "graph-secret"}).Read(ctx); err == nil || !strings.Contains(err.Error(), "LoadCredential=graph-secret") {
		t.Errorf("outside systemd: %v", err)
	}
}

func TestDatabase_ConnStringAndRedaction(t *testing.T) {
	t.Setenv("TEST_ENTRAPROV_DBPW", "p@ss w'rd")
	ctx := context.Background()
	d := Database{URL: "postgres://app@db:5432/entraprov", Password: SecretRef{Env: "TEST_ENTRAPROV_DBPW"}}
	got, err := d.ConnString(ctx)
	if err != nil || got != "postgres://app:p%40ss%20w%27rd@db:5432/entraprov" {
		t.Errorf("URL ConnString = %q, %v", got, err)
	}
	d.URL = "host=db dbname=entraprov"
	if got, err := d.ConnString(ctx); err != nil || got != `host=db dbname=entraprov password='p@ss w\'rd'` {
		t.Errorf("DSN ConnString = %q, %v", got, err)
	}
	for in, want := range map[string]string{
		"postgres://app:secret@db/x":   "postgres://app:xxxxx@db/x",
		"host=db password=secret":      "host=db password=xxxxx",
		"host=db password='se cret' x": "host=db password=xxxxx x",
		"postgres://app@db/x":          "postgres://app@db/x",
		"postgres://app@db/x?sslmode=require&sslpassword=s&application_name=a": "postgres://app@db/x?sslmode=require&sslpassword=xxxxx&application_name=a",
		"postgres://app:p@db/x?password=s":                                     "postgres://app:xxxxx@db/x?password=xxxxx",
		"postgres://app@db/x?pass%77ord=s&oauth_client_secret=o":               "postgres://app@db/x?pass%77ord=xxxxx&oauth_client_secret=xxxxx",
		"host=db sslpassword='a b' dbname=x":                                   "host=db sslpassword=xxxxx dbname=x",
		"postgres://app@db/x?passfile=/p":                                      "postgres://app@db/x?passfile=/p",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
	c := Config{Database: Database{URL: "postgres://app:secret@db/x"}}
	if r := c.Redacted(); strings.Contains(r.Database.URL, "secret") || !strings.Contains(c.Database.URL, "secret") {
		t.Errorf("Redacted: copy %q, original %q", r.Database.URL, c.Database.URL)
	}
}

func TestJob_EndpointsAndSourceParts(t *testing.T) {
	j := DefaultJob()
	j.Cloud = "usgov"
	if a, g := j.Endpoints(); a != "https://login.microsoftonline.us/" || g != "https://graph.microsoft.us/v1.0" {
		t.Errorf("usgov endpoints = %s %s", a, g)
	}
	j.AuthorityHost, j.GraphURL = "https://127.0.0.1:8443/", "https://127.0.0.1:8443/v1.0/"
	if a, g := j.Endpoints(); a != j.AuthorityHost || g != "https://127.0.0.1:8443/v1.0" {
		t.Errorf("override endpoints = %s %s", a, g)
	}
	if p := j.SourceParts(); len(p) != 2 || p[0] != "entraprov" || p[1] != "desired_users" {
		t.Errorf("SourceParts = %q", p)
	}
}

func FuzzLoad(f *testing.F) {
	f.Add([]byte(jobYAML()))
	f.Add([]byte(jobYAML("leaver: {action: delete, delete_after: 30d}", `schedule: "CRON_TZ=Europe/Paris 0 2 * * *"`)))
	f.Add([]byte("metrics: {listen: \"\"}\ndatabase: {password: {env: PW}}\n" + jobYAML("catch_up: false", "deletion_threshold: {max_count: 0}", "jitter: 90s",
		"auth: {method: managed_identity}", "password: {force_change_next_sign_in: false}", "allowed_domains: [a.com, B.org]")))
	f.Add([]byte("x: &a [*a]\n"))
	f.Add([]byte("jobs:\n  - <<: {name: a}\n    auth: {client_secret: x}\n"))
	f.Add([]byte(jobYAML(`schedule: "TZ=UTC"`)))
	f.Add([]byte("database: {url: 'postgres://%zz'}\n"))
	f.Add([]byte(jobYAML("webhook: {url: {env: WEBHOOK_URL}}", "unsafe_custom_endpoints: true", "graph_url: https://proxy.example/v1.0")))
	f.Add([]byte(jobYAML("webhook: {url: 'https://hooks.example.com/x'}", "authority_host: https://127.0.0.1:8443/")))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if (c == nil) == (err == nil) {
			t.Fatalf("want exactly one of config or error: %v, %v", c, err)
		}
		if c == nil {
			return
		}
		// Whatever loads must validate: Load's report is complete.
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted a config Validate rejects: %v", err)
		}
		// The effective config (worker config show) loads back to itself:
		// defaults and explicit zero values survive the round trip.
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		c2, err := Parse(out)
		if err != nil {
			t.Fatalf("effective config does not load back: %v\n%s", err, out)
		}
		c.Database.URLFrom, c2.Database.URLFrom = "", ""
		if !reflect.DeepEqual(c, c2) {
			t.Fatalf("round trip changed the config:\n%+v\n%+v", c, c2)
		}
	})
}

// TestCredentialPathByHand: run by hand (worker check on the host), a
// {credential: …} reference says how to set $CREDENTIALS_DIRECTORY, and
// once set it names the file in that directory.
func TestCredentialPathByHand(t *testing.T) {
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	_, err := CredentialPath("graph-secret")
	if err == nil || !strings.Contains(err.Error(), "set it to the directory holding the file named graph-secret") ||
		!strings.Contains(err.Error(), "CREDENTIALS_DIRECTORY=/etc/entraprov/credentials worker check") {
		t.Fatalf("unset: %v", err)
	}
	t.Setenv("CREDENTIALS_DIRECTORY", "/etc/entraprov/credentials")
	if p, err := CredentialPath("graph-secret"); err != nil || p != "/etc/entraprov/credentials/graph-secret" {
		t.Fatalf("set: %q, %v", p, err)
	}
}
