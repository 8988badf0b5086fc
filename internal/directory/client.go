package directory

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	abs "github.com/microsoft/kiota-abstractions-go"
	kiotaauth "github.com/microsoft/kiota-authentication-azure-go"
	khttp "github.com/microsoft/kiota-http-go"
	msgraph "github.com/microsoftgraph/msgraph-sdk-go"
	msgraphcore "github.com/microsoftgraph/msgraph-sdk-go-core"
	"github.com/microsoftgraph/msgraph-sdk-go/models/odataerrors"

	"github.com/entraprov/entraprov/internal/config"
)

// Options tune a Client. The zero value is production: system transport,
// credential from the job's auth section.
type Options struct {
	// HTTPClient supplies the transport (e.g. one trusting the emulator's
	// CA) for both token and Graph requests. Its Timeout bounds a request.
	// Nil (the worker): the shared transport of Transports trusting the
	// job's ca_file, whose connections every run of the process reuses.
	HTTPClient *http.Client
	// Transports are the shared transports used when HTTPClient is nil;
	// nil is the process's (ProcessTransports).
	Transports *Transports
	// Credential overrides NewCredential(job, HTTPClient).
	Credential azcore.TokenCredential
	// UserAgent is sent on every Graph request; default "entraprov/dev".
	UserAgent string
	// Logger receives debug lines per batch and warnings; never a token.
	Logger *slog.Logger
	// Metrics, if set, is told about every HTTP exchange and step outcome.
	Metrics Metrics
	// MinBackoff and MaxBackoff bound the jittered exponential backoff of
	// retried steps (defaults 1 s and 60 s).
	MinBackoff, MaxBackoff time.Duration
	// MaxAttempts bounds attempts of a step failing with 5xx, network
	// errors or eventual-consistency 404s (default 8). Throttled attempts
	// are bounded separately (MaxThrottled, default 50): waiting out a 429
	// is normal work, not a fault.
	MaxAttempts, MaxThrottled int
	// CancelGrace is how long in-flight batches may run after ctx is
	// cancelled before they are aborted (default 15 s).
	CancelGrace time.Duration
	// MaxRetryAfter bounds the Retry-After honoured (default and ceiling
	// MaxRetryAfter); a larger value is clamped and logged once.
	MaxRetryAfter time.Duration
	// Pacing is the process's registry of write budgets, shared by every
	// client of the process (NewPacing(GraphBudgets()) in the worker). Nil:
	// a registry of the client's own with no proactive budgets, so it
	// paces by what it learns from 429s alone.
	Pacing *Pacing
}

// Metrics is an optional observer (Prometheus in the worker).
type Metrics interface {
	// GraphRequest is one HTTP exchange with Graph: "batch" or "read",
	// its status (0 for a transport error) and duration.
	GraphRequest(kind string, status int, d time.Duration)
	// StepDone is a final step result.
	StepDone(kind OpKind, outcome Outcome, status int)
	// Throttled counts 429 answers (steps or whole requests).
	Throttled(n int)
}

// Client talks to Microsoft Graph for one job (one tenant, one app).
type Client struct {
	job   config.Job
	ep    endpoints
	cred  azcore.TokenCredential
	gsc   *msgraph.GraphServiceClient
	adp   abs.RequestAdapter
	log   *slog.Logger
	opts  Options
	auth  authContext
	stats statCounters

	// pacing paces the writes (pacing.go); pkey names the budgets the
	// client draws on.
	pacing *Pacing
	pkey   pacerKey

	clampLogged atomic.Bool // a clamped Retry-After was logged
	// fresh are the objects this client created or restored: a 404 on
	// them may be replication lag (fresh.go).
	fresh freshObjects
}

// Stats counts a client's Graph traffic.
type Stats struct {
	Requests  int64 // HTTP requests to Graph ($batch and reads)
	Batches   int64 // $batch requests
	Steps     int64 // batch steps sent, retries included
	Throttled int64 // 429 answers (steps and whole requests)
	Retried   int64 // step attempts beyond the first
	Failed    int64 // operations reported Failed
}

