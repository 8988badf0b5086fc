package directory

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzParseGraphError feeds arbitrary error answers to the one place that
// reads Graph's error body. It must never fail or panic, keep the status,
// bound what it copies from a body that is not an OData error, never
// produce a negative Retry-After or one past MaxRetryAfter, and only ever
// carry text PostgreSQL accepts (valid UTF-8, no NUL).
func FuzzParseGraphError(f *testing.F) {
	f.Add(400, `{"error":{"code":"Request_BadRequest","message":"Another object with the same value for property userPrincipalName already exists.","details":[{"code":"ObjectConflict","target":"userPrincipalName"}],"innerError":{"request-id":"r1"}}}`, "", "")
	f.Add(429, `{"error":{"code":"TooManyRequests","message":"Too many requests"}}`, "2.5", "rid")
	f.Add(503, `<html>Service Unavailable</html>`, "Fri, 27 Nov 2026 12:00:05 GMT", "")
	f.Add(404, ``, "-1", "")
	f.Add(500, `{"error":{"code":""}}`, "NaN", "")
	f.Add(0, `{"error":{"code":"x","details":[]}}`, "1e400", "")
	f.Add(502, "<html>\x00Bad gateway \xe2\x82", "86400", "r\x00\xff")
	f.Add(400, `{"error":{"code":"a\u0000","message":"\ud800\u0000"}}`, "Fri, 27 Nov 2099 12:00:05 GMT", "")
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, status int, body, retryAfter, requestID string) {
		h := http.Header{}
		h.Set("Retry-After", retryAfter)
		h.Set("request-id", requestID)
		ge := parseGraphError(status, h, []byte(body), now)
		if ge == nil {
			t.Fatal("nil GraphError")
		}
		if ge.Status != status {
			t.Fatalf("status %d; want %d", ge.Status, status)
		}
		if ge.RetryAfter < 0 || ge.RetryAfter > MaxRetryAfter {
			t.Fatalf("Retry-After %v from %q; want 0..%v", ge.RetryAfter, retryAfter, MaxRetryAfter)
		}
		for _, v := range []string{ge.Code, ge.Message, ge.Target, ge.DetailCode, ge.RequestID} {
			if !utf8.ValidString(v) || strings.IndexByte(v, 0) >= 0 {
				t.Fatalf("unstorable text %q from body %q", v, body)
			}
		}
		if ge.Code == "" && http.StatusText(status) != "" {
			t.Fatalf("no code for status %d body %q", status, body)
		}
		if ge.Code == http.StatusText(status) && len(ge.Message) > 200+len("…") {
			t.Fatalf("excerpt of %d bytes; want at most 200", len(ge.Message))
		}
		_ = ge.Error()
		if parseGraphError(status, nil, []byte(body), now) == nil {
			t.Fatal("nil GraphError without headers")
		}
	})
}

// FuzzDecodeBatch feeds arbitrary $batch answers to the decoder. Whatever
// Graph (or a proxy) sends, each slot holds only the answer whose id is
// that slot's index, at most once: a step is never matched to another
// step's answer, which would record a failure as a success.
func FuzzDecodeBatch(f *testing.F) {
	f.Add(`{"responses":[{"id":"0","status":201,"body":{"id":"u1"}},{"id":"1","status":429,"headers":{"Retry-After":"1"}}]}`, 2)
	f.Add(`{"responses":[{"id":"1","status":204},{"id":"1","status":500},{"id":"7","status":204},{"id":"-1","status":204},{"id":"x","status":204}]}`, 2)
	f.Add(`{"responses":[]}`, 20)
	f.Add(`{"error":{"code":"BadRequest"}}`, 1)
	f.Add(`not json`, 3)
	f.Add(`{"responses":[{"id":"00","status":200}]}`, 1)
	f.Fuzz(func(t *testing.T, body string, n int) {
		if n < 0 || n > 20 {
			n = ((n % 21) + 21) % 21
		}
		out, err := decodeBatch([]byte(body), n)
		if err != nil {
			if out != nil {
				t.Fatal("slots returned with an error")
			}
			return
		}
		if len(out) != n {
			t.Fatalf("%d slots; want %d", len(out), n)
		}
		seen := map[*batchStepResponse]bool{}
		for i, r := range out {
			if r == nil {
				continue
			}
			if id, err := strconv.Atoi(r.ID); err != nil || id != i {
				t.Fatalf("slot %d holds the answer with id %q", i, r.ID)
			}
			if seen[r] {
				t.Fatalf("answer %q in two slots", r.ID)
			}
			seen[r] = true
			_ = r.header().Get("Retry-After")
			_ = createdID(r.Body)
		}
	})
}
