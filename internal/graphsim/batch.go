package graphsim

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// MaxBatchSteps is the documented JSON batching limit.
const MaxBatchSteps = 20

type batchReq struct {
	Requests []batchStep `json:"requests"`
}

type batchStep struct {
	ID        string            `json:"id"`
	Method    string            `json:"method"`
	URL       string            `json:"url"`
	Headers   map[string]string `json:"headers"`
	Body      json.RawMessage   `json:"body"`
	DependsOn []string          `json:"dependsOn"`
}

type batchAnswer struct {
	ID      string            `json:"id"`
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers,omitempty"`
	Body    any               `json:"body,omitempty"`
}

func batchErr(msg string) *response { return gErr(400, "BadRequest", msg) }

// serveBatch runs a JSON batch: each step goes through exec like a direct
// call (own throttling, faults, permissions), dependsOn failures give 424,
// and the batch itself is 200 whatever its steps did.
func (s *Sim) serveBatch(c *call) *response {
	if c.method != http.MethodPost {
		return gErr(405, "Request_BadRequest", "Specified HTTP method is not allowed for the request target.")
	}
	s.ctr.addBatch()
	var br batchReq
	dec := json.NewDecoder(bytes.NewReader(c.body))
	if err := dec.Decode(&br); err != nil || br.Requests == nil {
		return batchErr("Invalid batch payload format.")
	}
	if len(br.Requests) == 0 {
		return batchErr("Batch request must contain at least one request.")
	}
	if len(br.Requests) > MaxBatchSteps {
		return batchErr("Number of requests inside batch exceeds the limit.")
	}
	seen := map[string]int{}
	for i, st := range br.Requests {
		if st.ID == "" || st.Method == "" || st.URL == "" {
			return batchErr(fmt.Sprintf("Request at index %d is missing id, method or url.", i))
		}
		key := strings.ToLower(st.ID)
		if _, dup := seen[key]; dup {
			return batchErr(fmt.Sprintf("Request Id '%s' is duplicated in the batch.", st.ID))
		}
		for _, d := range st.DependsOn {
			if _, ok := seen[strings.ToLower(d)]; !ok {
				return batchErr(fmt.Sprintf("Request '%s' depends on '%s', which is not an earlier request of the batch.", st.ID, d))
			}
		}
		// A step with a body needs Content-Type (json-batching: "When a body is
		// included with the request, the headers object must contain a value
		// for Content-Type"), and a write step needs both even when the target
		// takes no payload ("you must still specify the headers and body
		// parameters where only body can be an empty object"). Graph refuses
		// the whole batch, not the step (msgraph-sdk-dotnet issue 2628).
		// DELETE carries no body (the page's own example).
		if needsBody(st.Method) || hasBody(st.Body) {
			if !hasBody(st.Body) || headerValue(st.Headers, "Content-Type") == "" {
				return batchErr(fmt.Sprintf("Write request id : %s does not contain Content-Type header or body.", st.ID))
			}
		}
		seen[key] = i
	}
	answers := make([]batchAnswer, len(br.Requests))
	var slowest time.Duration
	for i, st := range br.Requests {
		failed := false
		for _, d := range st.DependsOn {
			if a := answers[seen[strings.ToLower(d)]]; a.Status >= 400 {
				failed = true
			}
		}
		if failed {
			answers[i] = batchAnswer{ID: st.ID, Status: 424, Headers: map[string]string{"Content-Type": "application/json"}, Body: &odataErr{Error: odataErrBody{
				Code: "FailedDependency", Message: "The request could not be performed because it depends on a request that failed.",
				InnerError: map[string]any{"date": s.now().UTC().Format("2006-01-02T15:04:05"), "request-id": uuid.NewString(), "client-request-id": c.clientRID},
			}}}
			s.ctr.addStep(strings.ToUpper(st.Method)+" /v1.0"+stepPattern(st)+" 424", 424)
			continue
		}
		a, lat := s.runStep(c, st)
		answers[i] = a
		slowest = max(slowest, lat)
	}
	if s.opts.ShuffleBatch {
		s.rngMu.Lock()
		s.rng.Shuffle(len(answers), func(i, j int) { answers[i], answers[j] = answers[j], answers[i] })
		s.rngMu.Unlock()
	}
	return &response{status: 200, body: map[string]any{"responses": answers}, lat: s.jitter(s.opts.Latency.Batch) + slowest}
}

// needsBody says whether a batch step of this method must carry a body.
func needsBody(method string) bool {
	switch strings.ToUpper(method) {
	case http.MethodPost, http.MethodPatch, http.MethodPut:
		return true
	}
	return false
}

func hasBody(b json.RawMessage) bool {
	t := bytes.TrimSpace(b)
	return len(t) > 0 && !bytes.Equal(t, []byte("null"))
}

func headerValue(h map[string]string, name string) string {
	for k, v := range h {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return ""
}

func stepPattern(st batchStep) string {
	u, err := url.Parse(st.URL)
	if err != nil {
		return "?"
	}
	p := "/" + strings.TrimPrefix(u.Path, "/")
	if rt, _ := matchRoute(strings.ToUpper(st.Method), p); rt != nil {
		return rt.pattern
	}
	return p
}

func (s *Sim) runStep(env *call, st batchStep) (batchAnswer, time.Duration) {
	method := strings.ToUpper(st.Method)
	h := http.Header{}
	for k, v := range st.Headers {
		h.Set(k, v)
	}
	sc := &call{
		ctx: env.ctx, method: method, header: h, p: env.p, base: env.base,
		requestID: uuid.NewString(), clientRID: h.Get("client-request-id"), inBatch: true,
	}
	if sc.clientRID == "" {
		sc.clientRID = env.clientRID
	}
	var resp *response
	u, err := url.Parse(st.URL)
	switch {
	case err != nil || u.IsAbs() || u.Host != "":
		resp = batchErr("The url of a batch request must be relative to the service root, e.g. /users.")
	default:
		sc.path = "/" + strings.TrimPrefix(u.Path, "/")
		sc.query = u.Query()
		if hasBody(st.Body) {
			b := bytes.TrimSpace(st.Body)
			if b[0] == '"' {
				// Non-JSON bodies travel base64-encoded in a JSON string.
				var enc string
				_ = json.Unmarshal(b, &enc)
				b, _ = base64.StdEncoding.DecodeString(enc)
			}
			sc.body = b
		}
		resp = s.exec(sc)
	}
	pattern := sc.path
	if sc.route != nil {
		pattern = sc.route.pattern
	}
	s.ctr.addStep(method+" /v1.0"+pattern+" "+strconv.Itoa(resp.status), resp.status)
	a := batchAnswer{ID: st.ID, Status: resp.status, Headers: map[string]string{}}
	for k, v := range resp.header {
		if len(v) > 0 {
			a.Headers[k] = v[0]
		}
	}
	switch {
	case resp.text != "":
		a.Headers["Content-Type"] = "text/plain"
		a.Body = resp.text
	case resp.body != nil:
		fillInnerError(resp.body, sc, s.now())
		a.Headers["Content-Type"] = jsonCT
		a.Body = resp.body
	}
	return a, resp.lat
}
