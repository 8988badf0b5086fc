package directory

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
)

// The $batch body is serialised here rather than through msgraph-sdk-go-core's
// BatchRequest: the core builds each step from a RequestInformation, writes
// its JSON, re-parses it into a map and gives steps random UUIDs; we already
// hold the step as a map and want ids that index straight back into the
// batch slice. The format is tiny and documented (json-batching.md).

type batchRequest struct {
	Requests []batchStep `json:"requests"`
}

type batchStep struct {
	ID      string            `json:"id"`
	Method  string            `json:"method"`
	URL     string            `json:"url"`
	Headers map[string]string `json:"headers,omitempty"`
	Body    any               `json:"body,omitempty"`
}

type batchResponse struct {
	Responses []batchStepResponse `json:"responses"`
}

type batchStepResponse struct {
	ID      string            `json:"id"`
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers"`
	Body    json.RawMessage   `json:"body"`
}

// header returns a step response header, case-insensitively.
func (r batchStepResponse) header() http.Header {
	h := make(http.Header, len(r.Headers))
	for k, v := range r.Headers {
		h.Set(k, v)
	}
	return h
}

// stepRequest turns an Operation into its batch step (without the id).
// graphURL is the absolute base (…/v1.0) used in @odata.id references.
func stepRequest(op Operation, graphURL string) (batchStep, error) {
	esc := url.PathEscape
	var s batchStep
	switch op.Kind {
	case OpCreate:
		body := make(map[string]any, len(op.Fields)+1)
		for k, v := range op.Fields {
			body[k] = v
		}
		if op.Password != "" {
			body["passwordProfile"] = map[string]any{
				"password":                      op.Password,
				"forceChangePasswordNextSignIn": op.ForceChangePassword,
			}
		}
		s = batchStep{Method: http.MethodPost, URL: "/users", Body: body}
	case OpUpdate:
		if op.ObjectID == "" {
			return s, fmt.Errorf("%s: object id missing", op.Kind)
		}
		body := op.Fields
		if body == nil {
			body = map[string]any{}
		}
		s = batchStep{Method: http.MethodPatch, URL: "/users/" + esc(op.ObjectID), Body: body}
	case OpDelete:
		s = batchStep{Method: http.MethodDelete, URL: "/users/" + esc(op.ObjectID)}
	case OpRestore:
		// restore takes no payload, but a batch write step must carry one
		// (see below).
		s = batchStep{Method: http.MethodPost, URL: "/directory/deletedItems/" + esc(op.ObjectID) + "/restore", Body: map[string]any{}}
	case OpSetManager:
		if op.RelatedID == "" {
			return s, fmt.Errorf("%s: manager id missing", op.Kind)
		}
		s = batchStep{Method: http.MethodPut, URL: "/users/" + esc(op.ObjectID) + "/manager/$ref",
			Body: map[string]any{"@odata.id": graphURL + "/users/" + esc(op.RelatedID)}}
	case OpRemoveManager:
		s = batchStep{Method: http.MethodDelete, URL: "/users/" + esc(op.ObjectID) + "/manager/$ref"}
	case OpAddMember:
		if op.RelatedID == "" {
			return s, fmt.Errorf("%s: group id missing", op.Kind)
		}
		s = batchStep{Method: http.MethodPost, URL: "/groups/" + esc(op.RelatedID) + "/members/$ref",
			Body: map[string]any{"@odata.id": graphURL + "/directoryObjects/" + esc(op.ObjectID)}}
	case OpRemoveMember:
		if op.RelatedID == "" {
			return s, fmt.Errorf("%s: group id missing", op.Kind)
		}
		s = batchStep{Method: http.MethodDelete, URL: "/groups/" + esc(op.RelatedID) + "/members/" + esc(op.ObjectID) + "/$ref"}
	default:
		return s, fmt.Errorf("unknown operation kind %q", op.Kind)
	}
	if op.Kind != OpCreate && op.ObjectID == "" {
		return s, fmt.Errorf("%s: object id missing", op.Kind)
	}
	// Graph refuses the WHOLE batch (400 "Write request id : N does not
	// contain Content-Type header or body.") when a POST, PATCH or PUT step
	// lacks either, even if its target takes no payload: json-batching.md
	// says to send the headers and a body "where only body can be an empty
	// object". DELETE steps carry neither.
	if s.Method != http.MethodDelete && s.Method != http.MethodGet {
		if s.Body == nil {
			s.Body = map[string]any{}
		}
		s.Headers = map[string]string{"Content-Type": "application/json"}
	}
	return s, nil
}

// encodeBatch serialises steps with ids "0".."n-1": the id is the index.
func encodeBatch(steps []batchStep) ([]byte, error) {
	for i := range steps {
		steps[i].ID = strconv.Itoa(i)
	}
	return json.Marshal(batchRequest{Requests: steps})
}

// decodeBatch parses a $batch response into a slice indexed like the
// request. A missing or foreign id leaves its slot nil: the caller treats the
// step as not answered (retriable), never as succeeded.
func decodeBatch(body []byte, n int) ([]*batchStepResponse, error) {
	var br batchResponse
	if err := json.Unmarshal(body, &br); err != nil {
		return nil, fmt.Errorf("decode $batch response: %w", err)
	}
	out := make([]*batchStepResponse, n)
	for i := range br.Responses {
		r := &br.Responses[i]
		idx, err := strconv.Atoi(r.ID)
		if err != nil || idx < 0 || idx >= n || out[idx] != nil {
			continue
		}
		out[idx] = r
	}
	return out, nil
}

// createdID reads the "id" of a created user from a step body.
func createdID(body json.RawMessage) string {
	var v struct {
		ID string `json:"id"`
	}
	if len(body) == 0 || json.Unmarshal(body, &v) != nil {
		return ""
	}
	return v.ID
}

// RequestLine is the method and path (relative to the Graph base URL) an
// operation is sent as inside a batch: what a trace of one user shows of
// each request. The body, and so the password of a create, is not part of
// it.
func RequestLine(op Operation) (method, path string, err error) {
	op.Password = ""
	s, err := stepRequest(op, "")
	if err != nil {
		return "", "", err
	}
	return s.Method, s.URL, nil
}
