// Package directory is everything the worker knows about Microsoft Entra ID
// and Microsoft Graph: the app-only credential (azidentity), the Graph client
// (msgraph-sdk-go over kiota), a throttle-aware $batch executor, the user
// readers (list, delta, lookup) and the translation of failures into typed
// errors and operator advice.
//
// It must not decide what to change (that is the planner in internal/sync),
// touch the database, or log a secret, password or access token.
//
//	c, err := directory.New(ctx, job, directory.Options{UserAgent: "entraprov/" + version})
//	if err := c.Probe(ctx); errors.Is(err, directory.ErrConsentMissing) { ... }
//	go func() { defer close(ops); for _, op := range plan { ops <- op } }()
//	go func() { stats = c.Execute(ctx, ops, results); close(results) }()
//	for r := range results { record(r) }
//
// # Decisions
//
// Credentials. NewCredential maps auth.method to azidentity's client
// secret, client certificate (PEM or PFX via ParseCertificates, x5c chain on
// request for subject-name/issuer auth), managed identity and workload
// identity credentials. The cloud selects azcore's authority host and the
// Graph root (graph.microsoft.com, graph.microsoft.us,
// microsoftgraph.chinacloudapi.cn); authority_host / graph_url override
// them and then turn instance discovery off (MSAL would otherwise ask
// login.microsoftonline.com whether the authority is known). The scope is
// always {cloud Graph}/.default. Token failures become *AuthError with the
// AADSTS code and advice (wrong/expired secret naming where the secret is
// read from, unknown app or tenant, consent with the admin-consent URL,
// certificate and clock problems).
//
// Transport. A process has one HTTP transport per trust configuration
// (the system roots, or those plus a job's ca_file: Transports), used by
// every client's Graph requests and token requests, so the runs of a
// daemon reuse the same TLS connections (HTTP/2 to Graph and the
// authority) and a finished run leaves no connection, goroutine or TLS
// state behind; idle connections are bounded and close after 90 s. Only
// the transport is shared: each client has its own credential, so a token
// is never served to another app or tenant.
//
// Pipeline. The kiota middleware is chosen, not inherited: no RetryHandler
// (the executor and readers own every retry: kiota would retry a whole
// $batch whose steps partly succeeded, parses Retry-After as whole seconds
// and does not look inside a batch), no CompressionHandler (gzip request
// bodies are not documented by Graph and batches are small), our own
// User-Agent (entraprov/<version>) and x-ms-throttle-priority: low on every
// request, Graph telemetry (a client-request-id per request),
// parameter-name decoding and headers inspection kept; no RedirectHandler
// either: a 3xx is refused by the http.Client and reported as an error, so
// neither a request nor its token follows a redirect. The kiota auth
// provider's valid hosts hold the Graph host without port, so the bearer
// token is attached to Graph and nowhere else. The base URL is set on the
// adapter before the GraphServiceClient is built.
//
// Batch body. The executor writes the $batch JSON itself (batchwire.go)
// instead of msgraph-sdk-go-core's BatchRequest: the core serialises each
// step through a RequestInformation, re-parses it into a map and names steps
// with random UUIDs, and BatchRequestCollection.Send is sequential and stops
// at the first error. Our step id is the index in the batch, so answers in
// any order map straight back to operations; a step missing from the answer
// is retried, never taken for a success. The request still goes through the
// SDK's adapter (auth, middleware, transport).
//
// Throughput. Graph's write quota (3,000 writes / 150 s per app and tenant)
// is a token bucket, so the sustainable rate is its refill rate. The
// executor starts unpaced (spending the initial burst), reacts to 429s with
// AIMD on the number of batches in flight, waits each throttled step's own
// Retry-After (fractional seconds parsed here), and learns the refill rate
// exactly: between two throttle events the bucket was empty at both ends,
// so accepted writes / elapsed time is the rate. It then paces just under
// it and creeps up slowly, so the quota is used without hitting it. Until
// the first measurement it paces at half the throughput seen so far,
// halving once per round-trip while 429s continue (floored at what gets
// through) and growing fast otherwise. The learnt pace lives in the
// process's Pacing registry (pacing.go), keyed by app and tenant, so a
// second Execute of the same run (e.g. manager references after creates),
// or another job of the same app and tenant, starts at it; after 30 s
// unused it is forgotten (the bucket has refilled). The registry also
// models the three write budgets (per app and tenant, per app across
// tenants, per tenant across apps) as proactive token buckets that every
// batch reserves from, so the jobs of one process stay together within the
// tightest one, and feeds each 429 to the budget its x-ms-throttle-scope
// names. The worker builds one registry per process with Graph's
// documented budgets; a Client without one paces by its 429s alone.
//
// Retries. 429 → after Retry-After (bounded by MaxThrottled; a Retry-After
// longer than MaxRetryAfter, 5 minutes, is clamped to it); 5xx, 424,
// lost answers and transport errors → jittered capped exponential backoff
// (bounded by MaxAttempts); 404 on a patch or reference write → retries
// only as long as replication lag can explain it (fresh.go): up to 5, each
// wait capped at 4 s, when the target or related object was created or
// restored by this client in the last 10 minutes; otherwise one retry after
// MinBackoff, then the step fails (a group that does not exist, a user
// deleted by hand); 401 →
// once (token expired in flight). Any other 4xx is the request's fault and
// is reported, never retried. Backoff is a small function rather than
// cenkalti/backoff because retries are per step, scheduled by the
// executor's queue, not a blocking loop.
//
// Unknown outcomes. A 5xx or a lost answer may hide a write that was
// applied. Such a step is marked ambiguous; if its retry then fails in a way
// that proves the first attempt worked — a create meeting a duplicate UPN,
// a delete or reference removal meeting 404, an add meeting "already
// exists" — the operation is reported Succeeded with Recovered set, and a
// create's ObjectID is looked up by UPN. A create is never repeated
// blindly into a second user: the UPN is unique and the conflict is read.
//
// Cancellation. No batch starts after ctx is cancelled; in-flight batches
// get Options.CancelGrace to bring back their real outcome. Every operation
// gets exactly one Result: Succeeded, Failed, or NotStarted.
//
// Readers. ListUsers selects the managed properties, $top=100 (the page cap
// with $expand), and expands manager($select=id): +1 resource unit per
// page, not per user. Delta selects the manager, which comes back as
// manager@delta. A rejected delta link falls back to a
// full read, and the caller's onReset runs before the first user of it.
// Readers use the same SDK pipeline with raw JSON pages: they need the
// response status and Retry-After for their own retries and the delta
// "@removed" annotation, which the typed models bury in AdditionalData.
package directory
