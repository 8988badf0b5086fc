package directory

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
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
// This is the one place that interprets Graph's error body.
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
		ge.Message = excerpt(body)
	}
	if header != nil {
		if ge.RequestID == "" {
			ge.RequestID = header.Get("request-id")
		}
		if d, ok := parseRetryAfter(header.Get("Retry-After"), now); ok {
			ge.RetryAfter = d
		}
	}
	return ge
}

func excerpt(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// parseRetryAfter reads a Retry-After value: delay-seconds, possibly
// fractional (observed in practice although RFC 9110 says integer; kiota
// truncates "0.5" to 0), or an HTTP-date.
// maxRetryAfter bounds a Retry-After the executor will honour; past it the
// header is ignored and the usual backoff applies.
const maxRetryAfter = 24 * time.Hour

func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		if f < 0 || f != f || f > maxRetryAfter.Seconds() {
			return 0, false
		}
		return time.Duration(f * float64(time.Second)), true
	}
	if t, err := http.ParseTime(v); err == nil {
		d := t.Sub(now)
		if d > maxRetryAfter {
			// The same bound as the seconds form: a far-future date is a
			// broken header, not a reason to stall the run for days.
			return 0, false
		}
		return max(d, 0), true
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

// AlreadyMember says whether err is Graph refusing to add a group member
// that is already there: for a caller that wants the membership, that is
// the desired state, not a failure.
func AlreadyMember(err error) bool {
	var ge *GraphError
	return errors.As(err, &ge) && isMemberConflict(ge)
}
