package directory_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/microsoftgraph/msgraph-sdk-go/models"

	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/graphsim"
)

// Documented write quota per app and tenant (throttling-limits.md):
// 3,000 writes per 150 s, a token bucket that starts full.
const (
	writeBurst  = 3000.0
	writeWindow = 150 * time.Second
	benchScale  = 50.0
	benchUsers  = 10000
	naiveSample = 1000
)

// idealSeconds is the throttle-limited minimum time for n writes: the burst
// is free, the rest arrives at the refill rate (time-scaled like graphsim).
func idealSeconds(n int, scale float64) float64 {
	refill := writeBurst / writeWindow.Seconds() * scale
	return max(0, float64(n)-writeBurst) / refill
}

// BenchmarkCreate10k creates 10,000 users through the executor against
// graphsim with the documented write quota and default latency, time-scaled
// ×50, and compares with the ideal from the bucket and with a naive client
// (one SDK POST per user, sequential) timed on a 1,000-user sample and
// extrapolated linearly: at its speed it never reaches the quota, so the
// extrapolation holds.
//
// The speed-up over the naive client is bounded by the quota, not by the
// executor: the naive client writes 1/latency users per second, the best
// possible client 20 per second after the burst. With graphsim's default
// write latency (120 ms) the bound is about 5×; a 20× speed-up needs a
// per-call latency of 0.7 s or more. speedup_max reports the bound.
func BenchmarkCreate10k(b *testing.B) {
	so := graphsim.Options{Throttling: true, TimeScale: benchScale, Latency: graphsim.DefaultLatency(), Seed: 3}
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		e := newEnv(b, so, nil)
		ops := make([]directory.Operation, benchUsers)
		for k := range ops {
			ops[k] = createOp(int64(k), e.seeded.Domain, k)
		}
		b.StartTimer()
		start := time.Now()
		res, stats := run(b, context.Background(), e.c, ops)
		actual := time.Since(start).Seconds()
		b.StopTimer()
		for _, r := range res {
			if r.Outcome != directory.Succeeded {
				b.Fatalf("op %d: %s %v", r.Key, r.Outcome, r.Err)
			}
		}
		if d := e.sim.Counters().Duplicates(); len(d) > 0 {
			b.Fatalf("duplicates: %v", d)
		}
		ideal := idealSeconds(benchUsers, benchScale)
		naive := naiveSeconds(b, so) * benchUsers / naiveSample
		b.ReportMetric(float64(benchUsers)/actual, "users/s")
		b.ReportMetric(float64(stats.Requests), "requests")
		b.ReportMetric(float64(stats.Batches), "batches")
		b.ReportMetric(float64(stats.Throttled), "429s")
		b.ReportMetric(ideal, "ideal_s")
		b.ReportMetric(actual, "actual_s")
		b.ReportMetric(ideal/actual, "efficiency")
		b.ReportMetric(naive, "naive_s")
		b.ReportMetric(naive/actual, "speedup")
		// No client can beat the quota: naive/ideal is the largest speed-up
		// possible against this naive client under this latency model.
		b.ReportMetric(naive/ideal, "speedup_max")
		b.Logf("%d users in %.2fs (%.0f users/s, scaled ×%.0f): %d requests, %d batches, %d steps, %d 429s; ideal %.2fs → efficiency %.3f; naive (1 SDK call/user, sequential, %d-user sample ×%d) %.1fs → speed-up %.1f× (quota-bound maximum %.1f×)",
			benchUsers, actual, float64(benchUsers)/actual, benchScale, stats.Requests, stats.Batches, stats.Steps, stats.Throttled,
			ideal, ideal/actual, naiveSample, benchUsers/naiveSample, naive, naive/actual, naive/ideal)
	}
}

// naiveSeconds times naiveSample sequential POST /users through the SDK's
// typed API on a fresh emulator with the same options.
func naiveSeconds(b *testing.B, so graphsim.Options) float64 {
	e := newEnv(b, so, nil)
	ctx := context.Background()
	start := time.Now()
	for k := 0; k < naiveSample; k++ {
		u := models.NewUser()
		upn := fmt.Sprintf("naive%05d@%s", k, e.seeded.Domain)
		nick := fmt.Sprintf("naive%05d", k)
		name := "Naive"
		enabled := true
		pw := "Init-Pw-" + nick + "!"
		u.SetUserPrincipalName(&upn)
		u.SetMailNickname(&nick)
		u.SetDisplayName(&name)
		u.SetAccountEnabled(&enabled)
		pp := models.NewPasswordProfile()
		pp.SetPassword(&pw)
		u.SetPasswordProfile(pp)
		if _, err := e.c.SDK().Users().Post(ctx, u, nil); err != nil {
			b.Fatalf("naive create %d: %v", k, err)
		}
	}
	return time.Since(start).Seconds()
}
