package jobs

import (
	"time"
)

// The run queue: a process-wide cap (Options.MaxConcurrent, config
// max_concurrent_jobs) on the runs in flight at once. Jobs of one app share
// its Graph budgets, so more runs at once than fill the app's cross-tenant
// budget only share it more thinly, and each run holds database
// connections. A due occurrence that finds every slot taken waits here and
// still is that occurrence: it keeps its scheduled_for, the job stays busy
// (a later tick of the job is skipped, and recorded so when the queued
// occurrence starts, as when a run is still in progress), and the slot that
// frees next goes to the oldest due occurrence — the one whose tenant has
// waited longest — ties by job name, so the order is the same in every
// worker process. A queued occurrence that never starts (SIGTERM) is
// recorded nowhere, and neither are the ticks that came while it waited,
// exactly like occurrences missed while the worker was down: catch_up runs
// the job at the next start. A job removed by a reload loses its queued
// occurrence.

// pending is an occurrence waiting for a run slot.
type pending struct {
	e     *entry
	occ   Occurrence
	since time.Time // when it was queued
	// later are the job's occurrences that fell due while it waited:
	// skipped, and recorded so when it starts (not before: see launch).
	later []Occurrence
}

// before orders the queue: oldest scheduled time first, then job name.
func (p *pending) before(q *pending) bool {
	if !p.occ.ScheduledFor.Equal(q.occ.ScheduledFor) {
		return p.occ.ScheduledFor.Before(q.occ.ScheduledFor)
	}
	return p.e.job.Name < q.e.job.Name
}

// admit starts occ of e (already marked busy) in a free slot, or queues it.
func (s *Scheduler) admit(e *entry, occ Occurrence) {
	s.mu.Lock()
	if s.stopping {
		s.releaseLocked(e.job.Name)
		s.mu.Unlock()
		s.log.Info("stopping: occurrence not started", "job", e.job.Name, "scheduled_for", occ.ScheduledFor)
		return
	}
	// A reload during the start jitter: an occurrence that has not started
	// follows the job list, as a queued one does.
	cur, ok := s.entries[e.job.Name]
	if !ok {
		s.releaseLocked(e.job.Name)
		s.mu.Unlock()
		s.log.Info("job removed before its occurrence started; it will not run", "job", e.job.Name, "scheduled_for", occ.ScheduledFor)
		return
	}
	e = cur
	if s.limit > 0 && s.slots >= s.limit {
		p := &pending{e: e, occ: occ, since: time.Now()}
		s.queue = append(s.queue, p)
		s.queued[e.job.Name] = p
		n, limit := len(s.queue), s.limit
		s.queuedChangedLocked()
		s.mu.Unlock()
		s.log.Info("every run slot is taken; occurrence queued", "job", e.job.Name, "trigger", occ.Trigger,
			"scheduled_for", occ.ScheduledFor, "queued", n, "max_concurrent_jobs", limit)
		return
	}
	s.slots++
	s.mu.Unlock()
	go s.execute(e, occ, 0, nil)
}

// endRun frees the job and its slot, and starts what the slot now allows.
func (s *Scheduler) endRun(job string) {
	s.mu.Lock()
	s.releaseLocked(job)
	s.slots--
	next := s.dispatchLocked()
	s.mu.Unlock()
	s.startAll(next)
}

// dispatchLocked takes the oldest queued occurrences into the free slots
// and returns them for startAll. s.mu is held.
func (s *Scheduler) dispatchLocked() []*pending {
	var out []*pending
	for !s.stopping && len(s.queue) > 0 && (s.limit <= 0 || s.slots < s.limit) {
		i := 0
		for j, p := range s.queue[1:] {
			if p.before(s.queue[i]) {
				i = j + 1
			}
		}
		out = append(out, s.removeLocked(i))
		s.slots++
	}
	if len(out) > 0 {
		s.queuedChangedLocked()
	}
	return out
}

func (s *Scheduler) startAll(ps []*pending) {
	now := time.Now()
	for _, p := range ps {
		go s.execute(p.e, p.occ, now.Sub(p.since), p.later)
	}
}

// removeLocked takes the i-th queued occurrence out of the queue.
func (s *Scheduler) removeLocked(i int) *pending {
	p := s.queue[i]
	s.queue = append(s.queue[:i], s.queue[i+1:]...)
	delete(s.queued, p.e.job.Name)
	return p
}

// queuedLocked is the job's queued occurrence, or nil. s.mu is held.
func (s *Scheduler) queuedLocked(job string) *pending { return s.queued[job] }

// dropQueuedLocked removes the job's queued occurrence, if any, and frees
// the job. s.mu is held.
func (s *Scheduler) dropQueuedLocked(job string) *pending {
	for i, p := range s.queue {
		if p.e.job.Name == job {
			s.removeLocked(i)
			s.releaseLocked(job)
			s.queuedChangedLocked()
			return p
		}
	}
	return nil
}

// drainLocked empties the queue (Stop) and returns what it held.
func (s *Scheduler) drainLocked() []*pending {
	out := s.queue
	s.queue = nil
	clear(s.queued)
	for _, p := range out {
		s.releaseLocked(p.e.job.Name)
	}
	if len(out) > 0 {
		s.queuedChangedLocked()
	}
	return out
}

func (s *Scheduler) queuedChangedLocked() {
	if s.opts.OnQueued != nil {
		s.opts.OnQueued(len(s.queue))
	}
}

// Queued is the number of occurrences waiting for a run slot.
func (s *Scheduler) Queued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue)
}

// SetMaxConcurrent changes the cap (a reload of max_concurrent_jobs; 0: no
// cap). A higher cap starts queued occurrences at once; a lower one lets
// the runs in flight finish and starts no more until they fit under it.
func (s *Scheduler) SetMaxConcurrent(n int) {
	s.mu.Lock()
	s.limit = n
	next := s.dispatchLocked()
	s.mu.Unlock()
	s.startAll(next)
}
