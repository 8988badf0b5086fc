package metrics

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/store"
)

// servedNames are the series names a scrape of New()'s registry can hold,
// every collector fed once (a vector without a series is not gathered):
// a histogram family serves _bucket, _sum and _count.
func servedNames(t *testing.T) []string {
	t.Helper()
	m := New()
	now := time.Now()
	m.ObserveRun(store.Run{Job: "j", Mode: "apply", Status: store.RunSucceeded, StartedAt: now.Add(-time.Second), FinishedAt: &now,
		Stats: store.RunStats{Retried: 1}, Counts: store.RunCounts{BackingOff: 1}})
	m.SetNextRun("j", now.Add(time.Hour))
	m.SetRunning("j", true)
	m.ObserveQueueWait(time.Second)
	m.SetQuarantined("j", true)
	m.SetCredentialExpiry("j", CredentialCertificate, now.Add(time.Hour))
	g := m.Graph("j")
	g.GraphRequest("batch", 200, time.Millisecond)
	g.StepDone(directory.OpCreate, directory.Succeeded, 201)
	g.Throttled(1)
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range fams {
		names = append(names, f.GetName())
		if f.GetType() == dto.MetricType_HISTOGRAM {
			names = append(names, f.GetName()+"_bucket", f.GetName()+"_sum", f.GetName()+"_count")
		}
	}
	return names
}

type dashPanel struct {
	Title   string      `json:"title"`
	Type    string      `json:"type"`
	Panels  []dashPanel `json:"panels"` // a collapsed row's
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

type dashboard struct {
	UID        string      `json:"uid"`
	Title      string      `json:"title"`
	Panels     []dashPanel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

// dashboardExprs are the PromQL expressions of configs/grafana-dashboard.json
// by where they appear: every panel target and every query variable.
func dashboardExprs(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile("../../configs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	if d.UID == "" || d.Title == "" || len(d.Panels) == 0 {
		t.Fatalf("dashboard without uid, title or panels: %+v", d)
	}
	exprs := map[string]string{}
	var walk func([]dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for i, tg := range p.Targets {
				exprs[p.Title+" #"+string(rune('A'+i))] = tg.Expr
			}
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			var s string
			if json.Unmarshal(v.Query, &s) != nil {
				t.Fatalf("variable %s: query is neither an object nor a string", v.Name)
			}
			q.Query = s
		}
		exprs["variable "+v.Name] = q.Query
	}
	return exprs
}

var metricRef = regexp.MustCompile(`\bentraprov_[a-z_]+\b`)

// Every query of the Grafana dashboard names only metrics the worker
// serves, and the dashboard shows what the issue asks for: runs by status,
// writes by action and status, throttling, users backing off, last
// success, quarantine and credential expiry.
func TestDashboardQueriesNameExportedMetrics(t *testing.T) {
	served := servedNames(t)
	used := map[string]bool{}
	for where, e := range dashboardExprs(t) {
		if strings.TrimSpace(e) == "" || strings.Count(e, "(") != strings.Count(e, ")") || strings.Count(e, "{") != strings.Count(e, "}") {
			t.Errorf("%s: empty or unbalanced expression %q", where, e)
		}
		refs := metricRef.FindAllString(e, -1)
		if len(refs) == 0 {
			t.Errorf("%s: names no entraprov metric: %q", where, e)
		}
		for _, name := range refs {
			used[name] = true
			if !slices.Contains(served, name) {
				t.Errorf("%s: metric %s is not exported by the worker", where, name)
			}
		}
	}
	for _, want := range []string{"entraprov_runs_total", "entraprov_operations_total", "entraprov_graph_throttled_total",
		"entraprov_users_backing_off", "entraprov_last_success_timestamp_seconds", "entraprov_job_quarantined",
		"entraprov_credential_expiry_timestamp_seconds", "entraprov_jobs_queued", "entraprov_job_queue_wait_seconds_bucket"} {
		if !used[want] {
			t.Errorf("the dashboard does not show %s", want)
		}
	}
}

// When promtool is installed (Debian: apt-get install prometheus), each
// dashboard expression, with Grafana's variables given values, is checked
// as PromQL by `promtool check rules` (one recording rule per expression).
func TestDashboardQueriesParseAsPromQL(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Log("promtool not on PATH: metric names checked only (TestDashboardQueriesNameExportedMetrics)")
		return
	}
	vars := strings.NewReplacer("$__rate_interval", "5m", "$__range", "1h", "$job", ".*")
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	n := 0
	for where, e := range dashboardExprs(t) {
		if strings.HasPrefix(where, "variable ") {
			// label_values() is Grafana's, not PromQL: check its argument.
			e = strings.TrimSuffix(strings.TrimPrefix(e, "label_values("), ", job)")
		}
		n++
		q, _ := json.Marshal(vars.Replace(e))
		fmt.Fprintf(&b, "      - record: dashboard:expr_%d\n        expr: %s\n", n, q)
	}
	path := filepath.Join(t.TempDir(), "dashboard-rules.yml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s\n%s", err, out, b.String())
	}
	t.Logf("promtool: %d expressions: %s", n, strings.TrimSpace(string(out)))
}
