package graphsim

import (
	"fmt"
	"testing"
	"time"
)

// TestThrottleScopeFormat: x-ms-throttle-scope is
// <Scope>/<Limit>/<ApplicationId>/<TenantId|UserId|ResourceId> for every
// scope, both ids "required" (throttling-limits.md, "Throttled responses
// requests"): the tenant-wide scope still names the calling app.
func TestThrottleScopeFormat(t *testing.T) {
	const app, tid = "0b6c2f7e-8d1a-4c1e-b6a3-2f4e9d0c7a11", "7e2d4c36-0c4b-4b7a-9a55-3f3f8a0b5e01"
	tests := []struct {
		k    bucketKey
		want string
	}{
		{bucketKey{scope: "Tenant_Application", limit: "Write", app: app, tid: tid}, "Tenant_Application/Write/" + app + "/" + tid},
		{bucketKey{scope: "Tenant_Application", limit: "ResourceUnit", app: app, tid: tid}, "Tenant_Application/ReadWrite/" + app + "/" + tid},
		{bucketKey{scope: "Tenant", limit: "Write", tid: tid}, "Tenant/Write/" + app + "/" + tid},
		{bucketKey{scope: "Application", limit: "Request", app: app}, "Application/ReadWrite/" + app + "/" + tid},
	}
	for _, tt := range tests {
		if got := throttleScope(tt.k, app, tid); got != tt.want {
			t.Errorf("%+v: %q, want %q", tt.k, got, tt.want)
		}
	}
}

// TestTenantScopeThrottleNamesTheApp drives the tenant-wide write bucket
// (18,000 / 5 min for all apps) empty with six apps of 3,000 writes each
// (their own app+tenant budget), then a seventh app's first write is
// refused in the Tenant scope, which names that app.
func TestTenantScopeThrottleNamesTheApp(t *testing.T) {
	th := newThrottler(1)
	start := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	now := func() time.Time { return start }
	const tid = "7e2d4c36-0c4b-4b7a-9a55-3f3f8a0b5e01"
	for i := range 6 {
		app := fmt.Sprintf("app-%d", i)
		for n := range 3000 {
			if d := th.admit(app, tid, "L", 1, 1, now); !d.ok {
				t.Fatalf("%s write %d refused (%s)", app, n, d.scope)
			}
		}
	}
	d := th.admit("app-6", tid, "L", 1, 1, now)
	if want := "Tenant/Write/app-6/" + tid; d.ok || d.scope != want {
		t.Fatalf("seventh app: ok %v scope %q, want refused in %q", d.ok, d.scope, want)
	}
}
