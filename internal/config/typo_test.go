package config

import (
	"errors"
	"strings"
	"testing"
)

// A typo'd key is one problem: the unknown key with its "did you mean",
// not also "required" (or the children's problems) under the real name.
func TestLoad_typoReportedOnce(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, key string
	}{
		{"required_scalar", strings.Replace(jobYAML(), "tenant_id:", "tennant_id:", 1), "jobs[0].tennant_id"},
		{"required_mapping", strings.Replace(jobYAML(), "auth:", "auht:", 1), "jobs[0].auht"},
		{"required_list", strings.Replace(jobYAML(), "allowed_domains:", "allowed_domain:", 1), "jobs[0].allowed_domain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps := problemsOf(t, tc.yaml)
			if len(ps) != 1 || ps[0].Key != tc.key || !strings.Contains(ps[0].Msg, "did you mean") {
				t.Fatalf("problems %v; want one, on %s, with a suggestion", ps, tc.key)
			}
		})
	}
}

// A database URL from the environment has no line in the file: its
// problem names the variable.
func TestLoad_envURLProblemNamesTheVariable(t *testing.T) {
	for _, name := range []string{EnvDatabaseURL, EnvDatabaseURLFallback} {
		env := map[string]string{name: "mysql://app@db.example.com/x"}
		_, err := load("worker.yaml", []byte("database:\n  max_conns: 4\n"+jobYAML()), func(k string) (string, bool) {
			v, ok := env[k]
			return v, ok
		})
		var ve *ValidationError
		if !errors.As(err, &ve) || len(ve.Problems) != 1 || ve.Problems[0].Key != "$"+name || ve.Problems[0].Line != 0 {
			t.Fatalf("%s: %v; want one problem keyed $%s without a line", name, err, name)
		}
	}
}
