package directory

import (
	"math"
	"strings"
	"sync"
	"time"
)

// Graph's write quotas are token buckets shared at three scopes
// (throttling-limits.md, "Identity and access service limits";
// https://learn.microsoft.com/graph/throttling-limits#identity-and-access-service-limits):
// per app per tenant, per app across all tenants, per tenant across all
// apps. A client pacing alone learns only the first from its 429s, and two
// jobs on one app spend the same buckets blind to each other. Pacing is the
// process-wide registry that makes them share: one pacer per app and
// tenant, one bucket per app, one per tenant.

// Budget is one write quota: a token bucket of Writes that refills evenly
// over Window and starts full, as the service's does.
type Budget struct {
	Writes float64
	Window time.Duration
}

// rate is the steady refill in writes per second (0: no budget).
func (b Budget) rate() float64 {
	if b.Writes <= 0 || b.Window <= 0 {
		return 0
	}
	return b.Writes / b.Window.Seconds()
}

// Budgets are the write quotas a Pacing paces to. A zero Budget is not
// paced proactively (the learnt pacer still reacts to 429s).
type Budgets struct {
	AppTenant Budget // one app in one tenant: 3,000 / 150 s
	App       Budget // one app across all tenants: 70,000 / 5 min
	Tenant    Budget // one tenant across all apps: 18,000 / 5 min
}

// GraphBudgets are the documented write quotas of the identity and access
// service, the worker's defaults.
func GraphBudgets() Budgets {
	return Budgets{
		AppTenant: Budget{Writes: 3000, Window: 150 * time.Second},
		App:       Budget{Writes: 70000, Window: 5 * time.Minute},
		Tenant:    Budget{Writes: 18000, Window: 5 * time.Minute},
	}
}

// Scaled returns the budgets as an emulator running at quota factor quota
// and time scale timeScale enforces them: capacities × quota, windows ÷
// timeScale (graphsim's Options.TimeScale and /_sim/quota).
func (b Budgets) Scaled(quota, timeScale float64) Budgets {
	if timeScale <= 0 {
		timeScale = 1
	}
	s := func(x Budget) Budget {
		return Budget{Writes: x.Writes * quota, Window: time.Duration(float64(x.Window) / timeScale)}
	}
	return Budgets{AppTenant: s(b.AppTenant), App: s(b.App), Tenant: s(b.Tenant)}
}

// bucketRateHeadroom paces a proactive bucket just under its refill: the
// service admits a write when it arrives, not when we send it, so a batch
// overtaking an earlier one must not find the bucket a few writes short.
const bucketRateHeadroom = 0.99

// tokenBucket is the client's model of one of the service's write buckets.
// Tokens may go negative: each is a write reserved for a batch that waits
// its turn, so the reservations queue in order (first come, first sent).
type tokenBucket struct {
	mu       sync.Mutex
	capacity float64
	rate     float64 // writes per second
	tokens   float64
	last     time.Time
	hold     time.Time // a 429 of this scope asked for nothing before
}

func newTokenBucket(b Budget) *tokenBucket {
	r := b.rate()
	if r <= 0 {
		return nil
	}
	return &tokenBucket{capacity: b.Writes, rate: r * bucketRateHeadroom, tokens: b.Writes}
}

// refill adds what the time since the last call earned; nothing before
// begin (the service starts refilling a bucket when the first write
// reaches it, not when we reserve it: the first batch may wait for a
// token). Called with mu held.
func (b *tokenBucket) refill(now time.Time) {
	if b.last.IsZero() {
		return
	}
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens = math.Min(b.capacity, b.tokens+dt*b.rate)
		b.last = now
	}
}

// reserve takes n writes and returns when they may be sent: now if the
// bucket held them, else when the refill covers them and the reservations
// ahead. A nil bucket (no budget) never waits.
func (b *tokenBucket) reserve(now time.Time, n float64) time.Time {
	if b == nil {
		return now
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now)
	b.tokens -= n
	at := now
	if b.tokens < 0 {
		at = now.Add(time.Duration(-b.tokens / b.rate * float64(time.Second)))
	}
	if b.hold.After(at) {
		at = b.hold
	}
	return at
}

