package sync

// Per-user back-off. A user whose write fails the same way run after run (a
// 4xx only a change of the source row or of the directory can fix) is
// tried less and less often, instead of failing and filling history every
// night. "The same way" is the same desired hash (what the user's steps try
// to apply) answered with the same HTTP status and Graph error code. The
// rows live in entraprov.user_backoff (store, backoff.go); this file
// decides what counts, when the next attempt is, and what a run does with a
// user it leaves alone. Only the first apply pass reads and writes them;
// pass 2 (steps waiting for an object created in pass 1), dry runs and
// blocked runs never write them.

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	gosync "sync"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/store"
)

// BackoffPolicy is a job's user_backoff configuration, resolved.
type BackoffPolicy struct {
	// AfterFailures identical failures in a row start the back-off; 0: off.
	AfterFailures int
	// Base, when set, makes the waits 2·Base, 4·Base, … Otherwise Schedule
	// does: the user sits out 1 occurrence, then 3, 7, …
	Base     time.Duration
	Schedule cron.Schedule
	// Max caps the wait.
	Max time.Duration
	// Jitter is the job's start jitter: runs may start that much late.
	Jitter time.Duration
}

// BackoffPolicyFor resolves job's user_backoff settings.
func BackoffPolicyFor(job config.Job) BackoffPolicy {
	b := job.UserBackoff
	p := BackoffPolicy{AfterFailures: b.AfterFailures, Base: b.Base.Duration, Max: b.Max.Duration, Jitter: job.Jitter.Duration}
	if p.Max <= 0 {
		p.Max = config.DefaultJob().UserBackoff.Max.Duration
	}
	if p.Base <= 0 {
		if s, err := config.ParseSchedule(job.Schedule); err == nil {
			p.Schedule = s
		} else {
			p.Base = config.DefaultBackoffBase
		}
	}
	return p
}

// Enabled reports whether the job backs users off at all.
func (p BackoffPolicy) Enabled() bool { return p.AfterFailures > 0 }

// NextAttempt is when a user that failed the same way failures times in a
// row, the last at failedAt (a run's start), may be tried again. Below
// AfterFailures that is failedAt: the next run tries it. From then on the
// k-th back-off (k = failures−AfterFailures+1) waits 2^k periods, at most
// Max. The time is a little early (a tenth of the period, plus the jitter
// for time-based periods) so that the run falling due, started a few
// seconds early or late, is not missed and does not wait a whole period
// more.
func (p BackoffPolicy) NextAttempt(failures int, failedAt time.Time) time.Time {
	if !p.Enabled() || failures < p.AfterFailures {
		return failedAt
	}
	k := min(failures-p.AfterFailures+1, 30)
	mult := 1 << k
	if p.Schedule != nil {
		return p.nextOccurrence(mult, failedAt)
	}
	wait := min(p.Base*time.Duration(mult), p.Max)
	if wait/time.Duration(mult) != p.Base { // overflowed
		wait = p.Max
	}
	return failedAt.Add(wait - min(p.Base/10+p.Jitter, wait/2))
}

// nextOccurrence is the mult-th occurrence of the schedule after failedAt
// (the user sits out mult−1 runs), at most Max after failedAt.
func (p BackoffPolicy) nextOccurrence(mult int, failedAt time.Time) time.Time {
	capped := failedAt.Add(p.Max)
	first := p.Schedule.Next(failedAt)
	gap := p.Schedule.Next(first).Sub(first)
	if first.IsZero() || gap <= 0 {
		return capped.Add(-p.Max / 10)
	}
	if gap*time.Duration(mult) > p.Max || mult > 64 {
		return capped.Add(-min(gap/10, p.Max/10))
	}
	prev, o := failedAt, first
	for range mult - 1 {
		prev, o = o, p.Schedule.Next(o)
	}
	if o.After(capped) {
		return capped.Add(-min(gap/10, p.Max/10))
	}
	// Runs start at their occurrence or later (jitter only delays), so a
	// tenth of the last gap early is safe and absorbs clock skew.
	return o.Add(-o.Sub(prev) / 10)
}

// failure is one answer of Graph to a user's step, as the back-off sees it.
type failure struct {
	seq        int64
	action     Action
	httpStatus int
	code       string
	message    string
	requestID  string
}

