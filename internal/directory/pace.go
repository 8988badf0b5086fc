package directory

import (
	"math"
	"math/rand/v2"
	"sync"
	"time"
)

// controller decides how fast the executor may write. It combines two
// mechanisms:
//
//   - AIMD on the number of $batch requests in flight: halve on a throttle
//     event, add one per window of clean batches.
//   - A step pacer whose rate is learnt from the service. Graph's write quota
//     is a token bucket (3,000 writes / 150 s per app and tenant). Between
//     two throttle events the bucket was empty at both ends, so the number of
//     writes the service accepted in between divided by the elapsed time is
//     its refill rate — an exact measurement, not a guess. The pacer then
//     runs just under that rate and creeps up while clean, so the quota is
//     used without hitting it, and a rare overshoot re-measures the rate.
//
// Before the first throttle event nothing is paced: the initial bucket
// (burst) is spent as fast as the concurrency limit allows.
type controller struct {
	mu sync.Mutex

	maxInflight float64
	inflight    float64 // current limit (fractional for additive increase)

	rate float64 // steps per second; 0 = unpaced
	next time.Time

	lastEvent  time.Time // last throttle event we reacted to
	accepted   int       // steps the service accepted (not 429/5xx) since lastEvent
	lastCreep  time.Time
	retryAfter time.Duration // of the last pause
	probing    bool          // the pace grew fast since lastEvent (see observe)
	measured   bool          // rate comes from a measurement, not a first guess
	lastSeen   time.Time     // last answer observed
	lastCut    time.Time     // last cut of a first guess
	start      time.Time     // first send
	total      int           // steps accepted since start

	pacerWaited bool // the pacer held back a batch since the last adjustment

	// The batches in flight of every Execute sharing the controller (one
	// app in one tenant, see Pacing): busy of at most limit(). Executes
	// waiting for a slot queue in waiters and are granted slots in turn
	// (closing their channel hands them the slot).
	busy    int
	waiters []chan struct{}
	hold    time.Time // the last 429's Retry-After ends (see pause)
}

const (
	mdFactor     = 0.5   // concurrency multiplicative decrease
	rateHeadroom = 0.97  // pace at this share of the measured refill rate
	rateCreep    = 0.005 // relative pace increase per second while clean and pace-bound
	minMeasure   = 50 * time.Millisecond
	minSample    = 100 // accepted steps between two events for a measurement
	// Before the first measurement: pace at this share of the throughput
	// seen so far and grow by guessCreep per second until the next event.
	firstGuessShare = 0.5
	guessCreep      = 1.0
	minRate         = 0.5 // steps/s; a floor so a bad window cannot stall the run
	// Clean for cleanBounds times cleanBound (see there) the creep grows
	// with the fourth power of the clean time, up to maxCreep per second.
	cleanBounds = 2
	maxCreep    = 0.5
)

func newController(maxInflight int) *controller {
	if maxInflight < 1 {
		maxInflight = 1
	}
	return &controller{maxInflight: float64(maxInflight), inflight: float64(maxInflight)}
}

// limit is the number of batches allowed in flight now.
func (c *controller) limit() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return int(c.inflight)
}

// acquire takes one batch slot if fewer than limit() batches of all the
// controller's users are in flight and nobody waits for one. Otherwise the
// caller queues: the returned channel is closed when a slot is granted to
// it (it then owns the slot), or the caller gives up with cancelWait.
// First come, first served: jobs sharing the controller take turns.
func (c *controller) acquire() (ok bool, granted <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.busy < int(c.inflight) && len(c.waiters) == 0 {
		c.busy++
		return true, nil
	}
	ch := make(chan struct{})
	c.waiters = append(c.waiters, ch)
	return false, ch
}

// release returns a slot and grants it to the next waiter, if any.
func (c *controller) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.busy--
	c.grant()
}

