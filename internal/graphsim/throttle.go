package graphsim

import (
	"sync"
	"time"
)

// Identity and access service limits (Microsoft Graph throttling-limits,
// "Identity and access service limits"): token buckets that start full and
// refill continuously at capacity/window.
var (
	ruPerTenantSize = map[string]float64{"S": 3500, "M": 5000, "L": 8000}
)

const (
	ruWindowAppTenant = 10 * time.Second
	writesAppTenant   = 3000
	writeWindowAT     = 150 * time.Second
	ruApp             = 150000
	ruWindowApp       = 20 * time.Second
	writesApp         = 70000
	writeWindowApp    = 5 * time.Minute
	writesTenant      = 18000
	writeWindowTenant = 5 * time.Minute
	requestsApp       = 130000 // global limit, all services
	requestWindowApp  = 10 * time.Second
)

type bucket struct {
	base     float64       // capacity at quota factor 1 (the documented limit)
	window   time.Duration // the limit's window, unscaled
	capacity float64       // base × the quota factor in force
	tokens   float64
	rate     float64 // tokens per second (already time-scaled)
	last     time.Time
}

// resize applies a limit and a quota factor. Tokens above the new capacity
// are lost (a cut bites at once); below it they stay and refill at the new
// rate (a restored quota does not hand out a fresh burst).
func (b *bucket) resize(base float64, window time.Duration, factor, scale float64) {
	b.base, b.window = base, window
	b.capacity = base * factor
	b.rate = b.capacity / window.Seconds() * scale
	b.tokens = min(b.tokens, b.capacity)
}

// refill adds what the time since the last refill earned. Time never runs
// backwards for a bucket: concurrent callers may carry slightly older
// timestamps, and moving last back would pay the same interval twice.
func (b *bucket) refill(now time.Time) {
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens = min(b.capacity, b.tokens+dt*b.rate)
		b.last = now
	}
}

type bucketKey struct {
	scope string // Tenant_Application, Application, Tenant
	limit string // ResourceUnit, Write, Request
	app   string
	tid   string
}

type throttler struct {
	mu      sync.Mutex
	scale   float64
	buckets map[bucketKey]*bucket
	// factor multiplies every budget (capacity and refill rate) until
	// until; then it returns to 1 by itself (the /_sim/quota knob).
	factor float64
	until  time.Time
	// onExpire is told when a cut ends by itself (the Sim logs it).
	onExpire func(factor float64, at time.Time)
}

func newThrottler(scale float64) *throttler {
	return &throttler{scale: scale, buckets: map[bucketKey]*bucket{}, factor: 1}
}

// setFactor changes the quota factor at time at: every bucket is first
// refilled up to at under the old factor, then resized.
func (th *throttler) setFactor(f float64, at, until time.Time) {
	for _, b := range th.buckets {
		b.refill(at)
		b.resize(b.base, b.window, f, th.scale)
	}
	th.factor, th.until = f, until
}

// expire ends a quota cut whose time is up, as of its end time (the
// buckets earned at the cut rate until then, at the normal rate after).
func (th *throttler) expire(now time.Time) {
	if th.factor != 1 && !now.Before(th.until) {
		f, at := th.factor, th.until
		th.setFactor(1, at, time.Time{})
		if th.onExpire != nil {
			th.onExpire(f, at)
		}
	}
}

// setQuota multiplies the budgets by f from now for d (f = 1 or d <= 0:
// back to normal now).
func (th *throttler) setQuota(f float64, d time.Duration, now time.Time) {
	th.mu.Lock()
	defer th.mu.Unlock()
	if f == 1 || d <= 0 {
		th.setFactor(1, now, time.Time{})
		return
	}
	th.setFactor(f, now, now.Add(d))
}

// quota is the factor in force and how long it still holds.
func (th *throttler) quota(now time.Time) (float64, time.Duration) {
	th.mu.Lock()
	defer th.mu.Unlock()
	th.expire(now)
	if th.factor == 1 {
		return 1, 0
	}
	return th.factor, th.until.Sub(now)
}

type decision struct {
	ok         bool
	retryAfter time.Duration
	scope      string
	info       string
	pct        float64 // highest use of a limit after this request (0..1)
}

func (th *throttler) get(k bucketKey, capacity float64, window time.Duration, now time.Time) *bucket {
	b := th.buckets[k]
	if b == nil {
		b = &bucket{tokens: capacity * th.factor, last: now}
		b.resize(capacity, window, th.factor, th.scale)
		th.buckets[k] = b
		return b
	}
	b.refill(now)
	if b.base != capacity { // tenant grew into another size class
		b.resize(capacity, window, th.factor, th.scale)
	}
	return b
}

// admit charges ru resource units and w writes against every bucket that
// applies, or charges nothing and says how long until all would admit it.
func (th *throttler) admit(app, tid, size string, ru, w float64, now func() time.Time) decision {
	th.mu.Lock()
	defer th.mu.Unlock()
	t := now() // read under the lock so bucket time only moves forward
	th.expire(t)
	type charge struct {
		b    *bucket
		cost float64
		k    bucketKey
	}
	charges := make([]charge, 0, 6)
	add := func(scope, limit string, capacity float64, window time.Duration, cost float64) {
		if cost <= 0 {
			return
		}
		k := bucketKey{scope: scope, limit: limit, app: app}
		if scope != "Application" {
			k.tid = tid
		}
		if scope == "Tenant" {
			k.app = ""
		}
		charges = append(charges, charge{th.get(k, capacity, window, t), cost, k})
	}
	ruCap := ruPerTenantSize[size]
	if ruCap == 0 {
		ruCap = ruPerTenantSize["S"]
	}
	add("Tenant_Application", "Write", writesAppTenant, writeWindowAT, w)
	add("Tenant_Application", "ResourceUnit", ruCap, ruWindowAppTenant, ru)
	add("Tenant", "Write", writesTenant, writeWindowTenant, w)
	add("Application", "Write", writesApp, writeWindowApp, w)
	add("Application", "ResourceUnit", ruApp, ruWindowApp, ru)
	add("Application", "Request", requestsApp, requestWindowApp, 1)
	var d decision
	d.ok = true
	for _, c := range charges {
		if c.b.tokens < c.cost {
			wait := time.Duration((c.cost - c.b.tokens) / c.b.rate * float64(time.Second))
			if d.ok || wait > d.retryAfter {
				d.retryAfter = wait
				d.scope = throttleScope(c.k, app, tid)
				d.info = c.k.limit + "LimitExceeded"
			}
			d.ok = false
		}
	}
	if !d.ok {
		return d
	}
	for _, c := range charges {
		c.b.tokens -= c.cost
		d.pct = max(d.pct, 1-c.b.tokens/c.b.capacity)
	}
	return d
}

// throttleScope renders x-ms-throttle-scope in the documented format
// <Scope>/<Limit>/<ApplicationId>/<TenantId|UserId|ResourceId>, both ids
// "required" whatever the scope (throttling-limits, "Throttled responses
// requests"): the Tenant scope still names the calling app, and the
// Application scope the tenant of the request (the page gives no example
// of either; the request's own ids are the emulator's choice).
func throttleScope(k bucketKey, app, tid string) string {
	limit := k.limit
	if limit == "ResourceUnit" || limit == "Request" {
		limit = "ReadWrite"
	}
	return k.scope + "/" + limit + "/" + app + "/" + tid
}

// reset refills every bucket (admin reset); a quota cut stays in force.
func (th *throttler) reset() {
	th.mu.Lock()
	defer th.mu.Unlock()
	th.buckets = map[bucketKey]*bucket{}
}
