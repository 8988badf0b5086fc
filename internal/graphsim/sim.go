package graphsim

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// Options configure a Sim. The zero value is a fast, fault-free emulator
// with throttling off, which is what most functional tests want.
type Options struct {
	// TimeScale > 1 shrinks every throttle window, Retry-After and latency by
	// that factor (e.g. 50) while bucket capacities stay, so the
	// throttle-limited ideal of a workload scales exactly. 0 or 1 = real time.
	TimeScale float64
	// Throttling turns the identity-service token buckets on.
	Throttling bool
	// TenantSize is "S", "M" or "L" (resource-unit quota of the app+tenant
	// bucket); "" sizes each tenant by its user count like the service.
	TenantSize string
	// TokenLifetime of issued access tokens; default 1h. MSAL does not cache
	// tokens living 5 minutes or less, so short lifetimes mean a token
	// request per Graph call.
	TokenLifetime time.Duration
	// Latency is the per-call latency model; zero means none.
	Latency Latency
	// Faults injects 5xx answers and dropped connections, seeded.
	Faults Faults
	// ConsistencyDelay hides a new user from reads, lists and reference
	// writes for this long (not scaled by TimeScale: it is explicit).
	ConsistencyDelay time.Duration
	// ShuffleBatch answers $batch steps in random (seeded) order.
	ShuffleBatch bool
	// Seed makes faults, latency jitter and shuffling reproducible.
	Seed int64
	// Now is the emulator's clock (token lifetimes, secret expiry,
	// consistency delay, throttle buckets); default time.Now. Tests can
	// move it to expire tokens or secrets without sleeping.
	Now func() time.Time
	// UniqueMailNickname makes a duplicate mailNickname a 400 ObjectConflict
	// like a duplicate UPN. Default false: Entra ID itself does not require
	// unique mail nicknames for cloud users (see README, FACTS).
	UniqueMailNickname bool
	// Logger receives one line per runtime knob turned through the admin
	// API (quota cut, secret rotation, outage); nil discards. Secret values
	// are never logged.
	Logger *slog.Logger
}

// Latency models the time Graph takes to answer. Each call takes its mean
// ±Jitter (fraction, uniform); a $batch takes Batch plus the slowest step,
// since the service runs independent steps in parallel.
type Latency struct {
	Read   time.Duration
	Write  time.Duration
	Batch  time.Duration
	Token  time.Duration
	Jitter float64
}

// DefaultLatency is roughly what the public service shows from a nearby
// region: tens of milliseconds per read, more for writes.
func DefaultLatency() Latency {
	return Latency{Read: 40 * time.Millisecond, Write: 120 * time.Millisecond, Batch: 20 * time.Millisecond, Token: 80 * time.Millisecond, Jitter: 0.5}
}

// Faults are injected at seeded random.
type Faults struct {
	// Rate5xx is the probability that a call (or a batch step) is answered
	// 503 or 504 with Retry-After instead of being served.
	Rate5xx float64 `json:"rate_5xx"`
	// DropRate is the probability that a top-level HTTP request has its
	// connection dropped without an answer.
	DropRate float64 `json:"drop_rate"`
	// CommitBeforeFault is the share of faults on writes injected after the
	// write took effect (a 504 or a dropped connection hiding a success: the
	// case that makes naive retries create duplicates).
	CommitBeforeFault float64 `json:"commit_before_fault"`
}

// Sim is the emulator: an http.Handler serving the token endpoint (paths
// /{tenant}/...), Microsoft Graph v1.0 (/v1.0/...) and admin endpoints
// (/_sim/...). It is safe for concurrent use.
type Sim struct {
	opts  Options
	scale float64

	mu       sync.RWMutex
	tenants  map[string]*tenant // by id
	byDomain map[string]*tenant // by lower-case verified domain
	apps     map[string]*appReg // by client id
	exts     map[string]*extDef // directory extensions by lower-case full name

	signKey *rsa.PrivateKey
	kid     string
	epoch   string // instance id, binds opaque tokens to this Sim
	tokens  sync.Map
	hmacKey []byte

	thr *throttler
	ctr *counterSet

	rngMu  sync.Mutex
	rng    *mrand.Rand
	faults atomic.Pointer[Faults]
	now    func() time.Time
	log    *slog.Logger
	// srv is the TLS server StartTLS serves this Sim on, for outages.
	srv atomic.Pointer[Server]
}