type statCounters struct {
	requests, batches, steps, throttled, retried, failed atomic.Int64
}

func (s *statCounters) snapshot() Stats {
	return Stats{Requests: s.requests.Load(), Batches: s.batches.Load(), Steps: s.steps.Load(),
		Throttled: s.throttled.Load(), Retried: s.retried.Load(), Failed: s.failed.Load()}
}

// Stats returns cumulative counters since New.
func (c *Client) Stats() Stats { return c.stats.snapshot() }

// GraphURL is the base URL requests go to (…/v1.0).
func (c *Client) GraphURL() string { return c.ep.graphURL }

// New builds the Graph client of a job. It does not contact the service;
// call Probe to check that sign-in and permissions work.
func New(ctx context.Context, job config.Job, opts Options) (*Client, error) {
	ep, err := resolveEndpoints(job)
	if err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	base, err := transportClient(opts.Transports, job.CAFile, opts.HTTPClient)
	if err != nil {
		return nil, err
	}
	cred := opts.Credential
	if cred == nil {
		if cred, err = NewCredential(job, base); err != nil {
			return nil, err
		}
	}
	c := &Client{job: job, ep: ep, log: opts.Logger, opts: opts, pacing: opts.Pacing,
		pkey: keyFor(ep, job.Auth.ClientID, job.TenantID)}
	if c.pacing == nil {
		c.pacing = NewPacing(Budgets{})
	}
	c.auth = authContext{tenant: job.TenantID, clientID: job.Auth.ClientID, authority: ep.authorityURL,
		secretFrom: job.Auth.Secret.String(), method: job.Auth.Method}
	c.cred = &translatingCredential{TokenCredential: cred, ac: c.auth}

	authProvider, err := kiotaauth.NewAzureIdentityAuthenticationProviderWithScopesAndValidHosts(
		c.cred, []string{ep.scope}, []string{ep.graphHost})
	if err != nil {
		return nil, fmt.Errorf("graph auth provider: %w", err)
	}
	// Redirects are refused here and nowhere followed: Graph does not
	// redirect API calls, and following one would carry the bearer token
	// (or the request body) to whatever host a proxy names.
	httpClient := &http.Client{
		Timeout:       base.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport:     khttp.NewCustomTransportWithParentTransport(parentTransport(base), c.middleware()...),
	}
	adapter, err := msgraph.NewGraphRequestAdapterWithParseNodeFactoryAndSerializationWriterFactoryAndHttpClient(
		authProvider, nil, nil, httpClient)
	if err != nil {
		return nil, fmt.Errorf("graph request adapter: %w", err)
	}
	// Before NewGraphServiceClient, or batch and builder URLs point at
	// graph.microsoft.com whatever we set later.
	adapter.SetBaseUrl(ep.graphURL)
	c.adp = adapter
	sdkInit.Lock()
	c.gsc = msgraph.NewGraphServiceClient(adapter)
	sdkInit.Unlock()
	return c, nil
}

// withDefaults fills the zero fields of o with the defaults its fields
// document, and lowers MaxRetryAfter to the package ceiling.
func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Transports == nil {
		o.Transports = processTransports
	}
	if o.UserAgent == "" {
		o.UserAgent = "entraprov/dev"
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 60 * time.Second
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 8
	}
	if o.MaxThrottled <= 0 {
		o.MaxThrottled = 50
	}
	if o.CancelGrace <= 0 {
		o.CancelGrace = 15 * time.Second
	}
	if o.MaxRetryAfter <= 0 || o.MaxRetryAfter > MaxRetryAfter {
		o.MaxRetryAfter = MaxRetryAfter
	}
	return o
}

