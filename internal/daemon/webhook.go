package daemon

import (
	"context"
	"fmt"
	esync "github.com/entraprov/entraprov/internal/sync"
	"os"
	"sync"
	"time"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/jobs"
	"github.com/entraprov/entraprov/internal/store"
	"github.com/entraprov/entraprov/internal/webhook"
)

// hookState remembers, per job, whether the last event sent reported a
// problem, so the next good run is sent as a recovery. It is per process:
// after a restart the first good run of a job is not reported.
type hookState struct {
	mu      sync.Mutex
	unwell  map[string]bool
	sender  *webhook.Sender
	pending sync.WaitGroup
}

// sendWebhook posts the event a finished occurrence calls for, if the job
// has a webhook, in the background: delivery (with its retries) must not
// hold up the scheduler.
func (d *workerd) sendWebhook(res jobs.Result) {
	if res.Skipped || res.Run.ID == 0 || res.Run.Mode == string(esync.ModePlan) {
		return
	}
	d.mu.Lock()
	var job config.Job
	for _, j := range d.cfg.Jobs {
		if j.Name == res.Job {
			job = j
		}
	}
	policy := jobs.PolicyFrom(d.cfg.Quarantine)
	d.mu.Unlock()
	if job.Webhook.URL.IsZero() {
		return
	}
	h := d.hooks
	h.mu.Lock()
	entered := res.Quarantine != nil && res.Quarantine.Until != nil && res.Quarantine.Failures == policy.AfterFailures
	ev, send := webhook.EventFor(!h.unwell[res.Job], string(res.Run.Status), entered)
	if send {
		h.unwell[res.Job] = ev != webhook.EventRecovered
	}
	h.mu.Unlock()
	if !send {
		return
	}
	p := payloadFor(ev, res.Run, res.Quarantine)
	p.Host, _ = os.Hostname()
	h.pending.Add(1)
	go func() {
		defer h.pending.Done()
		budget := time.Duration(job.Webhook.Retries+1)*job.Webhook.Timeout.Duration + time.Minute
		ctx, cancel := context.WithTimeout(context.Background(), budget)
		defer cancel()
		// Read at each event, like the Graph credential: a rotated URL file
		// applies without a reload. The URL may hold a token: not logged.
		target, err := job.Webhook.URL.Resolve(ctx)
		if err == nil {
			if msg := config.WebhookURLProblem(target, false); msg != "" {
				err = fmt.Errorf("webhook url (%s): %s", job.Webhook.URL, msg)
			}
		}
		if err != nil {
			d.log.Error("webhook not delivered", "job", res.Job, "event", ev, "run_id", res.Run.ID, "err", err)
			return
		}
		if err := h.sender.Send(ctx, target, job.Webhook.Timeout.Duration, job.Webhook.Retries, p); err != nil {
			d.log.Error("webhook not delivered", "job", res.Job, "event", ev, "run_id", res.Run.ID, "err", err)
		}
	}()
}

func payloadFor(ev webhook.Event, run store.Run, q *jobs.QuarantineDecision) webhook.Payload {
	started := run.StartedAt
	p := webhook.Payload{Event: ev, Job: run.Job, RunID: run.ID, Status: string(run.Status), Trigger: run.Trigger,
		FinishedAt: run.FinishedAt, Counts: run.Counts.Map(), Error: store.FirstLine(run.ErrorSummary, 500),
		Inspect: fmt.Sprintf("worker show %d", run.ID)}
	if !started.IsZero() {
		p.StartedAt = &started
	}
	if q != nil && q.Until != nil {
		p.Quarantine = &webhook.Quarantine{Failures: q.Failures, Until: *q.Until, Reason: q.Reason}
	}
	return p
}
