package directory

import (
	"strings"
	"sync"
	"time"
)

// A 404 on a write is retried because of replication lag: an object created
// a moment ago may be invisible to a PATCH or a reference write for a few
// seconds. Retrying every 404 that long costs ~20 s of the run per missing
// group or deleted object, so the retry depends on whether the object may
// be new:
//
//   - the target or related object was created or restored by this client
//     (this run) in the last FreshFor, or the caller marks the operation
//     Recent (an earlier run wrote the object minutes ago): up to notFoundRetriesFresh retries,
//     each wait capped at notFoundMaxWait (at most ~15 s in all);
//   - otherwise the object has existed for longer than any replication lag,
//     so a 404 means it does not exist (a wrong group id, a user deleted by
//     hand): notFoundRetriesKnown retry after one MinBackoff (0.5–1 s with
//     the default 1 s), then the operation fails.
const (
	notFoundRetriesFresh = 5
	notFoundRetriesKnown = 1
	notFoundMaxWait      = 4 * time.Second
	// FreshFor is how long after a create or restore a 404 may be lag.
	FreshFor = 10 * time.Minute
)

// freshObjects are the objects a client created or restored recently.
type freshObjects struct {
	mu     sync.Mutex
	at     map[string]time.Time
	pruned time.Time // last sweep of expired entries
}

// freshSweep is how often add sweeps expired entries out: sweeping on every
// add walked the whole map per create (a third of a 10,000-create run's
// CPU); once a minute the map still holds at most FreshFor plus a minute
// of creates.
const freshSweep = time.Minute

func (f *freshObjects) add(id string, now time.Time) {
	if id == "" {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.at == nil {
		f.at = map[string]time.Time{}
	}
	if now.Sub(f.pruned) >= freshSweep {
		f.pruned = now
		for k, t := range f.at {
			if now.Sub(t) > FreshFor {
				delete(f.at, k) // bounded by what a run creates in FreshFor
			}
		}
	}
	f.at[strings.ToLower(id)] = now
}

// any says whether one of ids was created or restored within FreshFor.
func (f *freshObjects) any(now time.Time, ids ...string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range ids {
		if t, ok := f.at[strings.ToLower(id)]; ok && id != "" && now.Sub(t) <= FreshFor {
			return true
		}
	}
	return false
}

// notFoundRetry decides the retry of the n-th 404 of an operation: whether
// to retry, and after how long.
func (c *Client) notFoundRetry(op Operation, n int, now time.Time) (bool, time.Duration) {
	if !op.Recent && !c.fresh.any(now, op.ObjectID, op.RelatedID) {
		return n <= notFoundRetriesKnown, backoff(1, c.opts.MinBackoff, c.opts.MinBackoff)
	}
	return n <= notFoundRetriesFresh, min(backoff(n, c.opts.MinBackoff, c.opts.MaxBackoff), notFoundMaxWait)
}
