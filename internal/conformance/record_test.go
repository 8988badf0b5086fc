package conformance_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
)

// recorder sits under the SDK pipeline and notes, without changing
// anything, what the throttling story needs: the throttling headers of
// every Graph answer and of every $batch step (Graph puts a step's
// Retry-After inside the batch body), and the steps of each $batch sent.
// Authorization headers and bodies other than $batch answers are never
// kept.
type recorder struct {
	next http.RoundTripper

	mu      sync.Mutex
	answers []answer
	batches [][]string // "METHOD url" of each step, per $batch sent
}

// answer is one Graph answer (a request, or a step of a $batch).
type answer struct {
	where   string // "GET /v1.0/users" or "step PATCH /users/{id}"
	status  int
	headers map[string]string // throttling headers only, lower-case names
}

// throttleHeader says whether a header belongs to Graph's throttling
// signals (documented: Retry-After, x-ms-throttle-*, x-ms-resource-unit).
func throttleHeader(name string) bool {
	n := strings.ToLower(name)
	return n == "retry-after" || n == "x-ms-resource-unit" || strings.HasPrefix(n, "x-ms-throttle-")
}

func pick(h map[string][]string) map[string]string {
	out := map[string]string{}
	for k, v := range h {
		if throttleHeader(k) && len(v) > 0 && !strings.EqualFold(k, "x-ms-throttle-priority") {
			out[strings.ToLower(k)] = v[0]
		}
	}
	return out
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	isBatch := strings.HasSuffix(req.URL.Path, "/$batch")
	if isBatch && req.Body != nil {
		// Read the batch to note its steps, and send an identical copy:
		// a RoundTripper must not consume the caller's request.
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		req = req.Clone(req.Context())
		req.Body = io.NopCloser(bytes.NewReader(b))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
		var br struct {
			Requests []struct{ Method, URL string } `json:"requests"`
		}
		if json.Unmarshal(b, &br) == nil {
			steps := make([]string, len(br.Requests))
			for i, s := range br.Requests {
				steps[i] = s.Method + " " + s.URL
			}
			r.mu.Lock()
			r.batches = append(r.batches, steps)
			r.mu.Unlock()
		}
	}
	resp, err := r.next.RoundTrip(req)
	if err != nil || !strings.Contains(req.URL.Path, "/v1.0/") {
		return resp, err
	}
	got := []answer{{where: req.Method + " " + req.URL.Path, status: resp.StatusCode, headers: pick(resp.Header)}}
	if isBatch && resp.StatusCode == http.StatusOK {
		b, rerr := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(b))
		if rerr != nil {
			return resp, nil
		}
		var br struct {
			Responses []struct {
				ID      string            `json:"id"`
				Status  int               `json:"status"`
				Headers map[string]string `json:"headers"`
			} `json:"responses"`
		}
		if json.Unmarshal(b, &br) == nil {
			for _, s := range br.Responses {
				h := map[string][]string{}
				for k, v := range s.Headers {
					h[k] = []string{v}
				}
				got = append(got, answer{where: "step " + s.ID, status: s.Status, headers: pick(h)})
			}
		}
	}
	r.mu.Lock()
	r.answers = append(r.answers, got...)
	r.mu.Unlock()
	return resp, nil
}

// reset forgets what was recorded so far.
func (r *recorder) reset() {
	r.mu.Lock()
	r.answers, r.batches = nil, nil
	r.mu.Unlock()
}

func (r *recorder) snapshot() ([]answer, [][]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]answer(nil), r.answers...), append([][]string(nil), r.batches...)
}

// throttleReport summarises the answers: statuses, and per throttling
// header the values seen with their counts, plus every 429 in full.
func throttleReport(answers []answer) (report string, throttled int) {
	statuses := map[int]int{}
	values := map[string]map[string]int{}
	var lines []string
	for _, a := range answers {
		statuses[a.status]++
		for k, v := range a.headers {
			if values[k] == nil {
				values[k] = map[string]int{}
			}
			values[k][v]++
		}
		if a.status == http.StatusTooManyRequests {
			throttled++
			if throttled <= 5 {
				lines = append(lines, fmt.Sprintf("  429 %s %v", a.where, a.headers))
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d answers (requests and batch steps), by status %v\n", len(answers), statuses)
	names := make([]string, 0, len(values))
	for k := range values {
		names = append(names, k)
	}
	sort.Strings(names)
	if len(names) == 0 {
		b.WriteString("  no throttling header in any answer\n")
	}
	for _, k := range names {
		vs := make([]string, 0, len(values[k]))
		for v, n := range values[k] {
			vs = append(vs, fmt.Sprintf("%q×%d", v, n))
		}
		sort.Strings(vs)
		if len(vs) > 8 {
			vs = append(vs[:8], fmt.Sprintf("… %d more values", len(vs)-8))
		}
		fmt.Fprintf(&b, "  %s: %s\n", k, strings.Join(vs, ", "))
	}
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	return b.String(), throttled
}
