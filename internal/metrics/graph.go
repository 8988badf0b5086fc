package metrics

import (
	"strconv"
	"time"

	"github.com/entraprov/entraprov/internal/directory"
)

// Graph returns the observer a job's directory client reports to
// (directory.Options.Metrics): every HTTP exchange, every final step
// outcome and every 429, as they happen.
func (m *Metrics) Graph(job string) directory.Metrics { return graphObserver{m: m, job: job} }

type graphObserver struct {
	m   *Metrics
	job string
}

func (g graphObserver) GraphRequest(kind string, status int, d time.Duration) {
	g.m.graphRequests.WithLabelValues(g.job, kind, strconv.Itoa(status)).Inc()
	g.m.graphLatency.WithLabelValues(g.job, kind).Observe(d.Seconds())
}

func (g graphObserver) StepDone(kind directory.OpKind, outcome directory.Outcome, _ int) {
	g.m.operations.WithLabelValues(g.job, string(kind), string(outcome)).Inc()
}

func (g graphObserver) Throttled(n int) {
	if n > 0 {
		g.m.throttled.WithLabelValues(g.job).Add(float64(n))
	}
}
