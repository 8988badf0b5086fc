package graphsim_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/graphsim"
)

type step = map[string]any

func batchOf(steps ...step) map[string]any { return map[string]any{"requests": steps} }

func createStep(id, upn string, dependsOn ...string) step {
	s := step{"id": id, "method": "POST", "url": "/users", "headers": map[string]string{"content-type": "application/json"}, "body": userBody(upn)}
	if len(dependsOn) > 0 {
		s["dependsOn"] = dependsOn
	}
	return s
}

func stepResponses(t *testing.T, a answer) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	rs, _ := a.body["responses"].([]any)
	for _, x := range rs {
		m := x.(map[string]any)
		out[m["id"].(string)] = m
	}
	return out
}

// TestBatchRules: the documented JSON batching rules.
func TestBatchRules(t *testing.T) {
	_, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{})
	r := newRaw(t, srv, seeded)
	t.Run("21_steps_is_400", func(t *testing.T) {
		var steps []step
		for i := 0; i < 21; i++ {
			steps = append(steps, step{"id": strconv.Itoa(i), "method": "GET", "url": "/users"})
		}
		a := r.do("POST", "/$batch", batchOf(steps...))
		if a.status != 400 || a.message() != "Number of requests inside batch exceeds the limit." {
			t.Fatalf("%d %v", a.status, a.body)
		}
	})
	t.Run("20_steps_is_200", func(t *testing.T) {
		var steps []step
		for i := 0; i < 20; i++ {
			steps = append(steps, step{"id": strconv.Itoa(i), "method": "GET", "url": "/users?$top=1"})
		}
		if a := r.do("POST", "/$batch", batchOf(steps...)); a.status != 200 || len(stepResponses(t, a)) != 20 {
			t.Fatalf("%d", a.status)
		}
	})
	t.Run("duplicate_ids_are_400", func(t *testing.T) {
		a := r.do("POST", "/$batch", batchOf(step{"id": "1", "method": "GET", "url": "/users"}, step{"id": "1", "method": "GET", "url": "/users"}))
		if a.status != 400 {
			t.Fatalf("%d", a.status)
		}
	})
	t.Run("body_without_content_type_is_400", func(t *testing.T) {
		a := r.do("POST", "/$batch", batchOf(step{"id": "1", "method": "PATCH", "url": "/users/x", "body": step{"city": "x"}}))
		if a.status != 400 {
			t.Fatalf("%d", a.status)
		}
	})
	t.Run("malformed_batch_is_400", func(t *testing.T) {
		if a := r.do("POST", "/$batch", []int{1}); a.status != 400 {
			t.Fatalf("%d", a.status)
		}
	})
	t.Run("absolute_step_url_fails_that_step", func(t *testing.T) {
		a := r.do("POST", "/$batch", batchOf(step{"id": "1", "method": "GET", "url": srv.GraphURL + "/users"}))
		if s := stepResponses(t, a)["1"]; a.status != 200 || s["status"] != float64(400) {
			t.Fatalf("%d %v", a.status, s)
		}
	})
	t.Run("failed_dependency_is_424_and_batch_is_200", func(t *testing.T) {
		r.mustCreate("exists@" + seeded.Domain)
		a := r.do("POST", "/$batch", batchOf(
			createStep("a", "exists@"+seeded.Domain),
			createStep("b", "after-a@"+seeded.Domain, "a"),
			createStep("c", "independent@"+seeded.Domain),
		))
		s := stepResponses(t, a)
		if a.status != 200 || s["a"]["status"] != float64(400) || s["b"]["status"] != float64(424) || s["c"]["status"] != float64(201) {
			t.Fatalf("%d a=%v b=%v c=%v", a.status, s["a"]["status"], s["b"]["status"], s["c"]["status"])
		}
		body, _ := s["a"]["body"].(map[string]any)
		if e, _ := body["error"].(map[string]any); e["code"] != "Request_BadRequest" || e["innerError"] == nil {
			t.Fatalf("step error body %v", body)
		}
	})
	t.Run("step_is_same_as_direct_call", func(t *testing.T) {
		a := r.do("POST", "/$batch", batchOf(step{"id": "1", "method": "GET", "url": "/users/nosuch@" + seeded.Domain}))
		direct := r.do("GET", "/users/nosuch@"+seeded.Domain, nil)
		s := stepResponses(t, a)["1"]
		if s["status"] != float64(direct.status) || s["body"].(map[string]any)["error"].(map[string]any)["code"] != direct.code() {
			t.Fatalf("step %v vs direct %d %s", s, direct.status, direct.code())
		}
	})
}