// New builds an empty Sim; seed it with SeedDefault or AddTenant/AddApp/...
func New(opts Options) *Sim {
	if opts.TokenLifetime <= 0 {
		opts.TokenLifetime = time.Hour
	}
	scale := opts.TimeScale
	if scale <= 1 {
		scale = 1
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(fmt.Sprintf("graphsim: generate signing key: %v", err))
	}
	hk := make([]byte, 32)
	_, _ = rand.Read(hk)
	s := &Sim{
		opts:     opts,
		scale:    scale,
		tenants:  map[string]*tenant{},
		byDomain: map[string]*tenant{},
		apps:     map[string]*appReg{},
		exts:     map[string]*extDef{},
		signKey:  key,
		kid:      uuid.NewString(),
		epoch:    uuid.NewString()[:8],
		hmacKey:  hk,
		ctr:      newCounterSet(),
		rng:      mrand.New(mrand.NewPCG(uint64(opts.Seed), 0x9e3779b97f4a7c15)),
		now:      time.Now,
	}
	if opts.Now != nil {
		s.now = opts.Now
	}
	s.log = opts.Logger
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.thr = newThrottler(scale)
	s.thr.onExpire = func(f float64, at time.Time) {
		s.log.Info("quota cut over: budgets back to normal", "factor_was", f, "ended_at", at.UTC().Format(time.RFC3339Nano))
	}
	f := opts.Faults
	s.faults.Store(&f)
	return s
}

// SetFaults changes fault injection at run time.
func (s *Sim) SetFaults(f Faults) { s.faults.Store(&f) }

// CurrentFaults returns the fault settings in force.
func (s *Sim) CurrentFaults() Faults { return *s.faults.Load() }

func (s *Sim) rand() float64 {
	s.rngMu.Lock()
	defer s.rngMu.Unlock()
	return s.rng.Float64()
}

// scaled divides a real-service duration by the time scale.
func (s *Sim) scaled(d time.Duration) time.Duration {
	return time.Duration(float64(d) / s.scale)
}

// ServeHTTP dispatches to the token endpoint, Graph or the admin API.
func (s *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case p == "/v1.0" || strings.HasPrefix(p, "/v1.0/"):
		s.serveGraph(w, r)
	case strings.HasPrefix(p, "/_sim/"):
		s.serveAdmin(w, r)
	default:
		s.serveLogin(w, r)
	}
}

// call is one Graph request, direct or a $batch step: both go through
// exec, so a step behaves exactly like the same request sent alone.
type call struct {
	ctx       context.Context
	method    string
	path      string // relative to /v1.0, starts with "/"
	query     url.Values
	header    http.Header
	body      []byte
	p         *principal
	base      string // "https://host/v1.0", for links
	requestID string
	clientRID string
	inBatch   bool
	params    []string // path parameters matched by the route
	route     *route
}

// response is what a handler answers; exec adds the common headers.
type response struct {
	status int
	header http.Header
	body   any // JSON-encodable, nil for no body
	text   string
	lat    time.Duration
}

func (r *response) setHeader(k, v string) {
	if r.header == nil {
		r.header = http.Header{}
	}
	r.header.Set(k, v)
}

type odataErr struct {
	Error odataErrBody `json:"error"`
}
type odataErrBody struct {
	Code       string         `json:"code"`
	Message    string         `json:"message"`
	InnerError map[string]any `json:"innerError"`
	Details    []errDetail    `json:"details,omitempty"`
}
type errDetail struct {
	Target string `json:"target,omitempty"`
	Code   string `json:"code"`
	Msg    string `json:"message,omitempty"`
}

func gErr(status int, code, msg string, details ...errDetail) *response {
	return &response{status: status, body: &odataErr{Error: odataErrBody{Code: code, Message: msg, Details: details}}}
}

func notFound(id string) *response {
	return gErr(404, "Request_ResourceNotFound", fmt.Sprintf("Resource '%s' does not exist or one of its queried reference-property objects are not present.", id))
}

func badRequest(msg string, details ...errDetail) *response {
	return gErr(400, "Request_BadRequest", msg, details...)
}

