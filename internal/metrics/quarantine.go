package metrics

import "github.com/prometheus/client_golang/prometheus"

// newQuarantined is entraprov_job_quarantined{job}, set by the daemon from
// the quarantine decision after each run (and from job_state at start).
func newQuarantined() *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "job_quarantined",
		Help: "1 while the job is quarantined after repeated failed runs (its scheduled runs back off), else 0.",
	}, []string{"job"})
}

// SetQuarantined publishes whether job is quarantined; ForgetJob (a job
// removed by a reload) deletes its series.
func (m *Metrics) SetQuarantined(job string, on bool) {
	v := 0.0
	if on {
		v = 1
	}
	m.quarantined.WithLabelValues(job).Set(v)
}
