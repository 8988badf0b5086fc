package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The quarantine gauge is served from the registry with the other
// collectors under the name configs/alerts.yml alerts on.
func TestSetQuarantined(t *testing.T) {
	m := New()
	m.SetQuarantined("nightly", true)
	m.SetQuarantined("daily", true)
	m.SetQuarantined("daily", false)
	want := `
# HELP entraprov_job_quarantined 1 while the job is quarantined after repeated failed runs (its scheduled runs back off), else 0.
# TYPE entraprov_job_quarantined gauge
entraprov_job_quarantined{job="daily"} 0
entraprov_job_quarantined{job="nightly"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "entraprov_job_quarantined"); err != nil {
		t.Fatal(err)
	}
	// A job removed by a reload must not keep a quarantine alert firing.
	m.ForgetJob("nightly")
	want = `
# HELP entraprov_job_quarantined 1 while the job is quarantined after repeated failed runs (its scheduled runs back off), else 0.
# TYPE entraprov_job_quarantined gauge
entraprov_job_quarantined{job="daily"} 0
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "entraprov_job_quarantined"); err != nil {
		t.Fatalf("after ForgetJob: %v", err)
	}
}