func denied() *response {
	return gErr(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
}

const jsonCT = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"

func (s *Sim) serveGraph(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r)
	rid := uuid.NewString()
	crid := r.Header.Get("client-request-id")
	if crid == "" {
		crid = rid
	}
	c := &call{
		ctx: r.Context(), method: r.Method, path: strings.TrimPrefix(r.URL.Path, "/v1.0"),
		query: r.URL.Query(), header: r.Header, body: body,
		base: "https://" + r.Host + "/v1.0", requestID: rid, clientRID: crid,
	}
	if c.path == "" {
		c.path = "/"
	}
	var resp *response
	pattern := "/v1.0" + c.path
	switch {
	case err != nil:
		resp = badRequest("Unable to read the request body: " + err.Error())
	default:
		var perr *response
		c.p, perr = s.authenticate(r.Header.Get("Authorization"))
		if perr != nil {
			resp = perr
			resp.setHeader("WWW-Authenticate", `Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"`)
			if r.Header.Get("Authorization") == "" {
				s.ctr.addUnauthenticated()
			}
			if rt, _ := matchRoute(c.method, c.path); rt != nil {
				pattern = "/v1.0" + rt.pattern
			}
		} else {
			drop, commitFirst := s.dropDecision()
			if drop && !commitFirst {
				s.ctr.addDropped()
				panic(http.ErrAbortHandler)
			}
			if c.path == "/$batch" {
				pattern = "/v1.0/$batch"
				// The envelope itself can fail like any call; when the
				// fault comes after the commit, its steps ran and the
				// client only sees the 5xx (a gateway timeout).
				fault, commitFirst := s.faultDecision(true)
				switch {
				case fault == nil:
					resp = s.serveBatch(c)
				case commitFirst:
					s.serveBatch(c)
					resp = fault
				default:
					resp = fault
				}
			} else {
				resp = s.exec(c)
				if c.route != nil {
					pattern = "/v1.0" + c.route.pattern
				}
			}
			if drop {
				// The work is done; the client never hears about it.
				s.ctr.addDropped()
				panic(http.ErrAbortHandler)
			}
		}
	}
	s.ctr.addRequest(r.Method+" "+pattern+" "+strconv.Itoa(resp.status), resp.status)
	if resp.lat > 0 {
		sleepCtx(r.Context(), resp.lat)
	}
	s.writeResponse(w, c, resp)
}

func (s *Sim) writeResponse(w http.ResponseWriter, c *call, resp *response) {
	h := w.Header()
	for k, v := range resp.header {
		h[k] = v
	}
	h.Set("request-id", c.requestID)
	h.Set("client-request-id", c.clientRID)
	h.Set("x-ms-ags-diagnostic", `{"ServerInfo":{"DataCenter":"graphsim","Slice":"E","Ring":"0","ScaleUnit":"000","RoleInstance":"graphsim"}}`)
	if resp.text != "" {
		h.Set("Content-Type", "text/plain;charset=utf-8")
		w.WriteHeader(resp.status)
		_, _ = io.WriteString(w, resp.text)
		return
	}
	if resp.body == nil {
		w.WriteHeader(resp.status)
		return
	}
	fillInnerError(resp.body, c, s.now())
	b, err := json.Marshal(resp.body)
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	h.Set("Content-Type", jsonCT)
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(resp.status)
	_, _ = w.Write(b)
}

func fillInnerError(body any, c *call, now time.Time) {
	if e, ok := body.(*odataErr); ok && e.Error.InnerError == nil {
		e.Error.InnerError = map[string]any{
			"date":              now.UTC().Format("2006-01-02T15:04:05"),
			"request-id":        c.requestID,
			"client-request-id": c.clientRID,
		}
	}
}

// readBody returns the request body, gunzipping it when kiota's
// compression handler sent it with Content-Encoding: gzip.
func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	if strings.EqualFold(r.Header.Get("Content-Encoding"), "gzip") && len(b) > 0 {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("gunzip: %w", err)
		}
		defer zr.Close()
		return io.ReadAll(io.LimitReader(zr, 64<<20))
	}
	return b, nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// exec runs one call through the pipeline shared by direct requests and
