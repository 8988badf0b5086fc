package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/store"
	esync "github.com/entraprov/entraprov/internal/sync"
)

// Quarantine: a job whose runs keep failing (a revoked consent, an expired
// secret, a broken source view) stops hammering Graph and the logs on every
// occurrence. After Policy.AfterFailures consecutive failed runs its
// scheduled occurrences are skipped — recorded as skipped runs with the
// reason — until a wait that doubles from the schedule's interval up to
// Policy.MaxBackoff has passed; the occurrence after the wait runs as a
// probe. A run that does not fail ends the quarantine, and so do a manual
// run (`worker sync`) and `worker quarantine release`. The failure count is
// derived from the run history since the last release rather than kept as a
// counter, so it is the same whichever process (daemon or CLI) ran the job.

// QuarantineStore is what quarantine reads and writes (*store.Store).
type QuarantineStore interface {
	GetJobState(ctx context.Context, job string) (store.JobState, error)
	RecentRunHealth(ctx context.Context, job string, limit int) ([]store.RunHealth, error)
	SetQuarantine(ctx context.Context, job string, failures int, until *time.Time, reason string) error
}

// Policy says when a job is quarantined and how long it then waits.
type Policy struct {
	// AfterFailures consecutive failed runs quarantine the job; 0: never.
	AfterFailures int
	// FailureShare: a run whose failed operations are more than this share
	// (0..1) of the operations it sent counts as failed, even if its
	// status is partial.
	FailureShare float64
	// MaxBackoff caps the wait between runs of a quarantined job.
	MaxBackoff time.Duration
}

// PolicyFrom converts the configuration's quarantine section.
func PolicyFrom(q config.Quarantine) Policy {
	return Policy{AfterFailures: q.AfterFailures, FailureShare: float64(q.FailurePercent) / 100,
		MaxBackoff: q.MaxBackoff.Duration}
}

// QuarantineDecision is the job's quarantine state after a run.
type QuarantineDecision struct {
	// Failures is the number of consecutive failed runs, newest first.
	Failures int
	// Until is the earliest time a scheduled occurrence runs again; nil
	// when the job is not quarantined.
	Until *time.Time
	// Reason says why, naming the last failure (empty when not quarantined).
	Reason string
}

// runFailed reports whether a finished apply run counts as a failure and why.
func runFailed(h store.RunHealth, p Policy) (bool, string) {
	switch h.Status {
	case store.RunFailed:
		return true, fmt.Sprintf("run %d failed: %s", h.ID, h.ErrorSummary)
	case store.RunPartial:
		sent := h.Succeeded + h.Failed
		if sent > 0 && float64(h.Failed) > p.FailureShare*float64(sent) {
			return true, fmt.Sprintf("run %d: %d of %d operations failed (more than %.0f%%): %s",
				h.ID, h.Failed, sent, p.FailureShare*100, h.ErrorSummary)
		}
	}
	return false, ""
}

// failureStreak counts the failed runs at the head of runs (newest first)
// and returns the reason of the newest one.
func failureStreak(runs []store.RunHealth, p Policy) (n int, reason string) {
	for _, h := range runs {
		failed, why := runFailed(h, p)
		if !failed {
			break
		}
		if n == 0 {
			reason = why
		}
		n++
	}
	return n, reason
}

// backoff is the wait after the failures-th consecutive failure of a job
// whose schedule fires every interval: twice the interval when the
// quarantine begins, doubling with each further failure, capped at
// p.MaxBackoff (but never shorter than one interval, which would be no
// back-off at all).
func backoff(interval time.Duration, failures int, p Policy) time.Duration {
	if interval <= 0 {
		interval = time.Minute
	}
	if interval >= p.MaxBackoff {
		return interval
	}
	d := 2 * interval
	for i := p.AfterFailures; i < failures && d < p.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, p.MaxBackoff)
}

// decide is the pure quarantine rule: runs are the job's last runs (newest
// first, since its last release), anchor the time the latest run was
// scheduled for (or started at), interval the schedule's period.
func decide(runs []store.RunHealth, p Policy, anchor time.Time, interval time.Duration) QuarantineDecision {
	n, why := failureStreak(runs, p)
	d := QuarantineDecision{Failures: n}
	if p.AfterFailures <= 0 || n < p.AfterFailures {
		return d
	}
	until := anchor.Add(backoff(interval, n, p))
	d.Until = &until
	d.Reason = fmt.Sprintf("%d consecutive failed runs; last: %s", n, oneLine(why, 300))
	return d
}

// AfterRun applies the quarantine rule to job after one of its runs ended
// (anchor: the occurrence the run served, or when it started) and records
// the result in job_state. interval is the schedule's period (Interval).
func AfterRun(ctx context.Context, qs QuarantineStore, p Policy, job string, anchor time.Time, interval time.Duration) (QuarantineDecision, error) {
	// Enough runs to see the whole streak the back-off depends on: past
	// ~20 doublings any interval has reached MaxBackoff.
	runs, err := qs.RecentRunHealth(ctx, job, max(p.AfterFailures, 1)+24)
	if err != nil {
		return QuarantineDecision{}, fmt.Errorf("quarantine check of job %s: %w", job, err)
	}
	d := decide(runs, p, anchor, interval)
	if err := qs.SetQuarantine(ctx, job, d.Failures, d.Until, d.Reason); err != nil {
		return d, fmt.Errorf("quarantine check of job %s: %w", job, err)
	}
	return d, nil
}

