// Package metrics owns the worker's Prometheus collectors and the small HTTP
// server that exposes them (/metrics) together with a health check
// (/healthz).
//
// Collectors are fed from finished runs (store.Run), so the reconcile engine
// stays free of any metrics dependency. The package must not decide anything
// about runs or schedules: it only counts what it is told. It never exports a
// label that could carry a secret or personal data (no UPNs, no object ids):
// labels are job names, statuses and actions only.
package metrics

import (
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/entraprov/entraprov/internal/store"
)

const namespace = "entraprov"

// Metrics holds the collectors of one worker process on its own registry
// (not the global one, so tests and several instances never collide).
type Metrics struct {
	reg *prometheus.Registry

	runs          *prometheus.CounterVec
	operations    *prometheus.CounterVec
	graphRequests *prometheus.CounterVec
	graphBatches  *prometheus.CounterVec
	throttled     *prometheus.CounterVec
	retries       *prometheus.CounterVec
	runDuration   *prometheus.HistogramVec
	lastSuccess   *prometheus.GaugeVec
	lastRun       *prometheus.GaugeVec
	nextRun       *prometheus.GaugeVec
	running       *prometheus.GaugeVec
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
			Help: "Per-user operations recorded by runs, by job, action and status.",
		}, []string{"job", "action", "status"}),
		graphRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "graph_requests_total",
			Help: "HTTP requests sent to Microsoft Graph (a $batch counts once), by job.",
		}, []string{"job"}),
		graphBatches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "graph_batches_total",
			Help: "JSON $batch requests sent to Microsoft Graph, by job.",
		}, []string{"job"}),
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "graph_throttled_total",
			Help: "Requests or $batch steps answered 429 by Microsoft Graph, by job.",
		}, []string{"job"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "graph_retries_total",
			Help: "Requests or $batch steps sent again after a throttle, 5xx or network error, by job.",
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
			Help: "Unix time at which the job's last succeeded run finished.",
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
	}
	m.reg.MustRegister(m.runs, m.operations, m.graphRequests, m.graphBatches, m.throttled, m.retries,
		m.runDuration, m.lastSuccess, m.lastRun, m.nextRun, m.running,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// Registry is the registry the collectors live on (to add more or gather).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// ObserveRun counts a finished run: its status, duration, Graph traffic and
// per-action operation counts. A run still "running" (the engine returned
// without finishing it) is counted under its status as well.
func (m *Metrics) ObserveRun(r store.Run) {
	job := r.Job
	m.runs.WithLabelValues(job, r.Status).Inc()
	end := time.Now()
	if r.FinishedAt != nil {
		end = *r.FinishedAt
	}
	if !r.StartedAt.IsZero() && !end.Before(r.StartedAt) {
		m.runDuration.WithLabelValues(job).Observe(end.Sub(r.StartedAt).Seconds())
	}
	m.lastRun.WithLabelValues(job).Set(float64(end.Unix()))
	if r.Status == store.RunSucceeded {
		m.lastSuccess.WithLabelValues(job).Set(float64(end.Unix()))
	}
	add(m.graphRequests.WithLabelValues(job), r.Stats.Requests)
	add(m.graphBatches.WithLabelValues(job), r.Stats.Batches)
	add(m.throttled.WithLabelValues(job), r.Stats.Throttled)
	add(m.retries.WithLabelValues(job), r.Stats.Retried)
	for key, n := range r.Counts {
		action, status, ok := SplitCountKey(key)
		if !ok {
			continue
		}
		add(m.operations.WithLabelValues(job, action, status), n)
	}
}

// ObserveSkipped counts an occurrence this process skipped (the job was
// still running) as a run with status skipped.
func (m *Metrics) ObserveSkipped(job string) {
	m.runs.WithLabelValues(job, store.RunSkipped).Inc()
}

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
}

// SplitCountKey reads an operation count key of store.Run.Counts: either
// "action/status" or "action.status" or "action:status". Keys without a
// separator are totals (per action or per status alone) and are not
// operation counts by action and status.
func SplitCountKey(key string) (action, status string, ok bool) {
	i := strings.IndexAny(key, "/.:")
	if i <= 0 || i == len(key)-1 {
		return "", "", false
	}
	return key[:i], key[i+1:], true
}

func add(c prometheus.Counter, n int) {
	if n > 0 {
		c.Add(float64(n))
	}
}