// countsForBackoff says whether a Graph failure is the user's own, repeated
// as long as nothing changes: a 4xx, except
//   - 401 and 429: the job's sign-in or Graph's load, retried anyway;
//   - 404 on a user whose create was lost or whose object was only just
//     found (justCreated): replication may lag a moment;
//   - 408: a timeout says nothing about the request.
//
// A 403 counts here, but save drops it when nothing else in the pass could
// be written: then the app lacks a permission, a job-level problem that
// quarantine handles, and users must not sit out runs once it is granted.
// A 403 in a run where other writes succeeded is about this user (e.g. a
// privileged account the app may not change). Failures without an HTTP
// answer (network, cancellation) never count.
func countsForBackoff(status int, justCreated bool) bool {
	switch {
	case status < 400 || status >= 500:
		return false
	case status == http.StatusUnauthorized, status == http.StatusTooManyRequests, status == http.StatusRequestTimeout:
		return false
	case status == http.StatusNotFound:
		return !justCreated
	}
	return true
}

// nextBackoff is the user's back-off row after failure f of the steps with
// desired hash hash, in run runID started at now. The count goes on only
// for the same hash, status and code; anything else starts again at 1.
func nextBackoff(prev *store.UserBackoff, job, externalID, hash string, f failure, runID int64, now time.Time, p BackoffPolicy) store.UserBackoff {
	b := store.UserBackoff{Job: job, ExternalID: externalID, DesiredHash: hash, Action: string(f.action), HTTPStatus: f.httpStatus,
		ErrorCode: f.code, Message: f.message, RequestID: f.requestID, Failures: 1, FirstFailedAt: now, LastFailedAt: now,
		LastRunID: runID}
	if prev != nil && prev.DesiredHash == hash && prev.HTTPStatus == f.httpStatus && prev.ErrorCode == f.code {
		b.Failures, b.FirstFailedAt = prev.Failures+1, prev.FirstFailedAt
	}
	b.NextAttemptAt = p.NextAttempt(b.Failures, now)
	return b
}

// backingOffMessage is the history message of a run that left the user
// alone.
func backingOffMessage(b store.UserBackoff, job string) string {
	what := strings.TrimSpace(fmt.Sprintf("%s %s", httpOrNone(b.HTTPStatus), b.ErrorCode))
	if b.Message != "" {
		what += ": " + clip(b.Message, 200)
	}
	return fmt.Sprintf("backing off after %d identical failures (%s); next attempt after %s; "+
		"fix the source row or run `worker sync --job %s --retry-stuck`",
		b.Failures, what, b.NextAttemptAt.UTC().Format("2006-01-02T15:04Z"), job)
}

func httpOrNone(status int) string {
	if status == 0 {
		return "no HTTP status"
	}
	return fmt.Sprint(status)
}