// cancelWait withdraws a queued acquire; a slot already granted to it is
// released.
func (c *controller) cancelWait(granted <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, ch := range c.waiters {
		if ch == granted {
			c.waiters = append(c.waiters[:i], c.waiters[i+1:]...)
			return
		}
	}
	c.busy--
	c.grant()
}

// grant hands free slots to the waiters in order. Called with mu held.
func (c *controller) grant() {
	for len(c.waiters) > 0 && c.busy < int(c.inflight) {
		close(c.waiters[0])
		c.waiters = c.waiters[1:]
		c.busy++
	}
}

// raiseMax lets a job with a larger batch concurrency join the controller.
func (c *controller) raiseMax(maxInflight int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m := float64(maxInflight); m > c.maxInflight {
		c.maxInflight = m
	}
}

// reserve takes n steps of pace and returns when they may be sent: at
// once, or when the pace (less one batch of tolerance, as delay) or a
// pause allows. Reservations queue in the order they are made, so jobs
// sharing the controller take turns.
func (c *controller) reserve(now time.Time, n int) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.start.IsZero() {
		c.start = now
	}
	at := now
	if !c.next.IsZero() {
		var tol time.Duration
		if c.rate > 0 {
			tol = time.Duration(float64(n) / c.rate * float64(time.Second))
		}
		if t := c.next.Add(-tol); t.After(at) {
			at = t
			c.pacerWaited = true
		}
	}
	if c.hold.After(at) {
		at = c.hold
	}
	if c.rate > 0 {
		if c.next.Before(at) {
			c.next = at
		}
		c.next = c.next.Add(time.Duration(float64(n) / c.rate * float64(time.Second)))
	}
	return at
}

// holdUntil is when the last pause ends (zero: never paused).
func (c *controller) holdUntil() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hold
}

// count records accepted steps of an answer that neither grows nor cuts
// the pace (see pacer.observe).
func (c *controller) count(now time.Time, accepted int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastSeen = now
	c.accepted += accepted
	c.total += accepted
}

// pause holds every send until t (a throttled batch's Retry-After, asked
// at now): the service said the bucket is empty, sending earlier only buys
// more 429s.
func (c *controller) pause(now, t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.retryAfter = t.Sub(now)
	if t.After(c.next) {
		c.next = t
	}
	if t.After(c.hold) {
		c.hold = t
	}
}

// observe feeds one batch answer: when it was sent, how many of its steps
// the service accepted and how many it throttled.
func (c *controller) observe(sent, now time.Time, accepted, throttled int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastSeen = now
	c.accepted += accepted
	c.total += accepted
	if throttled == 0 {
		c.grow(now)
		return
	}
	if !c.lastEvent.IsZero() && sent.Before(c.lastEvent) {
		// Sent before we reacted to the last event: same congestion.
		return
	}
	c.react(sent, now)
}

// grow follows a clean batch: one more batch in flight per window, and a
// pace that held a batch back creeps up. Called with mu held.
func (c *controller) grow(now time.Time) {
	c.inflight = math.Min(c.maxInflight, c.inflight+1/c.inflight)
	c.grant()
	if c.rate <= 0 {
		return
	}
	if c.pacerWaited && !c.lastCreep.IsZero() {
		// Creep up in proportion to time, not to batches, so the cycle
		// length does not depend on how fast batches come back. A
		// first guess grows fast until the next event measures.
		g := rateCreep
		if !c.measured {
			g = guessCreep
		} else if clean, bound := now.Sub(c.lastEvent), c.cleanBound(); clean > cleanBounds*bound {
			// Far longer without a throttle event than an
			// unchanged quota allows: it has grown (a cut ended,
			// other apps went quiet). Probe faster the longer it
			// stays clean; the overshoot costs one event.
			k := clean.Seconds() / bound.Seconds()
			g = math.Min(maxCreep, rateCreep*k*k*k*k)
			c.probing = true
		}
		c.rate *= 1 + g*now.Sub(c.lastCreep).Seconds()
	}
	c.lastCreep = now
	c.pacerWaited = false
}

