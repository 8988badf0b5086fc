// Package metrics owns the worker's Prometheus collectors and the small HTTP
// server that exposes them (/metrics) together with a health check
// (/healthz).
//
// Collectors are fed from finished runs (store.Run) and, live, by the
// directory client's observer hook (Graph), so neither the reconcile engine
// nor the directory client depends on Prometheus. The package must not decide anything
// about runs or schedules: it only counts what it is told. It never exports a
// label that could carry a secret or personal data (no UPNs, no object ids):
// labels are job names, statuses and actions only.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/entraprov/entraprov/internal/store"
	esync "github.com/entraprov/entraprov/internal/sync"
)

const namespace = "entraprov"

// Metrics holds the collectors of one worker process on its own registry
// (not the global one, so tests and several instances never collide).
type Metrics struct {
	reg *prometheus.Registry

	runs          *prometheus.CounterVec
	operations    *prometheus.CounterVec
	graphRequests *prometheus.CounterVec
	graphLatency  *prometheus.HistogramVec
	throttled     *prometheus.CounterVec
	retries       *prometheus.CounterVec
	runDuration   *prometheus.HistogramVec
	lastSuccess   *prometheus.GaugeVec
	lastRun       *prometheus.GaugeVec
	nextRun       *prometheus.GaugeVec
	running       *prometheus.GaugeVec
	backingOff    *prometheus.GaugeVec
	quarantined   *prometheus.GaugeVec // quarantine.go
	// credentialExpiry: credential.go
	credentialExpiry *prometheus.GaugeVec
	// queued and queueWait: the max_concurrent_jobs run queue.
	queued    prometheus.Gauge
	queueWait prometheus.Histogram
}