// Interval is the period of a schedule around now: the gap between its next
// two activations.
func Interval(spec string, now time.Time) (time.Duration, error) {
	s, err := Parse(spec)
	if err != nil {
		return 0, err
	}
	return interval(s, now), nil
}

func interval(s cron.Schedule, now time.Time) time.Duration {
	next := s.Next(now)
	return s.Next(next).Sub(next)
}

// afterApplyRun is the quarantine rule after an apply run of job, whoever
// ran it: the back-off is anchored at the occurrence the run served
// (scheduledFor), or when it started for a run outside the schedule.
func afterApplyRun(ctx context.Context, qs QuarantineStore, p Policy, job string, sched cron.Schedule,
	scheduledFor time.Time, run store.Run) (QuarantineDecision, error) {
	anchor := scheduledFor
	if anchor.IsZero() {
		anchor = run.StartedAt
	}
	return AfterRun(ctx, qs, p, job, anchor, interval(sched, time.Now()))
}

// ReleaseStore is what a manual run's quarantine handling uses (*store.Store).
type ReleaseStore interface {
	QuarantineStore
	ReleaseQuarantine(ctx context.Context, job string) (store.JobState, error)
}

// BeforeManualRun ends job's quarantine before a manual apply run (an
// operator asked for this run); AfterManualRun then counts the run's
// outcome like a scheduled one's. It returns the state the job was in.
func BeforeManualRun(ctx context.Context, qs ReleaseStore, job string) (store.JobState, error) {
	return qs.ReleaseQuarantine(ctx, job)
}

// AfterManualRun applies the quarantine rule after a manual run of job: the
// same rule a scheduled run gets from the Scheduler. Plan runs and runs that
// were not recorded do not count.
func AfterManualRun(ctx context.Context, qs QuarantineStore, p Policy, job config.Job, run store.Run) (QuarantineDecision, error) {
	if p.AfterFailures <= 0 || run.ID == 0 || run.Mode != string(esync.ModeApply) {
		return QuarantineDecision{}, nil
	}
	sched, err := Parse(job.Schedule)
	if err != nil {
		return QuarantineDecision{}, err
	}
	return afterApplyRun(ctx, qs, p, job.Name, sched, time.Time{}, run)
}

// SkipReason says why an occurrence of a quarantined job is not run, with
// the commands that end the quarantine.
func SkipReason(job string, st store.JobState) string {
	return fmt.Sprintf("job quarantined until %s (%s); run `worker sync --job %s` or `worker quarantine release %s` to end it",
		st.QuarantinedUntil.Format(time.RFC3339), st.QuarantineReason, job, job)
}

func oneLine(s string, n int) string {
	out := []rune{}
	for _, r := range s {
		if r == '\n' || r == '\r' {
			r = ' '
		}
		out = append(out, r)
		if len(out) >= n {
			return string(out) + "…"
		}
	}
	return string(out)
}

// quarantined reports whether occ of job must be skipped because the job is
// quarantined and its wait has not passed; manual runs are never skipped.
// A failed state read lets the occurrence run: quarantine is a courtesy to
// Graph, not a safety guard.
func (s *Scheduler) quarantined(job string, occ Occurrence) (string, bool) {
	if s.opts.Quarantine == nil || s.opts.Policy.AfterFailures <= 0 || occ.Trigger == esync.TriggerManual {
		return "", false
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.runCtx), 10*time.Second)
	defer cancel()
	st, err := s.opts.Quarantine.GetJobState(ctx, job)
	if err != nil {
		s.log.Warn("quarantine state unreadable; running the occurrence", "job", job, "err", err)
		return "", false
	}
	at := occ.ScheduledFor
	if at.IsZero() {
		at = time.Now()
	}
	if st.QuarantinedUntil == nil || !at.Before(*st.QuarantinedUntil) {
		return "", false
	}
	return SkipReason(job, st), true
}

// afterRun applies the quarantine rule after a run of e ended here.
func (s *Scheduler) afterRun(e *entry, occ Occurrence, run store.Run, log *slog.Logger) *QuarantineDecision {
	if s.opts.Quarantine == nil || s.opts.Policy.AfterFailures <= 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.runCtx), 10*time.Second)
	defer cancel()
	d, err := afterApplyRun(ctx, s.opts.Quarantine, s.opts.Policy, e.job.Name, e.sched, occ.ScheduledFor, run)
	if err != nil {
		log.Error("quarantine check failed", "err", err)
		return nil
	}
	if d.Until != nil {
		log.Warn("job quarantined: scheduled runs back off", "failures", d.Failures,
			"until", *d.Until, "reason", d.Reason)
	}
	return &d
}