// react follows a new throttle event (a batch sent after the last one was
// reacted to met a 429): halve the batches in flight and set the pace from
// what the event shows. Called with mu held.
func (c *controller) react(sent, now time.Time) {
	c.inflight = math.Max(1, c.inflight*mdFactor)
	if c.lastEvent.IsZero() {
		// First event: the burst is spent and the bucket is empty now.
		// Start counting; the next event gives the refill rate. Meanwhile
		// pace at half the throughput seen so far, which overstates the
		// refill rate (it includes the burst), and grow from there.
		if el := now.Sub(c.start).Seconds(); !c.start.IsZero() && el > 0 {
			c.rate = math.Max(minRate, firstGuessShare*float64(c.total)/el)
			c.lastCreep = now
		}
		c.lastEvent, c.lastCut, c.accepted = now, now, 0
		return
	}
	el := now.Sub(c.lastEvent)
	if c.probing {
		// The event ends a probe after a long clean spell, during which
		// the bucket may have overflowed: accepted/elapsed would
		// understate the refill. The bucket is empty now, as at a first
		// event: guess half the pace that emptied it and let the next
		// event measure.
		c.probing, c.measured = false, false
		c.rate = math.Max(minRate, firstGuessShare*c.rate)
		c.lastEvent, c.lastCut, c.lastCreep, c.accepted = now, now, now, 0
		return
	}
	if el < minMeasure || c.accepted < minSample {
		// Too small a sample to measure: batch granularity would dominate
		// it (a near-empty bucket throttles part of a batch even under the
		// rate). Keep counting from the last event. A first guess is still
		// halved once per round-trip, but never below what is getting
		// through, so it cannot collapse.
		if !c.measured && c.rate > 0 && !sent.Before(c.lastCut) {
			floor := math.Max(minRate, float64(c.accepted)/el.Seconds())
			c.rate = math.Max(floor, c.rate*firstGuessShare)
			c.lastCut, c.lastCreep = now, now
		}
		return
	}
	c.measured = true
	// Bucket empty at both events: accepted/elapsed is the refill rate.
	c.rate = math.Max(minRate, rateHeadroom*float64(c.accepted)/el.Seconds())
	c.lastEvent, c.accepted = now, 0
	c.lastCreep = now
	c.pacerWaited = false
}

// cleanBound is how long the pace can stay clean after a measurement when
// the quota has not changed: the creep takes it from rateHeadroom to the
// refill rate, then spends what the bucket gained while the sends waited
// out the last Retry-After (refill × retryAfter); the excess grows
// linearly, so that takes sqrt(2 × retryAfter / rateCreep). Clean much
// longer than that, the quota must have grown. Independent of the rate,
// so a noisy measurement does not set off a probe. The floor is below
// Graph's whole seconds for the emulator's scaled-down Retry-After.
func (c *controller) cleanBound() time.Duration {
	ra := math.Max(0.1, c.retryAfter.Seconds())
	s := math.Log(1/rateHeadroom)/rateCreep + math.Sqrt(2*ra/rateCreep)
	return time.Duration(s * float64(time.Second))
}

// idleSince is how long since the controller last saw an answer.
func (c *controller) idleSince(now time.Time) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lastSeen.IsZero() {
		return 0
	}
	return now.Sub(c.lastSeen)
}

// snapshot returns the current limit and rate (for logs and tests).
func (c *controller) snapshot() (inflight int, rate float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return int(c.inflight), c.rate
}

// backoff is the jittered, capped exponential delay before attempt n (1 =
// first retry): full jitter in [base·2^(n-1)/2, base·2^(n-1)], at most max.
// Written here because retries are per step and scheduled by the executor's
// queue, not by a blocking retry loop such as cenkalti/backoff offers.
func backoff(n int, base, max time.Duration) time.Duration {
	if n < 1 {
		n = 1
	}
	d := base
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	half := d / 2
	return half + time.Duration(rand.Int64N(int64(half)+1))
}
