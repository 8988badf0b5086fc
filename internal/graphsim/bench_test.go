package graphsim_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/graphsim"
)

// BenchmarkGetUserTLS measures simple requests per second over TLS with
// throttling and latency off, clients in parallel: graphsim must never be
// the bottleneck of the worker's benchmarks (target ≥ 5,000 req/s on 2
// cores, client included).
func BenchmarkGetUserTLS(b *testing.B) {
	_, srv, seeded := graphsim.NewTestServer(b, graphsim.Options{})
	r := newRaw(b, srv, seeded)
	id := r.mustCreate("bench@" + seeded.Domain)
	url := srv.GraphURL + "/users/" + id
	hc := srv.Client()
	b.SetParallelism(16)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest("GET", url, nil)
			req.Header.Set("Authorization", "Bearer "+r.token)
			resp, err := hc.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}

// BenchmarkBatchCreateTLS measures user creates per second through $batch
// (20 steps) over TLS, throttling and latency off.
func BenchmarkBatchCreateTLS(b *testing.B) {
	_, srv, seeded := graphsim.NewTestServer(b, graphsim.Options{})
	r := newRaw(b, srv, seeded)
	b.ResetTimer()
	start := time.Now()
	n := 0
	for i := 0; i < b.N; i++ {
		var steps []step
		for j := 0; j < 20; j++ {
			steps = append(steps, createStep(string(rune('a'+j)), "u"+itoa(n)+"@"+seeded.Domain))
			n++
		}
		if a := r.do("POST", "/$batch", batchOf(steps...)); a.status != 200 {
			b.Fatalf("batch %d", a.status)
		}
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "users/s")
}

// BenchmarkGetUserHandler is the handler alone (no TLS, no client).
func BenchmarkGetUserHandler(b *testing.B) {
	sim, srv, seeded := graphsim.NewTestServer(b, graphsim.Options{})
	r := newRaw(b, srv, seeded)
	id := r.mustCreate("bench@" + seeded.Domain)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if w := inProcess(sim, r.token, "GET", "/users/"+id, nil); w.Code != 200 {
				b.Errorf("status %d", w.Code)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}

func itoa(n int) string {
	const digits = "0123456789"
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{digits[n%10]}, b...)
	}
	return string(b)
}

// BenchmarkDeltaFullRead reads a 100,000-user tenant through /users/delta
// (999 per page, in process): the first sync of a large tenant must not be
// slowed by the emulator.
func BenchmarkDeltaFullRead(b *testing.B) {
	sim := graphsim.New(graphsim.Options{})
	seeded := sim.SeedDefault()
	const n = 100000
	for i := 0; i < n; i++ {
		sim.AddUser(seeded.TenantID, graphsim.UserSeed{UserPrincipalName: "u" + itoa(i) + "@" + seeded.Domain, DisplayName: "U", EmployeeID: itoa(i), AccountEnabled: true})
	}
	srv, err := graphsim.StartTLS(sim, "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	r := newRaw(b, srv, seeded)
	b.ResetTimer()
	start := time.Now()
	read := 0
	for i := 0; i < b.N; i++ {
		link := "/users/delta?$select=id,userPrincipalName,employeeId,accountEnabled"
		for link != "" {
			w := inProcessHdr(sim, r.token, "GET", link, "Prefer", "odata.maxpagesize=999")
			var page struct {
				Value []map[string]any `json:"value"`
				Next  string           `json:"@odata.nextLink"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &page); err != nil || w.Code != 200 {
				b.Fatalf("delta %d: %v", w.Code, err)
			}
			read += len(page.Value)
			link = strings.TrimPrefix(page.Next, "https://127.0.0.1/v1.0")
		}
	}
	b.ReportMetric(float64(read)/time.Since(start).Seconds(), "users/s")
}
