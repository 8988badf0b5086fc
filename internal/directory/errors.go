package directory

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ErrThrottled marks a failure caused by Graph throttling (HTTP 429) that
// outlived the executor's patience. errors.Is(err, ErrThrottled) is true for
// a *GraphError with Status 429.
var ErrThrottled = errors.New("graph: throttled")

// Is lets errors.Is(err, ErrThrottled) match a 429 GraphError.
func (e *GraphError) Is(target error) bool {
	return target == ErrThrottled && e.Status == http.StatusTooManyRequests
}

// odataError is the JSON error body Graph answers with, at the top level of
// a response and in the body of a failed $batch step.
type odataError struct {
	Error struct {
		Code       string `json:"code"`
		Message    string `json:"message"`
		InnerError struct {
			RequestID       string `json:"request-id"`
			ClientRequestID string `json:"client-request-id"`
		} `json:"innerError"`
		Details []struct {
			Target  string `json:"target"`
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"details"`
	} `json:"error"`
}

// parseGraphError builds a *GraphError from a status, the response headers
// (may be nil) and the body. It never fails: a body that is not an OData
// error still yields a GraphError carrying the status and a bounded excerpt.
// This is the one place that interprets Graph's error body, so it is also
// where the text from the wire is made safe to store (see cleanText) and
// where Retry-After is bounded (MaxRetryAfter).
func parseGraphError(status int, header http.Header, body []byte, now time.Time) *GraphError {
	ge := &GraphError{Status: status}
	var oe odataError
	if len(body) > 0 && json.Unmarshal(body, &oe) == nil && oe.Error.Code != "" {
		ge.Code = oe.Error.Code
		ge.Message = oe.Error.Message
		ge.RequestID = oe.Error.InnerError.RequestID
		if len(oe.Error.Details) > 0 {
			ge.Target = oe.Error.Details[0].Target
			ge.DetailCode = oe.Error.Details[0].Code
		}
	} else {
		ge.Code = http.StatusText(status)
		ge.Message = string(body)
	}
	if header != nil {
		if ge.RequestID == "" {
			ge.RequestID = header.Get("request-id")
		}
		if d, ok := parseRetryAfter(header.Get("Retry-After"), now); ok {
			ge.RetryAfter = d
		}
		ge.throttleScope = header.Get("x-ms-throttle-scope")
	}
	if status >= 300 && status < 400 {
		// The client follows no redirect (see middleware); say so rather
		// than quote the redirect page.
		where := "elsewhere"
		if u, err := url.Parse(header.Get("Location")); err == nil && u.Host != "" {
			where = u.Scheme + "://" + u.Host // never the path or query: they may carry a token
		}
		ge.Message = fmt.Sprintf("redirect to %s not followed: Graph does not redirect API calls; check graph_url and any proxy in between", where)
	}
	ge.clampRetryAfter(MaxRetryAfter)
	ge.sanitize()
	return ge
}

// Bounds of the text a GraphError carries. Graph's own messages are one
// sentence; anything longer is a proxy's page or garbage.
const (
	maxMessageLen = 1000 // an OData message
	maxExcerptLen = 200  // a body that is not an OData error
	maxFieldLen   = 200  // code, target, detail code, request id
)

// sanitize makes every text field safe to store and print: PostgreSQL text
// rejects NUL and invalid UTF-8, and a history row that cannot be written
// loses the very failure it should record. Graph answers with clean JSON;
// a proxy's HTML page cut mid-character, or a JSON string holding \u0000,
// does not.
func (e *GraphError) sanitize() {
	bound := maxMessageLen
	if e.Code == http.StatusText(e.Status) {
		bound = maxExcerptLen
	}
	e.Message = cleanText(strings.TrimSpace(e.Message), bound)
	e.Code = cleanText(e.Code, maxFieldLen)
	e.Target = cleanText(e.Target, maxFieldLen)
	e.DetailCode = cleanText(e.DetailCode, maxFieldLen)
	e.RequestID = cleanText(e.RequestID, maxFieldLen)
}

// cleanText returns s as valid UTF-8 (invalid sequences become U+FFFD)
// without NUL or other control characters except tab and newline (an
// escape sequence in a message would also reach the operator's terminal
// through `worker show`), cut at a rune boundary to at most max bytes
// plus "…".
func cleanText(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\t' && r != '\n' || r == 0x7f {
			return -1
		}
		return r
	}, s)
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// MaxRetryAfter is the longest Retry-After the worker honours (Options can
// lower it, not raise it). Graph asks for seconds, rarely a minute; a
// header asking for hours or days comes from a broken proxy or a hostile
// endpoint and must not park a run, so a larger value is clamped to this
// (and the client logs it once). The run's own deadline
// (jobs[].max_run_duration) bounds the sum of the waits.
const MaxRetryAfter = 5 * time.Minute

// clampRetryAfter bounds RetryAfter to limit, remembering what was asked.
func (e *GraphError) clampRetryAfter(limit time.Duration) {
	if e.RetryAfter > limit {
		if e.retryAfterAsked == 0 {
			e.retryAfterAsked = e.RetryAfter
		}
		e.RetryAfter = limit
	}
}

// parseRetryAfter reads a Retry-After value: delay-seconds, possibly
// fractional (observed in practice although RFC 9110 says integer; kiota
// truncates "0.5" to 0), or an HTTP-date. A delay too large for a
// time.Duration saturates; the caller clamps it to MaxRetryAfter.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	// A number out of float64's range (1e400) parses as ±Inf with ErrRange:
	// still a number, saturated below.
	if f, err := strconv.ParseFloat(v, 64); err == nil || errors.Is(err, strconv.ErrRange) {
		if f < 0 || f != f {
			return 0, false
		}
		if f >= float64(math.MaxInt64)/float64(time.Second) {
			return math.MaxInt64, true
		}
		return time.Duration(f * float64(time.Second)), true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// isUPNConflict says whether a create failed because another object already
// holds the userPrincipalName (400 Request_BadRequest with details code
// ObjectConflict; source: microsoft-graph-docs issue 1508).
func isUPNConflict(e *GraphError) bool {
	if e == nil || e.Status != http.StatusBadRequest {
		return false
	}
	if e.DetailCode == "ObjectConflict" {
		return true
	}
	// Some tenants answer without details; the message is then the only
	// signal. Kept here, next to the parser, and nowhere else.
	return e.Code == "Request_BadRequest" && strings.Contains(e.Message, "already exist") &&
		strings.Contains(strings.ToLower(e.Message), "userprincipalname")
}

// retryClass is what the executor does with a failed attempt.
type retryClass int

const (
	noRetry        retryClass = iota // the request is wrong or refused: report it
	retryThrottled                   // 429: wait for Retry-After
	retryTransient                   // 5xx, 424, network: jittered backoff
	retryNotYet                      // 404 on a fresh object: eventual consistency
	retryAuth                        // 401: the token expired between fetch and use
)

// classify decides whether a step's status is worth another attempt.
func classify(kind OpKind, status int) retryClass {
	switch {
	case status == http.StatusTooManyRequests:
		return retryThrottled
	case status == http.StatusFailedDependency, status == http.StatusRequestTimeout:
		return retryTransient
	case status >= 500:
		if status == http.StatusNotImplemented || status == http.StatusHTTPVersionNotSupported {
			return noRetry
		}
		return retryTransient
	case status == http.StatusUnauthorized:
		return retryAuth
	case status == http.StatusNotFound:
		// A user or group created a moment ago may not be visible yet to a
		// reference write or a patch. A delete or restore of a missing object
		// is final.
		switch kind {
		case OpUpdate, OpSetManager, OpAddMember, OpRemoveManager, OpRemoveMember:
			return retryNotYet
		}
	}
	return noRetry
}

// isMemberConflict says whether adding a group member failed because the
// reference already exists ("One or more added object references already
// exist for the following modified properties: 'members'.").
func isMemberConflict(e *GraphError) bool {
	return e != nil && e.Status == http.StatusBadRequest &&
		(e.DetailCode == "ObjectConflict" || strings.Contains(e.Message, "already exist"))
}

// NotMember says whether err is Graph refusing to remove a group member
// that is not there: 404 Request_ResourceNotFound, "Resource '<id>' does
// not exist or one of its queried reference-property objects are not
// present" (the same when the user or the group is gone). For a caller that
// wants the membership gone, that is the desired state, not a failure.
func NotMember(err error) bool {
	var ge *GraphError
	return errors.As(err, &ge) && ge.Status == http.StatusNotFound
}

// AlreadyMember says whether err is Graph refusing to add a group member
// that is already there: for a caller that wants the membership, that is
// the desired state, not a failure.
func AlreadyMember(err error) bool {
	var ge *GraphError
	return errors.As(err, &ge) && isMemberConflict(ge)
}