func TestBatchShuffle(t *testing.T) {
	_, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{ShuffleBatch: true, Seed: 3})
	r := newRaw(t, srv, seeded)
	var steps []step
	for i := 0; i < 20; i++ {
		steps = append(steps, step{"id": strconv.Itoa(i), "method": "GET", "url": "/users?$top=1"})
	}
	a := r.do("POST", "/$batch", batchOf(steps...))
	inOrder := true
	for i, x := range a.body["responses"].([]any) {
		if x.(map[string]any)["id"] != strconv.Itoa(i) {
			inOrder = false
		}
	}
	if inOrder {
		t.Fatal("ShuffleBatch answered in request order")
	}
}

// inProcess calls the handler directly (no TLS), for tests that need many
// requests fast.
func inProcess(sim *graphsim.Sim, token, method, path string, body any) *httptest.ResponseRecorder {
	var b []byte
	if body != nil {
		b, _ = json.Marshal(body)
	}
	req := httptest.NewRequest(method, "https://127.0.0.1/v1.0"+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	sim.ServeHTTP(w, req)
	return w
}

// inProcessHdr is inProcess for a GET with one extra header.
func inProcessHdr(sim *graphsim.Sim, token, method, path, hk, hv string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, "https://127.0.0.1/v1.0"+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set(hk, hv)
	w := httptest.NewRecorder()
	sim.ServeHTTP(w, req)
	return w
}

// TestThrottledStepInsideBatch: when the write quota (3,000 per app+tenant)
// is spent, steps get their own 429 + Retry-After while the batch is 200.
func TestThrottledStepInsideBatch(t *testing.T) {
	sim, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{Throttling: true})
	r := newRaw(t, srv, seeded)
	var steps []step
	for i := 0; i < 20; i++ {
		steps = append(steps, step{"id": strconv.Itoa(i), "method": "PATCH", "url": "/users/00000000-0000-0000-0000-000000000000",
			"headers": map[string]string{"Content-Type": "application/json"}, "body": step{"city": "x"}})
	}
	// 3,000 writes spend the burst; the extra batches eat what refilled
	// meanwhile (20/s), however slow this machine is.
	for i := 0; i < 200; i++ {
		inProcess(sim, r.token, "POST", "/$batch", batchOf(steps...))
	}
	sim.ResetCounters()
	a := r.do("POST", "/$batch", batchOf(steps...))
	if a.status != 200 {
		t.Fatalf("batch %d", a.status)
	}
	throttled := 0
	for _, s := range stepResponses(t, a) {
		if s["status"] != float64(429) {
			continue
		}
		throttled++
		h := s["headers"].(map[string]any)
		ra, err := strconv.ParseFloat(fmt.Sprint(h["Retry-After"]), 64)
		if err != nil || ra < 1 {
			t.Fatalf("Retry-After %v", h["Retry-After"])
		}
		if h["X-Ms-Throttle-Scope"] != "Tenant_Application/Write/"+seeded.ClientID+"/"+seeded.TenantID || h["X-Ms-Throttle-Information"] != "WriteLimitExceeded" {
			t.Fatalf("headers %v", h)
		}
		if s["body"].(map[string]any)["error"].(map[string]any)["code"] != "TooManyRequests" {
			t.Fatalf("body %v", s["body"])
		}
	}
	if throttled < 15 {
		t.Fatalf("only %d of 20 steps throttled after the write burst", throttled)
	}
	if c := sim.Counters(); c.Throttled != int64(throttled) {
		t.Fatalf("counter %d vs %d", c.Throttled, throttled)
	}
}