// batch steps: route → throttle → fault → permission → handler.
func (s *Sim) exec(c *call) *response {
	rt, params := matchRoute(c.method, c.path)
	if rt == nil {
		return routeError(c.method, c.path)
	}
	c.route, c.params = rt, params
	if strings.EqualFold(c.header.Get("x-ms-throttle-priority"), "low") {
		s.ctr.addLowPriority()
	}
	ru := rt.cost(c)
	var w float64
	if rt.write {
		w = 1
	}
	t := s.tenant(c.p.tid)
	if t == nil {
		return gErr(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid tenant.")
	}
	var thrHeaders http.Header
	if s.opts.Throttling {
		size := s.opts.TenantSize
		if size == "" {
			size = t.size()
		}
		d := s.thr.admit(c.p.appid, c.p.tid, size, float64(ru), w, s.now)
		if !d.ok {
			s.ctr.addThrottled()
			resp := gErr(429, "TooManyRequests", "Please retry again later.")
			resp.setHeader("Retry-After", formatRetryAfter(d.retryAfter, s.scale))
			resp.setHeader("x-ms-throttle-scope", d.scope)
			resp.setHeader("x-ms-throttle-information", d.info)
			return resp
		}
		if d.pct >= 0.8 {
			thrHeaders = http.Header{"X-Ms-Throttle-Limit-Percentage": {strconv.FormatFloat(d.pct, 'f', 1, 64)}}
		}
	}
	s.ctr.addRU(int64(ru))
	fault, commitFirst := s.faultDecision(rt.write)
	if fault != nil && !commitFirst {
		return fault
	}
	var resp *response
	if !c.p.has(rt.perms) {
		resp = denied()
	} else {
		resp = rt.h(s, t, c)
	}
	if rt.write && resp.status < 300 {
		s.ctr.addWrite()
	}
	if fault != nil {
		return fault
	}
	resp.setHeader("x-ms-resource-unit", strconv.Itoa(ru))
	for k, v := range thrHeaders {
		resp.header[k] = v
	}
	resp.lat = s.latency(rt.write)
	return resp
}

func formatRetryAfter(d time.Duration, scale float64) string {
	secs := d.Seconds()
	if scale <= 1 {
		n := int64(secs)
		if float64(n) < secs {
			n++
		}
		if n < 1 {
			n = 1
		}
		return strconv.FormatInt(n, 10)
	}
	if secs < 0.001 {
		secs = 0.001
	}
	return strconv.FormatFloat(secs, 'f', 3, 64)
}

func (s *Sim) latency(write bool) time.Duration {
	l := s.opts.Latency
	d := l.Read
	if write {
		d = l.Write
	}
	return s.jitter(d)
}

func (s *Sim) jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	if j := s.opts.Latency.Jitter; j > 0 {
		d = time.Duration(float64(d) * (1 + j*(2*s.rand()-1)))
	}
	return s.scaled(d)
}

// faultDecision decides whether this call fails with an injected 5xx and
// whether the write happens before the failure is answered.
func (s *Sim) faultDecision(write bool) (*response, bool) {
	f := s.faults.Load()
	if f.Rate5xx <= 0 {
		return nil, false
	}
	s.rngMu.Lock()
	hit := s.rng.Float64() < f.Rate5xx
	kind := s.rng.IntN(2)
	commit := write && s.rng.Float64() < f.CommitBeforeFault
	s.rngMu.Unlock()
	if !hit {
		return nil, false
	}
	s.ctr.addFault()
	var resp *response
	if kind == 0 {
		resp = gErr(503, "serviceNotAvailable", "The service is temporarily unavailable. Please retry later.")
	} else {
		resp = gErr(504, "UnknownError", "The gateway timed out.")
	}
	resp.setHeader("Retry-After", formatRetryAfter(s.scaled(2*time.Second), s.scale))
	return resp, commit
}

// dropDecision decides whether to drop the connection of a top-level call.
func (s *Sim) dropDecision() (drop, commitFirst bool) {
	f := s.faults.Load()
	if f.DropRate <= 0 {
		return false, false
	}
	s.rngMu.Lock()
	defer s.rngMu.Unlock()
	if s.rng.Float64() >= f.DropRate {
		return false, false
	}
	return true, s.rng.Float64() < f.CommitBeforeFault
}

func (s *Sim) tenant(id string) *tenant {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.tenants[id]
}

// tenantByRef finds a tenant by id or verified domain (token endpoint paths
// accept both).
func (s *Sim) tenantByRef(ref string) *tenant {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if t := s.tenants[strings.ToLower(ref)]; t != nil {
		return t
	}
	return s.byDomain[strings.ToLower(ref)]
}