func clip(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// backoffPass is the back-off state of one apply pass 1.
type backoffPass struct {
	st     Backoff
	policy BackoffPolicy
	job    string
	runID  int64
	now    time.Time
	retry  bool // --retry-stuck: every user is due

	rows map[string]store.UserBackoff // loaded at the start of the pass

	mu      gosync.Mutex
	seen    map[string]bool
	saves   []store.UserBackoff
	deletes []string
	skipped int
}

// newBackoffPass loads the job's back-off rows, or returns nil when the
// job does not back users off.
func (r *runner) newBackoffPass(ctx context.Context) (*backoffPass, error) {
	p := BackoffPolicyFor(r.job)
	if !p.Enabled() {
		return nil, nil
	}
	bst := r.e.Store
	rows, err := bst.UserBackoffs(ctx, r.job.Name)
	if err != nil {
		return nil, fmt.Errorf("load user back-offs: %w", err)
	}
	bp := &backoffPass{st: bst, policy: p, job: r.job.Name, runID: r.run.ID, now: r.now, retry: r.opts.RetryStuck,
		rows: make(map[string]store.UserBackoff, len(rows)), seen: map[string]bool{}}
	for _, b := range rows {
		bp.rows[b.ExternalID] = b
	}
	return bp, nil
}

// waiting returns the user's back-off row when the user is not due yet.
func (bp *backoffPass) waiting(externalID string) (store.UserBackoff, bool) {
	if bp == nil || bp.retry {
		return store.UserBackoff{}, false
	}
	b, ok := bp.rows[externalID]
	if !ok || !bp.now.Before(b.NextAttemptAt) {
		return store.UserBackoff{}, false
	}
	return b, true
}

// sendable says whether a decision sends anything to Graph in pass 1 (a
// deferred step alone waits for pass 2, which the back-off leaves alone).
func sendable(dec Decision) bool {
	sends := false
	for _, s := range dec.Steps {
		if s.Failure != "" {
			return false
		}
		sends = sends || s.Kind != "" && !s.Deferred
	}
	return sends
}

// check is called for each planned user of the pass (single producer). It
// returns the back-off row when the user must be left alone this run. A
// row for a user who now needs nothing sendable (unchanged, fixed by hand,
// failing validation) is stale and goes.
func (bp *backoffPass) check(externalID string, dec Decision, hash string) (store.UserBackoff, bool) {
	if bp == nil {
		return store.UserBackoff{}, false
	}
	bp.mu.Lock()
	defer bp.mu.Unlock()
	bp.seen[externalID] = true
	b, ok := bp.rows[externalID]
	if !ok {
		return b, false
	}
	if !sendable(dec) {
		bp.deletes = append(bp.deletes, externalID)
		return b, false
	}
	if b.DesiredHash != hash || bp.retry || !bp.now.Before(b.NextAttemptAt) {
		return b, false
	}
	bp.skipped++
	return b, true
}

// settle records the outcome of a user whose steps of the pass are all
// final: a counted failure (the one of the lowest seq) extends or starts
// its back-off, success of every step ends it, anything else (5xx, lost
// answers, cancellation) leaves it as it was.
func (bp *backoffPass) settle(externalID, hash string, f *failure, allSucceeded bool) {
	if bp == nil {
		return
	}
	bp.mu.Lock()
	defer bp.mu.Unlock()
	prev, had := bp.rows[externalID]
	switch {
	case f != nil:
		var pp *store.UserBackoff
		if had {
			pp = &prev
		}
		bp.saves = append(bp.saves, nextBackoff(pp, bp.job, externalID, hash, *f, bp.runID, bp.now, bp.policy))
	case allSucceeded && had:
		bp.deletes = append(bp.deletes, externalID)
	}
}

// save writes the pass's back-off changes (backoffWrites).
func (bp *backoffPass) save(ctx context.Context, complete, anyWrite bool) (saved, deleted int, err error) {
	if bp == nil {
		return 0, 0, nil
	}
	bp.mu.Lock()
	defer bp.mu.Unlock()
	saves, dels := backoffWrites(bp.saves, bp.deletes, bp.rows, bp.seen, complete, anyWrite)
	if err := bp.st.SaveUserBackoffs(ctx, saves); err != nil {
		return 0, 0, err
	}
	if err := bp.st.DeleteUserBackoffs(ctx, bp.job, dels); err != nil {
		return len(saves), 0, err
	}
	return len(saves), len(dels), nil
}

// backoffWrites is what a pass writes to user_backoff, from the failures
// it counted (saves), the users it cleared (deletes) and the rows it
// loaded (rows) of which it planned seen. A 403 is dropped when no write of
// the pass succeeded (anyWrite false): then the app lacks a permission, and
// the user must not sit out runs once it is granted. When the pass planned
// the whole source (complete), the rows of users it never met (gone from
// the source and the links) are stale and go too.
func backoffWrites(saves []store.UserBackoff, deletes []string, rows map[string]store.UserBackoff, seen map[string]bool,
	complete, anyWrite bool) ([]store.UserBackoff, []string) {
	var out []store.UserBackoff
	for _, b := range saves {
		if b.HTTPStatus == http.StatusForbidden && !anyWrite {
			continue
		}
		out = append(out, b)
	}
	dels := slices.Clone(deletes)
	if complete {
		for id := range rows {
			if !seen[id] {
				dels = append(dels, id)
			}
		}
	}
	slices.Sort(dels)
	return out, slices.Compact(dels)
}