// TestThrottlingPrecision: 64 concurrent clients hammering writes get
// exactly the write budget, on the emulator's own clock (no wall time, so
// a slow or loaded machine cannot change the answer): the 3,000-write burst
// at a frozen instant, then each second of refill (3,000 / 150 s, time
// ×50: 1,000 writes) and not one write more, however the requests race.
func TestThrottlingPrecision(t *testing.T) {
	const scale, clients = 50.0, 64
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	sim, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{Throttling: true, TimeScale: scale,
		Now: func() time.Time { return time.Unix(0, clock.Load()) }})
	r := newRaw(t, srv, seeded)
	id := r.mustCreate("target@" + seeded.Domain)
	sim.ResetThrottling()
	// hammer sends attempts PATCHes from the clients at once.
	hammer := func(attempts int) (admitted, throttled int64, scaledRetry bool) {
		var a, th atomic.Int64
		var sawScaledRetry atomic.Bool
		var wg sync.WaitGroup
		for c := 0; c < clients; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := 0; n < attempts/clients; n++ {
					w := inProcess(sim, r.token, "PATCH", "/users/"+id, map[string]any{"jobTitle": "x"})
					switch w.Code {
					case http.StatusNoContent:
						a.Add(1)
					case http.StatusTooManyRequests:
						th.Add(1)
						if ra, err := strconv.ParseFloat(w.Header().Get("Retry-After"), 64); err == nil && ra < 1 {
							sawScaledRetry.Store(true)
						}
					default:
						t.Errorf("status %d", w.Code)
						return
					}
				}
			}()
		}
		wg.Wait()
		return a.Load(), th.Load(), sawScaledRetry.Load()
	}
	if a, th, _ := hammer(clients * 60); a != 3000 || th != clients*60-3000 {
		t.Fatalf("burst at a frozen clock: %d admitted, %d throttled; want the 3000-write burst exactly", a, th)
	}
	for sec := 1; sec <= 3; sec++ {
		clock.Add(int64(time.Second))
		a, th, scaled := hammer(clients * 25)
		t.Logf("second %d: %d admitted, %d throttled", sec, a, th)
		// 1,000 tokens refilled; float rounding may leave the last one a
		// hair short of whole.
		if a < 999 || a > 1000 {
			t.Fatalf("second %d: %d admitted; want the refill of 1000 (3000 / 150 s × %.0f)", sec, a, scale)
		}
		if !scaled {
			t.Fatalf("second %d: no Retry-After below 1 s on a 429 (time ×%.0f)", sec, scale)
		}
	}
}

// TestThrottleHeadersDirect: a directly throttled call is 429 with the
// documented body and headers; busy responses carry the limit percentage.
func TestThrottleHeadersDirect(t *testing.T) {
	sim, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{Throttling: true})
	r := newRaw(t, srv, seeded)
	var sawPct bool
	var last *httptest.ResponseRecorder
	for i := 0; i < 3100; i++ {
		last = inProcess(sim, r.token, "DELETE", "/users/00000000-0000-0000-0000-000000000000", nil)
		if last.Header().Get("x-ms-throttle-limit-percentage") != "" {
			sawPct = true
		}
		if last.Code == 429 {
			break
		}
	}
	if last.Code != 429 || !sawPct {
		t.Fatalf("last %d, percentage header seen %v", last.Code, sawPct)
	}
	if last.Header().Get("x-ms-throttle-information") != "WriteLimitExceeded" || last.Header().Get("Retry-After") == "" {
		t.Fatalf("%v", last.Header())
	}
	// <Scope>/<Limit>/<ApplicationId>/<TenantId> (throttling-limits.md).
	if got, want := last.Header().Get("x-ms-throttle-scope"), "Tenant_Application/Write/"+seeded.ClientID+"/"+seeded.TenantID; got != want {
		t.Fatalf("x-ms-throttle-scope %q, want %q", got, want)
	}
	var body map[string]map[string]any
	_ = json.Unmarshal(last.Body.Bytes(), &body)
	if body["error"]["code"] != "TooManyRequests" || body["error"]["message"] != "Please retry again later." {
		t.Fatalf("%s", last.Body.String())
	}
	if a := r.do("GET", "/users?$top=5", nil); a.header.Get("x-ms-resource-unit") != "1" {
		t.Fatalf("GET users $top=5 should cost 2-1=1 RU, got %q", a.header.Get("x-ms-resource-unit"))
	}
}
