package directory

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name string
		in   string
		want time.Duration
		ok   bool
	}{
		{"whole_seconds", "10", 10 * time.Second, true},
		{"fractional_seconds_are_kept", "0.5", 500 * time.Millisecond, true},
		{"small_fraction_from_time_scaled_emulator", "0.02", 20 * time.Millisecond, true},
		{"spaces_trimmed", " 3 ", 3 * time.Second, true},
		{"http_date", now.Add(7 * time.Second).Format(http.TimeFormat), 7 * time.Second, true},
		{"past_http_date_is_zero", now.Add(-time.Minute).Format(http.TimeFormat), 0, true},
		{"empty_is_absent", "", 0, false},
		{"negative_is_invalid", "-1", 0, false},
		{"garbage_is_invalid", "soon", 0, false},
		{"a_day_is_read_as_asked", "86400", 24 * time.Hour, true},
		{"too_long_for_a_duration_saturates", "1e300", math.MaxInt64, true},
		{"out_of_float_range_saturates", "1e400", math.MaxInt64, true},
		{"far_future_http_date_is_read_as_asked", now.Add(30 * 24 * time.Hour).Format(http.TimeFormat), 30 * 24 * time.Hour, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseRetryAfter(tt.in, now)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("parseRetryAfter(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestParseGraphError(t *testing.T) {
	now := time.Now()
	t.Run("duplicate_upn_is_a_conflict", func(t *testing.T) {
		body := `{"error":{"code":"Request_BadRequest","message":"Another object with the same value for property userPrincipalName already exists.","innerError":{"request-id":"r-1","date":"2026-01-01T00:00:00"},"details":[{"target":"userPrincipalName","code":"ObjectConflict"}]}}`
		ge := parseGraphError(400, nil, []byte(body), now)
		if ge.Code != "Request_BadRequest" || ge.RequestID != "r-1" || ge.Target != "userPrincipalName" || ge.DetailCode != "ObjectConflict" {
			t.Fatalf("got %+v", ge)
		}
		if !isUPNConflict(ge) {
			t.Fatal("duplicate UPN not recognised")
		}
	})
	t.Run("bad_upn_is_not_a_conflict", func(t *testing.T) {
		body := `{"error":{"code":"Request_BadRequest","message":"Property userPrincipalName is invalid.","details":[{"target":"userPrincipalName","code":"InvalidValue"}]}}`
		if isUPNConflict(parseGraphError(400, nil, []byte(body), now)) {
			t.Fatal("invalid UPN taken for a conflict")
		}
	})
	t.Run("throttled_step_carries_retry_after_and_is_ErrThrottled", func(t *testing.T) {
		h := http.Header{}
		h.Set("Retry-After", "0.25")
		ge := parseGraphError(429, h, []byte(`{"error":{"code":"TooManyRequests","message":"Please retry again later."}}`), now)
		if ge.RetryAfter != 250*time.Millisecond {
			t.Fatalf("RetryAfter = %v", ge.RetryAfter)
		}
		var err error = ge
		if !errors.Is(err, ErrThrottled) {
			t.Fatal("429 is not ErrThrottled")
		}
		if errors.Is(parseGraphError(400, nil, nil, now), ErrThrottled) {
			t.Fatal("400 is ErrThrottled")
		}
	})
	t.Run("retry_after_past_the_cap_is_clamped", func(t *testing.T) {
		for _, v := range []string{"86400", "1e12", now.Add(400 * 24 * time.Hour).UTC().Format(http.TimeFormat)} {
			h := http.Header{}
			h.Set("Retry-After", v)
			ge := parseGraphError(429, h, nil, now)
			if ge.RetryAfter != MaxRetryAfter || ge.retryAfterAsked <= MaxRetryAfter {
				t.Fatalf("Retry-After %q: RetryAfter %v (asked %v); want %v", v, ge.RetryAfter, ge.retryAfterAsked, MaxRetryAfter)
			}
		}
	})
	t.Run("hostile_text_is_made_storable", func(t *testing.T) {
		// A proxy's page cut mid-character (\xe2\x82 is the start of "€"),
		// with NUL bytes and a terminal escape, and an OData error whose
		// JSON strings hold \u0000.
		html := append([]byte("<html>\x00Bad gateway \x1b[31m"), []byte(strings.Repeat("x", 300))...)
		html = append(html, 0xe2, 0x82)
		odata := `{"error":{"code":"Bad\u0000Code","message":"boom\u0000 \ud800","innerError":{"request-id":"r\u0000id"},"details":[{"target":"t\u0000","code":"c\u0000"}]}}`
		for name, ge := range map[string]*GraphError{
			"html":  parseGraphError(502, nil, html, now),
			"odata": parseGraphError(400, nil, []byte(odata), now),
		} {
			for field, v := range map[string]string{"code": ge.Code, "message": ge.Message, "target": ge.Target,
				"detail": ge.DetailCode, "request_id": ge.RequestID} {
				if !utf8.ValidString(v) || strings.ContainsAny(v, "\x00\x1b") {
					t.Errorf("%s: %s = %q; want valid UTF-8 without NUL or escape", name, field, v)
				}
			}
		}
		if m := parseGraphError(502, nil, html, now).Message; len(m) > 200+len("…") || !strings.HasPrefix(m, "<html>Bad gateway [31m") {
			t.Errorf("html excerpt %q (%d bytes); want the page's start, at most 200 bytes", m, len(m))
		}
		if m := parseGraphError(400, nil, []byte(odata), now).Message; m != "boom \uFFFD" {
			t.Errorf("odata message %q; want %q", m, "boom \uFFFD")
		}
	})
	t.Run("non_json_body_keeps_status_and_request_id_header", func(t *testing.T) {
		h := http.Header{}
		h.Set("request-id", "hdr-id")
		ge := parseGraphError(502, h, []byte("<html>bad gateway</html>"), now)
		if ge.Status != 502 || ge.RequestID != "hdr-id" || !strings.Contains(ge.Message, "bad gateway") {
			t.Fatalf("got %+v", ge)
		}
	})
}

func TestCleanText(t *testing.T) {
	tests := []struct {
		name, in string
		max      int
		want     string
	}{
		{"clean_text_is_kept", "Property userPrincipalName is invalid.", 100, "Property userPrincipalName is invalid."},
		{"tab_and_newline_are_kept", "a\tb\nc", 100, "a\tb\nc"},
		{"nul_and_controls_are_dropped", "a\x00b\x1bc\rd\x7f", 100, "abcd"},
		{"invalid_utf8_becomes_replacement", "caf\xc3", 100, "caf\uFFFD"},
		{"cut_at_a_rune_boundary", "ab€", 3, "ab…"},
		{"exact_length_is_not_cut", "abc", 3, "abc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := cleanText(tt.in, tt.max); got != tt.want {
				t.Fatalf("cleanText(%q, %d) = %q; want %q", tt.in, tt.max, got, tt.want)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name   string
		kind   OpKind
		status int
		want   retryClass
	}{
		{"throttled_waits", OpCreate, 429, retryThrottled},
		{"service_unavailable_retries", OpCreate, 503, retryTransient},
		{"gateway_timeout_retries", OpUpdate, 504, retryTransient},
		{"failed_dependency_retries", OpUpdate, 424, retryTransient},
		{"bad_request_is_final", OpCreate, 400, noRetry},
		{"forbidden_is_final", OpUpdate, 403, noRetry},
		{"patch_of_fresh_user_404_waits_for_consistency", OpUpdate, 404, retryNotYet},
		{"manager_ref_404_waits_for_consistency", OpSetManager, 404, retryNotYet},
		{"member_ref_404_waits_for_consistency", OpAddMember, 404, retryNotYet},
		{"delete_404_is_final", OpDelete, 404, noRetry},
		{"restore_404_is_final", OpRestore, 404, noRetry},
		{"not_implemented_is_final", OpCreate, 501, noRetry},
		{"expired_token_retries_once", OpCreate, 401, retryAuth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classify(tt.kind, tt.status); got != tt.want {
				t.Fatalf("classify(%s, %d) = %d, want %d", tt.kind, tt.status, got, tt.want)
			}
		})
	}
}

func TestBatchBody(t *testing.T) {
	base := "https://graph.example/v1.0"
	ops := []Operation{
		{Key: 1, Kind: OpCreate, Fields: map[string]any{"userPrincipalName": "a@x.test", "accountEnabled": true}, Password: "S3cret!pw", ForceChangePassword: true},
		{Key: 2, Kind: OpUpdate, ObjectID: "u2", Fields: map[string]any{"jobTitle": nil, "department": "R&D"}},
		{Key: 3, Kind: OpDelete, ObjectID: "u3"},
		{Key: 4, Kind: OpRestore, ObjectID: "u4"},
		{Key: 5, Kind: OpSetManager, ObjectID: "u5", RelatedID: "m5"},
		{Key: 6, Kind: OpRemoveManager, ObjectID: "u6"},
		{Key: 7, Kind: OpAddMember, ObjectID: "u7", RelatedID: "g7"},
		{Key: 8, Kind: OpRemoveMember, ObjectID: "u8", RelatedID: "g8"},
	}
	var steps []batchStep
	for _, op := range ops {
		s, err := stepRequest(op, base)
		if err != nil {
			t.Fatal(err)
		}
		steps = append(steps, s)
	}
	b, err := encodeBatch(steps)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Requests []struct {
			ID, Method, URL string
			Headers         map[string]string
			Body            map[string]any
		}
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := []struct{ method, url string }{
		{"POST", "/users"}, {"PATCH", "/users/u2"}, {"DELETE", "/users/u3"},
		{"POST", "/directory/deletedItems/u4/restore"}, {"PUT", "/users/u5/manager/$ref"},
		{"DELETE", "/users/u6/manager/$ref"}, {"POST", "/groups/g7/members/$ref"},
		{"DELETE", "/groups/g8/members/u8/$ref"},
	}
	for i, w := range want {
		r := got.Requests[i]
		if r.ID != string(rune('0'+i)) || r.Method != w.method || r.URL != w.url {
			t.Errorf("step %d = %s %s %s, want id %d %s %s", i, r.ID, r.Method, r.URL, i, w.method, w.url)
		}
		if (r.Body != nil) != (r.Headers["Content-Type"] == "application/json") {
			t.Errorf("step %d: body without Content-Type or the reverse", i)
		}
		// Graph refuses the whole batch when a write step lacks either
		// (json-batching: "only body can be an empty object"); DELETE has none.
		if write := r.Method != "DELETE"; write != (r.Body != nil) {
			t.Errorf("step %d %s: body %v, want one exactly for POST/PATCH/PUT", i, r.Method, r.Body)
		}
	}
	if b := got.Requests[3].Body; b == nil || len(b) != 0 {
		t.Errorf("restore body = %v, want {}", b)
	}
	pp, _ := got.Requests[0].Body["passwordProfile"].(map[string]any)
	if pp["password"] != "S3cret!pw" || pp["forceChangePasswordNextSignIn"] != true {
		t.Errorf("passwordProfile = %v", pp)
	}
	if v, ok := got.Requests[1].Body["jobTitle"]; !ok || v != nil {
		t.Errorf("nil field must be sent as null to clear it, got %v (present %v)", v, ok)
	}
	if got.Requests[4].Body["@odata.id"] != base+"/users/m5" || got.Requests[6].Body["@odata.id"] != base+"/directoryObjects/u7" {
		t.Errorf("references = %v, %v", got.Requests[4].Body, got.Requests[6].Body)
	}
	if strings.Contains((Operation{Password: "S3cret!pw"}).String(), "S3cret") {
		t.Error("Operation.String shows the password")
	}
	if _, err := stepRequest(Operation{Kind: OpUpdate}, base); err == nil {
		t.Error("update without object id accepted")
	}
}

func TestDecodeBatchMapsIdsBackAnyOrder(t *testing.T) {
	body := `{"responses":[
		{"id":"2","status":204,"headers":{}},
		{"id":"0","status":201,"headers":{"Content-Type":"application/json"},"body":{"id":"new-1"}},
		{"id":"7","status":200},
		{"id":"x","status":200},
		{"id":"1","status":429,"headers":{"retry-after":"1.5"},"body":{"error":{"code":"TooManyRequests","message":"Please retry again later."}}}]}`
	got, err := decodeBatch([]byte(body), 4)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Status != 201 || createdID(got[0].Body) != "new-1" {
		t.Errorf("step 0 = %+v", got[0])
	}
	if got[1].Status != 429 || got[1].header().Get("Retry-After") != "1.5" {
		t.Errorf("step 1 = %+v", got[1])
	}
	if got[2].Status != 204 {
		t.Errorf("step 2 = %+v", got[2])
	}
	if got[3] != nil {
		t.Errorf("unanswered step 3 must stay nil (retried, never taken for success), got %+v", got[3])
	}
	if _, err := decodeBatch([]byte("not json"), 1); err == nil {
		t.Error("garbage accepted")
	}
}

func TestController(t *testing.T) {
	t0 := time.Unix(1000, 0)
	t.Run("unpaced_until_throttled", func(t *testing.T) {
		c := newController(8)
		if at := c.reserve(t0, 20); !at.Equal(t0) || c.limit() != 8 {
			t.Fatalf("send at %v limit %d", at.Sub(t0), c.limit())
		}
	})
	t.Run("multiplicative_decrease_once_per_event", func(t *testing.T) {
		c := newController(8)
		c.observe(t0, t0.Add(100*time.Millisecond), 10, 5)
		if c.limit() != 4 {
			t.Fatalf("limit after 429 = %d, want 4", c.limit())
		}
		// A batch sent before the reaction reports the same congestion.
		c.observe(t0.Add(50*time.Millisecond), t0.Add(120*time.Millisecond), 0, 20)
		if c.limit() != 4 {
			t.Fatalf("limit after stale 429 = %d, want 4", c.limit())
		}
	})
	t.Run("additive_increase_when_clean", func(t *testing.T) {
		c := newController(8)
		c.observe(t0, t0, 0, 1) // 4
		for i := 0; i < 5; i++ {
			c.observe(t0.Add(time.Second), t0.Add(time.Second), 20, 0)
		}
		if c.limit() != 5 {
			t.Fatalf("limit = %d, want 5 after one window of clean batches", c.limit())
		}
	})
	t.Run("refill_rate_measured_between_two_events", func(t *testing.T) {
		c := newController(8)
		c.observe(t0, t0, 0, 3) // first event: bucket empty, start counting
		// 10 s later the bucket is empty again after 200 accepted steps: 20/s.
		c.observe(t0.Add(9*time.Second), t0.Add(10*time.Second), 200, 1)
		_, rate := c.snapshot()
		if rate < 19 || rate > 20 {
			t.Fatalf("rate = %.2f, want just under 20/s", rate)
		}
		// Paced: 20 steps take about a second.
		now := t0.Add(10 * time.Second)
		c.reserve(now, 20)
		c.reserve(now, 20)
		// Two batches reserved: the third waits about one batch's time
		// (one batch of tolerance, so batches go out whole).
		if d := c.reserve(now, 20).Sub(now); d < 900*time.Millisecond || d > 1100*time.Millisecond {
			t.Fatalf("third batch waits %v, want ~1s", d)
		}
	})
	t.Run("pause_holds_sends_until_retry_after", func(t *testing.T) {
		c := newController(2)
		c.pause(t0, t0.Add(3*time.Second))
		if d := c.reserve(t0, 1).Sub(t0); d != 3*time.Second {
			t.Fatalf("send after %v, want 3s", d)
		}
	})
}

func TestBackoffIsJitteredAndCapped(t *testing.T) {
	for n := 1; n < 20; n++ {
		d := backoff(n, time.Second, 30*time.Second)
		hi := time.Second << (n - 1)
		if hi > 30*time.Second || hi <= 0 {
			hi = 30 * time.Second
		}
		if d < hi/2 || d > hi {
			t.Fatalf("backoff(%d) = %v, want in [%v, %v]", n, d, hi/2, hi)
		}
	}
}

func TestJWTClaims(t *testing.T) {
	// header.payload.signature with payload {"roles":["User.ReadWrite.All"],"tid":"t1","appid":"a1"}
	tok := "eyJhbGciOiJub25lIn0.eyJyb2xlcyI6WyJVc2VyLlJlYWRXcml0ZS5BbGwiXSwidGlkIjoidDEiLCJhcHBpZCI6ImExIn0.c2ln"
	c, err := jwtClaims(tok)
	if err != nil || len(c.Roles) != 1 || c.Roles[0] != "User.ReadWrite.All" || c.TID != "t1" || c.AppID != "a1" {
		t.Fatalf("claims = %+v, %v", c, err)
	}
	if _, err := jwtClaims("secret-looking-but-not-a-jwt"); err == nil || strings.Contains(err.Error(), "secret-looking") {
		t.Fatalf("error %v must not echo the token", err)
	}
}

func TestDeltaRejected(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"users_expired_400_syncStateNotFound", &GraphError{Status: 400, Code: "syncStateNotFound", Message: "The sync state generation is not found. The delta token is expired and data must be synchronized again."}, true},
		{"other_resources_410_gone", &GraphError{Status: 410, Code: "SyncStateNotFound"}, true},
		{"wrapped_410", fmt.Errorf("users delta: %w", &GraphError{Status: 410}), true},
		{"404_naming_the_token", &GraphError{Status: 404, Code: "ResourceNotFound", Message: "Invalid delta token."}, true},
		{"other_400_is_not_a_reset", &GraphError{Status: 400, Code: "Request_BadRequest", Message: "Invalid filter clause"}, false},
		{"403_is_not_a_reset", &GraphError{Status: 403, Code: "Authorization_RequestDenied"}, false},
		{"transport_error", errors.New("connection reset"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := deltaRejected(tt.err); got != tt.want {
				t.Fatalf("deltaRejected(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}
