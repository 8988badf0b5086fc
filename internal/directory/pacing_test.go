package directory

import (
	"testing"
	"time"
)

func TestParseThrottleScope(t *testing.T) {
	for _, tc := range []struct {
		header string
		want   throttleScope
	}{
		{"Tenant_Application/Write/app/tid", scopeAppTenant},
		{"Application/Write/app/tid", scopeApp},
		{"Tenant/Write/app/tid", scopeTenant},
		{"application/write/app/tid", scopeApp},
		// A resource-unit or request limit is not a write budget: the
		// learnt pacer reacts to it as before.
		{"Application/ReadWrite/app/tid", scopeAppTenant},
		{"", scopeAppTenant},
		{"garbage", scopeAppTenant},
	} {
		if got := parseThrottleScope(tc.header); got != tc.want {
			t.Errorf("parseThrottleScope(%q) = %d, want %d", tc.header, got, tc.want)
		}
	}
}

func TestScaledBudgets(t *testing.T) {
	b := GraphBudgets().Scaled(0.1, 20)
	if b.App.Writes != 7000 || b.App.Window != 15*time.Second {
		t.Fatalf("app budget %+v; want 7,000 per 15 s", b.App)
	}
	// The steady rates scale by quota × time scale: 233.3/s × 2.
	if r := b.App.rate(); r < 466 || r > 467 {
		t.Fatalf("app rate %.1f/s; want 466.7", r)
	}
	if b.AppTenant.Writes != 300 || b.Tenant.Writes != 1800 {
		t.Fatalf("budgets %+v", b)
	}
}

// TestPacingSharesBudgets drives the registry's arithmetic without I/O:
// two jobs of one app and tenant get one pacer, jobs in other tenants
// share the app's bucket, and a 429 naming a shared scope holds every
// pacer drawing on it.
func TestPacingSharesBudgets(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	// App-wide: 100 writes, 10/s. Per tenant: 1,000, 100/s. Per app and
	// tenant: 1,000, 100/s. The app budget is the tightest.
	p := NewPacing(Budgets{
		AppTenant: Budget{Writes: 1000, Window: 10 * time.Second},
		App:       Budget{Writes: 100, Window: 10 * time.Second},
		Tenant:    Budget{Writes: 1000, Window: 10 * time.Second},
	})
	ka := pacerKey{app: "g|app", tenant: "g|t1"}
	kb := pacerKey{app: "g|app", tenant: "g|t2"}
	a1 := p.join(ka, 8, t0)
	a2 := p.join(ka, 4, t0)
	b := p.join(kb, 8, t0)
	if a1 != a2 || a1.ctl != a2.ctl {
		t.Fatal("two jobs of one app and tenant got different pacers")
	}
	if a1 == b || a1.app != b.app || a1.tenant == b.tenant {
		t.Fatal("tenants of one app must share the app bucket and nothing else")
	}
	if a1.ctl.limit() != 8 {
		t.Fatalf("shared in-flight limit %d; want the larger job's 8", a1.ctl.limit())
	}

	// The burst (100) goes at once, in turns; then one batch of 20 every
	// 2 s at the app's 10/s (less the headroom), whichever tenant asks.
	var last time.Time
	for i, pc := range []*pacer{a1, b, a2, b, a1, b, a2, b} {
		at := pc.reserve(t0, 20)
		switch {
		case i < 5 && !at.Equal(t0):
			t.Fatalf("batch %d within the burst waits until %v", i, at.Sub(t0))
		case i >= 5:
			gap := at.Sub(last)
			if gap < 2*time.Second || gap > 2100*time.Millisecond {
				t.Fatalf("batch %d: %v after the previous; want ~2 s (20 writes at 10/s)", i, gap)
			}
		}
		last = at
	}

	// A 429 of the app-wide scope in tenant 1 holds tenant 2 too, and
	// does not touch the learnt controller (not its scope).
	var tally stepTally
	tally.count(429, &GraphError{Status: 429, RetryAfter: 30 * time.Second, throttleScope: "Application/Write/app/t1"})
	a1.observe(t0, t0, 0, &tally)
	if h := b.holdUntil(); !h.Equal(t0.Add(30 * time.Second)) {
		t.Fatalf("tenant 2 held until %v; want 30 s", h.Sub(t0))
	}
	if a1.ctl.limit() != 8 || !a1.ctl.holdUntil().IsZero() {
		t.Fatal("an app-wide 429 must not cut the app-and-tenant controller")
	}
	// One of the app and tenant: the controller reacts and pauses.
	tally = stepTally{}
	tally.count(429, &GraphError{Status: 429, RetryAfter: 5 * time.Second, throttleScope: "Tenant_Application/Write/app/t1"})
	a1.observe(t0, t0.Add(time.Second), 0, &tally)
	if a1.ctl.limit() != 4 || !a1.ctl.holdUntil().Equal(t0.Add(6*time.Second)) {
		t.Fatalf("after an app-and-tenant 429: limit %d hold %v; want 4 and 6 s", a1.ctl.limit(), a1.ctl.holdUntil().Sub(t0))
	}
	if !b.ctl.holdUntil().IsZero() {
		t.Fatal("another tenant's controller paused")
	}

	// The in-flight slots are shared by both jobs of the app and tenant.
	for i := 0; i < 4; i++ {
		if ok, _ := a1.ctl.acquire(); !ok {
			t.Fatalf("slot %d refused under a limit of 4", i)
		}
	}
	ok, first := a2.ctl.acquire()
	if ok {
		t.Fatal("a fifth batch in flight over a shared limit of 4")
	}
	_, second := a1.ctl.acquire()
	a1.ctl.release()
	select {
	case <-first:
	default:
		t.Fatal("a release did not grant the slot to the first job waiting")
	}
	select {
	case <-second:
		t.Fatal("one release granted two slots")
	default:
	}
	// The second gives up: it leaves the queue, and a later release
	// grants nobody a slot it did not ask for.
	a1.ctl.cancelWait(second)
	a1.ctl.release()
	if ok, _ := a1.ctl.acquire(); !ok {
		t.Fatal("a freed slot stayed taken by a withdrawn request")
	}
	p.leave(a1)
	p.leave(a2)
	p.leave(b)
}
