package directory

import (
	"math"
	"testing"
	"time"
)

// bucketSim is the service side of a pacing simulation: a token bucket of
// writes (Graph's write quota) whose refill rate can change, answering
// batches after a fixed latency.
type bucketSim struct {
	capacity, tokens, refill float64
}

func (b *bucketSim) tick(dt time.Duration) {
	b.tokens = math.Min(b.capacity, b.tokens+b.refill*dt.Seconds())
}

// admit takes up to n writes; the rest are throttled.
func (b *bucketSim) admit(n int) (accepted int) {
	accepted = int(math.Min(float64(n), math.Floor(b.tokens)))
	b.tokens -= float64(accepted)
	return accepted
}

// retryAfter is when the bucket holds a batch again, at least one second
// (Graph's Retry-After is whole seconds).
func (b *bucketSim) retryAfter(n int) time.Duration {
	need := (float64(n) - b.tokens) / b.refill
	return time.Duration(math.Max(1, math.Ceil(need)) * float64(time.Second))
}

type simBatch struct {
	sent, done          time.Time
	accepted, throttled int
}

// TestControllerRecoversAfterQuotaCut drives the controller against a
// simulated write bucket whose refill drops to a tenth for a minute (a
// throttle storm, or other apps sharing the tenant's quota), then returns.
// The pacer must slow down during the cut and find the full rate again
// soon after it: a measured rate is not a ceiling for ever.
func TestControllerRecoversAfterQuotaCut(t *testing.T) {
	const (
		batch     = 20
		refill    = 400.0 // writes/s: 3,000 per 7.5 s (graphsim at time scale 20)
		latency   = 60 * time.Millisecond
		step      = time.Millisecond
		cutStart  = 60 * time.Second
		cutEnd    = 120 * time.Second
		simLength = 300 * time.Second
	)
	c := newController(8)
	b := &bucketSim{capacity: 3000, tokens: 3000, refill: refill}
	t0 := time.Unix(1_000_000, 0)
	var inflight []simBatch
	acceptedIn := func(from, to time.Duration) func(at time.Duration, n int) int {
		return func(at time.Duration, n int) int {
			if at >= from && at < to {
				return n
			}
			return 0
		}
	}
	before := acceptedIn(cutStart-30*time.Second, cutStart)
	during := acceptedIn(cutStart, cutEnd)
	after := acceptedIn(cutEnd+60*time.Second, cutEnd+120*time.Second)
	var nBefore, nDuring, nAfter, steps, throttled int
	var turn time.Time // the next batch's reserved send time
	for el := time.Duration(0); el < simLength; el += step {
		now := t0.Add(el)
		switch {
		case el >= cutStart && el < cutEnd:
			b.refill = refill / 10
		default:
			b.refill = refill
		}
		b.tick(step)
		if el%(5*time.Second) == 0 && testing.Verbose() {
			lim, rate := c.snapshot()
			t.Logf("t=%3.0fs refill %5.0f/s tokens %5.0f pace %6.1f/s limit %d", el.Seconds(), b.refill, b.tokens, rate, lim)
		}
		// Answers that arrived.
		kept := inflight[:0]
		for _, x := range inflight {
			if x.done.After(now) {
				kept = append(kept, x)
				continue
			}
			c.observe(x.sent, now, x.accepted, x.throttled)
			if x.throttled > 0 {
				c.pause(now, now.Add(b.retryAfter(batch)))
			}
			nBefore += before(el, x.accepted)
			nDuring += during(el, x.accepted)
			nAfter += after(el, x.accepted)
		}
		inflight = kept
		// Sends the pacer allows now (the work never runs out).
		for len(inflight) < c.limit() {
			if turn.IsZero() {
				turn = c.reserve(now, batch)
			}
			if turn.After(now) || c.holdUntil().After(now) {
				break
			}
			turn = time.Time{}
			acc := b.admit(batch)
			steps += batch
			throttled += batch - acc
			inflight = append(inflight, simBatch{sent: now, done: now.Add(latency), accepted: acc, throttled: batch - acc})
		}
	}
	share := func(n int, d time.Duration, r float64) float64 { return float64(n) / (r * d.Seconds()) }
	sBefore := share(nBefore, 30*time.Second, refill)
	sDuring := share(nDuring, cutEnd-cutStart, refill/10)
	sAfter := share(nAfter, 60*time.Second, refill)
	t.Logf("share of the refill used: before the cut %.2f, during %.2f, 60-120 s after %.2f; throttled %.1f%% of %d steps",
		sBefore, sDuring, sAfter, 100*float64(throttled)/float64(steps), steps)
	if sBefore < 0.9 {
		t.Errorf("before the cut the pacer used %.2f of the refill; want >= 0.9", sBefore)
	}
	if sAfter < 0.8 {
		t.Errorf("60-120 s after the cut ended the pacer used %.2f of the restored refill; want >= 0.8", sAfter)
	}
	if share := float64(throttled) / float64(steps); share > 0.1 {
		t.Errorf("%.1f%% of steps throttled; want < 10%%", 100*share)
	}
}