// sdkInit serialises msgraph.NewGraphServiceClient: it enables kiota's
// backing store through package-level factories (a write the race detector
// sees when two jobs, or two parallel tests, connect at once).
var sdkInit sync.Mutex

func parentTransport(c *http.Client) http.RoundTripper {
	if c != nil && c.Transport != nil {
		return c.Transport
	}
	return http.DefaultTransport
}

// middleware is the kiota pipeline, chosen rather than inherited:
//   - no RetryHandler: the executor and readers own every retry (a kiota
//     retry inside a $batch would resend steps that already succeeded and
//     parses Retry-After as whole seconds);
//   - no CompressionHandler: request bodies are small and gzip on upload is
//     not documented by Graph;
//   - no UserAgentHandler: ours names entraprov and its version;
//   - no RedirectHandler: it follows a 3xx inside the pipeline, before the
//     http.Client's CheckRedirect can refuse it, and before kiota-http-go
//     1.5.5 it kept the Authorization header across hosts (the module
//     proxy serves 1.5.4). A 3xx answer reaches the caller as an error;
//   - kept: Graph telemetry (client-request-id per request, correlates with
//     Graph's logs), parameter-name decoding ($select stays readable),
//     headers inspection.
func (c *Client) middleware() []khttp.Middleware {
	opts := msgraph.GetDefaultClientOptions()
	return []khttp.Middleware{
		headerHandler{userAgent: c.opts.UserAgent},
		msgraphcore.NewGraphTelemetryHandler(&opts),
		khttp.NewParametersNameDecodingHandler(),
		khttp.NewHeadersInspectionHandler(),
	}
}

// headerHandler sets the headers every Graph request carries: background
// priority (a nightly sync yields to interactive traffic when Graph sheds
// load) and our User-Agent.
type headerHandler struct{ userAgent string }

func (h headerHandler) Intercept(p khttp.Pipeline, i int, req *http.Request) (*http.Response, error) {
	req.Header.Set("x-ms-throttle-priority", "low")
	req.Header.Set("User-Agent", h.userAgent)
	return p.Next(req, i)
}

// translatingCredential turns token failures into *AuthError where the
// AADSTS code is known, so they surface the same way from every call.
type translatingCredential struct {
	azcore.TokenCredential
	ac authContext
}

func (t *translatingCredential) GetToken(ctx context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	tok, err := t.TokenCredential.GetToken(ctx, o)
	if err != nil {
		return tok, t.ac.translateTokenError(err)
	}
	return tok, nil
}

// rawResponse is an HTTP exchange read in full.
type rawResponse struct {
	status int
	header http.Header
	body   []byte
}

