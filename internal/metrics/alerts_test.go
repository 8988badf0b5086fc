package metrics

import (
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

type alertRule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type alertFile struct {
	Groups []struct {
		Name  string      `yaml:"name"`
		Rules []alertRule `yaml:"rules"`
	} `yaml:"groups"`
}

// configs/alerts.yml is a well-formed Prometheus rule file covering the
// issue's alerts, and names only metrics the worker exports; when promtool
// is installed (Debian: apt-get install prometheus) it checks the file and
// runs the unit tests in configs/alerts_test.yml.
func TestAlertRules(t *testing.T) {
	data, err := os.ReadFile("../../configs/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var f alertFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	if len(f.Groups) == 0 {
		t.Fatal("alerts.yml: no rule groups")
	}
	exported := servedNames(t)
	metricRef := regexp.MustCompile(`\bentraprov_[a-z_]+`)
	var alerts []string
	for _, g := range f.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("group %q: want a name and rules", g.Name)
		}
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			if !regexp.MustCompile(`^[A-Z][A-Za-z0-9]+$`).MatchString(r.Alert) {
				t.Errorf("alert %q: want a CamelCase name", r.Alert)
			}
			if strings.TrimSpace(r.Expr) == "" || strings.Count(r.Expr, "(") != strings.Count(r.Expr, ")") {
				t.Errorf("%s: empty or unbalanced expr %q", r.Alert, r.Expr)
			}
			if r.For != "" {
				if _, err := time.ParseDuration(r.For); err != nil {
					t.Errorf("%s: for %q: %v", r.Alert, r.For, err)
				}
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("%s: severity %q; want warning or critical", r.Alert, s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: want summary and description annotations", r.Alert)
			}
			refs := metricRef.FindAllString(r.Expr, -1)
			if len(refs) == 0 {
				t.Errorf("%s: uses no entraprov metric", r.Alert)
			}
			for _, name := range refs {
				if !slices.Contains(exported, name) {
					t.Errorf("%s: metric %s is not exported by the worker", r.Alert, name)
				}
			}
		}
	}
	for _, want := range []string{"EntraprovRunBlocked", "EntraprovRunFailed", "EntraprovJobQuarantined",
		"EntraprovNoSuccessIn26h", "EntraprovThrottlingHigh", "EntraprovCredentialExpiring", "EntraprovJobsQueuedLong"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("alert %s missing (have %v)", want, alerts)
		}
	}

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Log("promtool not on PATH: YAML structure and metric names checked only")
		return
	}
	out, err := exec.Command(promtool, "check", "rules", "../../configs/alerts.yml").CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	t.Logf("promtool: %s", strings.TrimSpace(string(out)))
	// configs/alerts_test.yml feeds series and expects each alert to fire
	// (or not) at given times.
	cmd := exec.Command(promtool, "test", "rules", "alerts_test.yml")
	cmd.Dir = "../../configs"
	out, err = cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
	t.Logf("promtool: %s", strings.TrimSpace(string(out)))
}
