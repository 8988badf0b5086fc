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
	capacity float64
	tokens   float64
	rate     float64 // tokens per second (already time-scaled)
	last     time.Time
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
}

func newThrottler(scale float64) *throttler {
	return &throttler{scale: scale, buckets: map[bucketKey]*bucket{}}
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
	rate := capacity / window.Seconds() * th.scale
	if b == nil {
		b = &bucket{capacity: capacity, tokens: capacity, rate: rate, last: now}
		th.buckets[k] = b
		return b
	}
	if b.capacity != capacity { // tenant grew into another size class
		b.capacity, b.rate = capacity, rate
	}
	b.refill(now)
	return b
}

// admit charges ru resource units and w writes against every bucket that
// applies, or charges nothing and says how long until all would admit it.
func (th *throttler) admit(app, tid, size string, ru, w float64, now func() time.Time) decision {
	th.mu.Lock()
	defer th.mu.Unlock()
	t := now() // read under the lock so bucket time only moves forward
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
				d.scope = throttleScope(c.k)
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

// throttleScope renders x-ms-throttle-scope:
// <Scope>/<Limit>/<ApplicationId>/<TenantId>.
func throttleScope(k bucketKey) string {
	limit := k.limit
	if limit == "ResourceUnit" || limit == "Request" {
		limit = "ReadWrite"
	}
	switch k.scope {
	case "Tenant":
		return "Tenant/" + limit + "/" + k.tid
	case "Application":
		return "Application/" + limit + "/" + k.app
	default:
		return "Tenant_Application/" + limit + "/" + k.app + "/" + k.tid
	}
}

// reset refills every bucket (admin reset).
func (th *throttler) reset() {
	th.mu.Lock()
	defer th.mu.Unlock()
	th.buckets = map[bucketKey]*bucket{}
}