// send runs one request through the SDK pipeline (auth, headers) and
// returns the response whatever its status. A fresh RequestInformation per
// call matters: kiota stores the Authorization header in it.
func (c *Client) send(ctx context.Context, method abs.HttpMethod, rawURL string, body []byte, extra map[string]string) (*rawResponse, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	ri := abs.NewRequestInformation()
	ri.Method = method
	ri.SetUri(*u)
	ri.Headers.TryAdd("Accept", "application/json")
	for k, v := range extra {
		ri.Headers.TryAdd(k, v)
	}
	if body != nil {
		ri.Content = body
		ri.Headers.TryAdd("Content-Type", "application/json")
	}
	var out *rawResponse
	var readErr error
	h := abs.NewRequestHandlerOption()
	h.SetResponseHandler(func(response any, _ abs.ErrorMappings) (any, error) {
		resp, ok := response.(*http.Response)
		if !ok || resp == nil {
			return nil, errors.New("no HTTP response")
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		if err != nil {
			readErr = err
			return nil, nil
		}
		out = &rawResponse{status: resp.StatusCode, header: resp.Header, body: b}
		return nil, nil
	})
	ri.AddRequestOptions([]abs.RequestOption{h})
	start := time.Now()
	c.stats.requests.Add(1)
	_, err = c.adp.SendPrimitive(ctx, ri, "[]byte", nil)
	if err == nil {
		err = readErr
	}
	status := 0
	if out != nil {
		status = out.status
	}
	if c.opts.Metrics != nil {
		kind := "read"
		if strings.HasSuffix(u.Path, "/$batch") {
			kind = "batch"
		}
		c.opts.Metrics.GraphRequest(kind, status, time.Since(start))
	}
	if err != nil {
		return nil, err
	}
	if out == nil {
		return nil, errors.New("graph: empty response")
	}
	return out, nil
}

// Probe checks sign-in and read permission with GET /users?$top=1.
func (c *Client) Probe(ctx context.Context) error {
	_, err := c.getJSON(ctx, c.ep.graphURL+"/users?$top=1&$select=id", nil, nil)
	return err
}

// TokenRoles fetches a token and reads its claims: the application roles
// granted (admin consent), the tenant and the app id. The token itself is
// neither returned nor logged.
func (c *Client) TokenRoles(ctx context.Context) (roles []string, tenant, appID string, err error) {
	tok, err := c.cred.GetToken(ctx, tokenRequest(c.ep.scope))
	if err != nil {
		return nil, "", "", err
	}
	claims, err := jwtClaims(tok.Token)
	if err != nil {
		return nil, "", "", fmt.Errorf("read access token claims: %w", err)
	}
	appID = claims.AppID
	if appID == "" {
		appID = claims.AzP
	}
	return claims.Roles, claims.TID, appID, nil
}

type tokenClaims struct {
	Roles []string `json:"roles"`
	TID   string   `json:"tid"`
	AppID string   `json:"appid"`
	AzP   string   `json:"azp"`
}

// jwtClaims decodes (does not verify: Graph does) the payload of a JWT.
// Errors never include the token.
func jwtClaims(token string) (tokenClaims, error) {
	var c tokenClaims
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return c, errors.New("not a JWT")
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return c, errors.New("JWT payload is not base64url")
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, errors.New("JWT payload is not JSON")
	}
	return c, nil
}

// graphError parses an error answer (see parseGraphError) and bounds its
// Retry-After to Options.MaxRetryAfter, logging the first clamp of the
// client: a header asking for more is a broken proxy or a hostile
// endpoint, worth one warning, not one per step.
func (c *Client) graphError(ctx context.Context, status int, header http.Header, body []byte, now time.Time) *GraphError {
	ge := parseGraphError(status, header, body, now)
	ge.clampRetryAfter(c.opts.MaxRetryAfter)
	if ge.retryAfterAsked > 0 && c.clampLogged.CompareAndSwap(false, true) {
		c.log.WarnContext(ctx, "Retry-After clamped: Graph (or a proxy) asked for a longer wait than the worker honours; later clamps are not logged",
			"status", status, "asked", ge.retryAfterAsked.String(), "honoured", ge.RetryAfter.String(),
			"request_id", ge.RequestID)
	}
	return ge
}

// asGraphError converts an SDK error into a *GraphError when it is one.
func asGraphError(err error) (*GraphError, bool) {
	var ge *GraphError
	if errors.As(err, &ge) {
		return ge, true
	}
	var oe *odataerrors.ODataError
	if errors.As(err, &oe) {
		ge = &GraphError{Status: oe.ResponseStatusCode}
		if me := oe.GetErrorEscaped(); me != nil {
			if p := me.GetCode(); p != nil {
				ge.Code = *p
			}
			if p := me.GetMessage(); p != nil {
				ge.Message = *p
			}
			if ie := me.GetInnerError(); ie != nil && ie.GetRequestId() != nil {
				ge.RequestID = *ie.GetRequestId()
			}
		}
		ge.sanitize()
		return ge, true
	}
	return nil, false
}

// SDK is the underlying msgraph-sdk-go client (same pipeline, same token),
// for calls this package does not wrap.
func (c *Client) SDK() *msgraph.GraphServiceClient { return c.gsc }