// New registers the worker's collectors, plus the Go runtime and process
// collectors, on a fresh registry.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "runs_total",
			Help: "Runs finished, by job and final status (succeeded, partial, failed, blocked, interrupted, skipped).",
		}, []string{"job", "status"}),
		operations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "operations_total",
			Help: "Directory writes with a final result, by job, action (create, update, delete, restore, set_manager, remove_manager, add_member, remove_member) and status (succeeded, failed, not_started).",
		}, []string{"job", "action", "status"}),
		graphRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "graph_requests_total",
			Help: "HTTP requests sent to Microsoft Graph, by job, kind (batch, read) and HTTP status code (0: no answer).",
		}, []string{"job", "kind", "code"}),
		graphLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "graph_request_duration_seconds",
			Help:    "Duration of HTTP requests to Microsoft Graph, by job and kind.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}, []string{"job", "kind"}),
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "graph_throttled_total",
			Help: "Requests or $batch steps answered 429 (throttled) by Microsoft Graph, by job.",
		}, []string{"job"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "graph_retries_total",
			Help: "$batch steps sent again after a throttle, 5xx, network error or eventual-consistency 404, by job (counted when the run ends).",
		}, []string{"job"}),
		runDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "run_duration_seconds",
			Help: "Wall-clock duration of finished runs, by job.",
			// From a no-op run (under a second) to a full first load of
			// 100,000 users at the write quota (well over an hour).
			Buckets: []float64{0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200},
		}, []string{"job"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "last_success_timestamp_seconds",
			Help: "Unix time at which the job's last completed run (succeeded, or partial: some users failed) finished.",
		}, []string{"job"}),
		lastRun: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "last_run_timestamp_seconds",
			Help: "Unix time at which the job's last run (any status) finished.",
		}, []string{"job"}),
		nextRun: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "next_run_timestamp_seconds",
			Help: "Unix time of the job's next scheduled occurrence.",
		}, []string{"job"}),
		running: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "run_in_progress",
			Help: "1 while this process runs the job, else 0.",
		}, []string{"job"}),
		backingOff: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "users_backing_off",
			Help: "Users the job's last completed apply run skipped because their writes failed the same way run after run (worker show --stuck lists them).",
		}, []string{"job"}),
	}
	m.quarantined = newQuarantined()
	m.credentialExpiry = newCredentialExpiry()
	m.queued = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "jobs_queued",
		Help: "Due occurrences waiting for a run slot: max_concurrent_jobs runs are in flight.",
	})
	m.queueWait = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Name: "job_queue_wait_seconds",
		Help: "How long each started run waited for a run slot (max_concurrent_jobs) after it was due.",
		// From no wait to a night's runs queued behind each other.
		Buckets: []float64{0, 1, 10, 60, 300, 900, 1800, 3600, 7200, 14400},
	})
	m.reg.MustRegister(m.runs, m.quarantined, m.credentialExpiry, m.queued, m.queueWait, m.operations, m.graphRequests, m.graphLatency, m.throttled, m.retries,
		m.runDuration, m.lastSuccess, m.lastRun, m.nextRun, m.running, m.backingOff,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// Registry is the registry the collectors live on (to add more or gather).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// ObserveRun counts a finished run: its status, duration and retries. Graph
// requests, throttling and operations are counted live by Graph(job).
func (m *Metrics) ObserveRun(r store.Run) {
	job := r.Job
	m.runs.WithLabelValues(job, string(r.Status)).Inc()
	end := time.Now()
	if r.FinishedAt != nil {
		end = *r.FinishedAt
	}
	if !r.StartedAt.IsZero() && !end.Before(r.StartedAt) {
		m.runDuration.WithLabelValues(job).Observe(end.Sub(r.StartedAt).Seconds())
	}
	m.lastRun.WithLabelValues(job).Set(float64(end.Unix()))
	// A partial run completed: the users that failed are another
	// alert's business (EntraprovOperationsFailing, worker show --stuck).
	// Counting it as no success would page every night for one HR typo.
	// job_state.last_success_at counts it alike.
	if r.Status == store.RunSucceeded || r.Status == store.RunPartial {
		m.lastSuccess.WithLabelValues(job).Set(float64(end.Unix()))
	}
	if r.Mode == string(esync.ModeApply) && (r.Status == store.RunSucceeded || r.Status == store.RunPartial) {
		m.backingOff.WithLabelValues(job).Set(float64(r.Counts.BackingOff))
	}
	if r.Stats.Retried > 0 {
		m.retries.WithLabelValues(job).Add(float64(r.Stats.Retried))
	}
}

// ObserveSkipped counts an occurrence this process skipped (the job was
// still running) as a run with status skipped.
func (m *Metrics) ObserveSkipped(job string) {
	m.runs.WithLabelValues(job, string(store.RunSkipped)).Inc()
}

// SetQueued publishes the number of occurrences waiting for a run slot.
func (m *Metrics) SetQueued(n int) { m.queued.Set(float64(n)) }

// ObserveQueueWait records how long a started run waited for its slot.
func (m *Metrics) ObserveQueueWait(d time.Duration) { m.queueWait.Observe(d.Seconds()) }

// SetNextRun publishes the job's next scheduled time (zero: none).
func (m *Metrics) SetNextRun(job string, t time.Time) {
	if t.IsZero() {
		m.nextRun.DeleteLabelValues(job)
		return
	}
	m.nextRun.WithLabelValues(job).Set(float64(t.Unix()))
}

// SetRunning publishes whether this process is running the job now.
func (m *Metrics) SetRunning(job string, running bool) {
	v := 0.0
	if running {
		v = 1
	}
	m.running.WithLabelValues(job).Set(v)
}

// ForgetJob drops the per-job gauges of a job removed by a reload, so a
// dashboard does not keep showing its next run. Counters are kept: they are
// history.
func (m *Metrics) ForgetJob(job string) {
	m.nextRun.DeleteLabelValues(job)
	m.running.DeleteLabelValues(job)
	m.backingOff.DeleteLabelValues(job)
	// A removed job's last quarantine value would keep its alert firing.
	m.quarantined.DeleteLabelValues(job)
	// Nor an expiring credential it no longer uses.
	m.credentialExpiry.DeletePartialMatch(prometheus.Labels{"job": job})
}