// begin starts the refill clock at the first answer, if not started: a
// little after the service's, which errs on the safe side.
func (b *tokenBucket) begin(now time.Time) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.last.IsZero() {
		b.last = now
	}
}

// drain follows a 429 of this scope asking for retryAfter: the service's
// bucket is short by what refills in that time, whatever ours believed (it
// may have started full when the service's did not, or another process
// spends the same quota). Reservations already handed out wait for hold.
func (b *tokenBucket) drain(now time.Time, retryAfter time.Duration) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now)
	b.tokens = math.Min(b.tokens, -retryAfter.Seconds()*b.rate)
	if t := now.Add(retryAfter); t.After(b.hold) {
		b.hold = t
	}
}

// holdUntil is the end of the last 429's wait (zero: none).
func (b *tokenBucket) holdUntil() time.Time {
	if b == nil {
		return time.Time{}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.hold
}

// Pacing is the process-wide registry of write pacers. Build one per
// process (NewPacing) and give it to every Client (Options.Pacing): the
// jobs of one app in one tenant then share one pacer (learnt rate and
// batches in flight), all jobs of one app share the app-wide bucket and
// all apps of one tenant the tenant bucket, so their writes together stay
// within the tightest budget that applies. It is safe for concurrent use.
type Pacing struct {
	budgets Budgets

	mu      sync.Mutex
	pacers  map[string]*pacer // by app and tenant
	apps    map[string]*tokenBucket
	tenants map[string]*tokenBucket
}

// NewPacing builds a registry pacing to budgets (GraphBudgets in the
// worker; scaled budgets against an emulator).
func NewPacing(budgets Budgets) *Pacing {
	return &Pacing{budgets: budgets, pacers: map[string]*pacer{},
		apps: map[string]*tokenBucket{}, tenants: map[string]*tokenBucket{}}
}

// Budgets returns the budgets the registry paces to.
func (p *Pacing) Budgets() Budgets { return p.budgets }

// pacerKey names the budgets a client draws on. The Graph host stands for
// the cloud (each cloud's service has its own quotas); ids are
// case-insensitive GUIDs.
type pacerKey struct{ app, tenant string }

func keyFor(ep endpoints, clientID, tenantID string) pacerKey {
	host := strings.ToLower(ep.graphURL)
	return pacerKey{app: host + "|" + strings.ToLower(clientID), tenant: host + "|" + strings.ToLower(tenantID)}
}

// join returns the shared pacer of an app in a tenant for one Execute,
// which must call leave when done. maxInflight is the caller's job's batch
// concurrency; jobs sharing a pacer share the largest. A pacer nobody used
// for controllerIdleReset starts over unpaced: the service's bucket has
// refilled meanwhile.
func (p *Pacing) join(k pacerKey, maxInflight int, now time.Time) *pacer {
	p.mu.Lock()
	defer p.mu.Unlock()
	pc := p.pacers[k.app+"\x00"+k.tenant]
	if pc == nil {
		app := p.apps[k.app]
		if app == nil {
			app = newTokenBucket(p.budgets.App)
			p.apps[k.app] = app
		}
		ten := p.tenants[k.tenant]
		if ten == nil {
			ten = newTokenBucket(p.budgets.Tenant)
			p.tenants[k.tenant] = ten
		}
		pc = &pacer{own: newTokenBucket(p.budgets.AppTenant), app: app, tenant: ten}
		p.pacers[k.app+"\x00"+k.tenant] = pc
	}
	if pc.users == 0 && (pc.ctl == nil || pc.ctl.idleSince(now) > controllerIdleReset ||
		int(pc.ctl.maxInflight) != maxInflight) {
		pc.ctl = newController(maxInflight)
	} else {
		pc.ctl.raiseMax(maxInflight)
	}
	pc.users++
	return pc
}

// leave ends an Execute's use of pc.
func (p *Pacing) leave(pc *pacer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pc.users--
}

const controllerIdleReset = 30 * time.Second

// pacer paces the writes of one app in one tenant, whichever jobs send
// them: the learnt controller (it reacts to the app-and-tenant 429s) and
// the three proactive buckets, the two shared ones with other pacers.
type pacer struct {
	users int // Executes using it (under Pacing.mu)
	ctl   *controller

	own    *tokenBucket // per app per tenant
	app    *tokenBucket // the app across tenants (shared)
	tenant *tokenBucket // the tenant across apps (shared)
}

// reserve takes n writes from every budget and returns when they may be
// sent: the latest of the four answers, so the tightest budget rules.
// Budgets that would have allowed an earlier send count the writes from
// the reservation on, which errs on the safe side.
func (pc *pacer) reserve(now time.Time, n int) time.Time {
	at := pc.ctl.reserve(now, n)
	for _, b := range []*tokenBucket{pc.own, pc.app, pc.tenant} {
		if t := b.reserve(now, float64(n)); t.After(at) {
			at = t
		}
	}
	return at
}

// holdUntil is the latest end of a 429's wait at any scope: a batch
// reserved before that 429 waits for it too.
func (pc *pacer) holdUntil() time.Time {
	h := pc.ctl.holdUntil()
	for _, b := range []*tokenBucket{pc.own, pc.app, pc.tenant} {
		if t := b.holdUntil(); t.After(h) {
			h = t
		}
	}
	return h
}

// throttleScope is which budget a 429 names in x-ms-throttle-scope
// (<Scope>/<Limit>/<AppId>/<TenantId>).
type throttleScope int

const (
	scopeAppTenant throttleScope = iota // Tenant_Application, or not said: the learnt pacer's
	scopeApp                            // Application/Write: the app across tenants
	scopeTenant                         // Tenant/Write: the tenant across apps
)

func parseThrottleScope(h string) throttleScope {
	scope, rest, _ := strings.Cut(h, "/")
	limit, _, _ := strings.Cut(rest, "/")
	if !strings.EqualFold(limit, "Write") {
		return scopeAppTenant
	}
	switch {
	case strings.EqualFold(scope, "Application"):
		return scopeApp
	case strings.EqualFold(scope, "Tenant"):
		return scopeTenant
	}
	return scopeAppTenant
}

// observe feeds what one answer said of the quota: accepted steps and
// 429s per scope, each scope's shortest Retry-After. The app-and-tenant
// 429s go to the learnt controller (an event and a pause) and drain the
// own bucket; a shared budget's 429s drain that bucket alone, so the
// controller does not learn another scope's rate as its own.
func (pc *pacer) observe(sent, now time.Time, accepted int, t *stepTally) {
	for _, b := range []*tokenBucket{pc.own, pc.app, pc.tenant} {
		b.begin(now)
	}
	for s, b := range [...]*tokenBucket{scopeApp: pc.app, scopeTenant: pc.tenant} {
		if throttleScope(s) != scopeAppTenant && t.byScope[s] > 0 && t.pause[s] > 0 {
			b.drain(now, t.pause[s])
		}
	}
	at := t.byScope[scopeAppTenant]
	if at > 0 && t.pause[scopeAppTenant] > 0 {
		pc.ctl.pause(now, now.Add(t.pause[scopeAppTenant]))
		pc.own.drain(now, t.pause[scopeAppTenant])
	}
	if at == 0 && t.throttled > 0 {
		// Only a shared budget throttled: count the accepted writes
		// towards the next measurement, but a congested batch is no
		// reason to open up.
		pc.ctl.count(now, accepted)
		return
	}
	pc.ctl.observe(sent, now, accepted, at)
}
