package graphsim

import (
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

const (
	graphResource   = "https://graph.microsoft.com"
	graphAppID      = "00000003-0000-0000-c000-000000000000"
	assertionType   = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	publicLoginHost = "login.microsoftonline.com"
)

// principal is what a valid access token says about its caller.
type principal struct {
	tid, appid, oid string
	roles           map[string]bool
	exp             time.Time
}

func (p *principal) has(perms []string) bool {
	if len(perms) == 0 {
		return true
	}
	for _, r := range perms {
		if p.roles[r] {
			return true
		}
	}
	return false
}

// serveLogin answers the Microsoft identity platform paths MSAL uses:
// instance discovery, OIDC discovery, keys and the token endpoint.
func (s *Sim) serveLogin(w http.ResponseWriter, r *http.Request) {
	segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	pattern, status := "", 0
	defer func() { s.ctr.addRequest(r.Method+" "+pattern+" "+strconv.Itoa(status), status) }()
	host := "https://" + r.Host
	switch {
	case len(segs) == 3 && segs[1] == "discovery" && segs[2] == "instance":
		pattern = "/common/discovery/instance"
		// Only reached when a client does not disable instance discovery and
		// its transport sends login.microsoftonline.com here.
		tenantPart := "common"
		if ae := r.URL.Query().Get("authorization_endpoint"); ae != "" {
			if u, err := url.Parse(ae); err == nil {
				if p := strings.Split(strings.Trim(u.Path, "/"), "/"); len(p) > 0 {
					tenantPart = p[0]
				}
			}
		}
		status = 200
		writeJSON(w, 200, map[string]any{
			"tenant_discovery_endpoint": host + "/" + tenantPart + "/v2.0/.well-known/openid-configuration",
			"api-version":               "1.1",
			"metadata":                  []any{map[string]any{"preferred_network": r.Host, "preferred_cache": r.Host, "aliases": []string{r.Host}}},
		})
	case len(segs) == 4 && segs[1] == "v2.0" && segs[2] == ".well-known" && segs[3] == "openid-configuration":
		pattern = "/{tenant}/v2.0/.well-known/openid-configuration"
		t := s.tenantByRef(segs[0])
		if t == nil {
			status = 400
			s.tokenError(w, 400, "invalid_tenant", 90002, fmt.Sprintf("Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant.", segs[0]))
			return
		}
		status = 200
		base := host + "/" + t.id
		writeJSON(w, 200, map[string]any{
			"token_endpoint":                        host + "/" + segs[0] + "/oauth2/v2.0/token",
			"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
			"jwks_uri":                              host + "/" + segs[0] + "/discovery/v2.0/keys",
			"response_modes_supported":              []string{"query", "fragment", "form_post"},
			"subject_types_supported":               []string{"pairwise"},
			"id_token_signing_alg_values_supported": []string{"RS256"},
			"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
			"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
			"issuer":                                base + "/v2.0",
			"authorization_endpoint":                host + "/" + segs[0] + "/oauth2/v2.0/authorize",
			"device_authorization_endpoint":         host + "/" + segs[0] + "/oauth2/v2.0/devicecode",
			"end_session_endpoint":                  host + "/" + segs[0] + "/oauth2/v2.0/logout",
			"tenant_region_scope":                   "EU",
			"cloud_instance_name":                   "microsoftonline.com",
		})
	case len(segs) == 2 && segs[1] == "adminconsent":
		pattern = "/{tenant}/adminconsent"
		status = s.adminConsent(w, r, segs[0])
	case len(segs) == 4 && segs[1] == "discovery" && segs[2] == "v2.0" && segs[3] == "keys":
		pattern, status = "/{tenant}/discovery/v2.0/keys", 200
		pub := &s.signKey.PublicKey
		writeJSON(w, 200, map[string]any{"keys": []any{map[string]any{
			"kty": "RSA", "use": "sig", "kid": s.kid,
			"n": base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
			"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
		}}})
	case len(segs) == 4 && segs[1] == "oauth2" && segs[2] == "v2.0" && segs[3] == "token":
		pattern = "/{tenant}/oauth2/v2.0/token"
		if r.Method != http.MethodPost {
			status = 405
			s.tokenError(w, 405, "invalid_request", 900561, "The endpoint only accepts POST requests.")
			return
		}
		if d := s.opts.Latency.Token; d > 0 {
			sleepCtx(r.Context(), s.jitter(d))
		}
		status = s.token(w, r, segs[0])
	default:
		pattern, status = r.URL.Path, 404
		http.NotFound(w, r)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store, no-cache")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// tokenError writes the identity platform's error shape with an AADSTS
// code, trace and correlation ids.
func (s *Sim) tokenError(w http.ResponseWriter, status int, errCode string, aadsts int, msg string) {
	s.ctr.addTokenError(aadsts)
	trace, corr := uuid.NewString(), uuid.NewString()
	now := s.now().UTC()
	ts := now.Format("2006-01-02 15:04:05Z")
	writeJSON(w, status, map[string]any{
		"error":             errCode,
		"error_description": fmt.Sprintf("AADSTS%d: %s Trace ID: %s Correlation ID: %s Timestamp: %s", aadsts, msg, trace, corr, ts),
		"error_codes":       []int{aadsts},
		"timestamp":         ts,
		"trace_id":          trace,
		"correlation_id":    corr,
		"error_uri":         fmt.Sprintf("https://login.microsoftonline.com/error?code=%d", aadsts),
	})
}

// token is the client-credentials grant. It returns the HTTP status sent.
func (s *Sim) token(w http.ResponseWriter, r *http.Request, tenantRef string) int {
	if err := r.ParseForm(); err != nil {
		s.tokenError(w, 400, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'.")
		return 400
	}
	f := r.PostForm
	t := s.tenantByRef(tenantRef)
	if t == nil {
		s.tokenError(w, 400, "invalid_tenant", 90002, fmt.Sprintf("Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.", tenantRef))
		return 400
	}
	if gt := f.Get("grant_type"); gt != "client_credentials" {
		if gt == "" {
			s.tokenError(w, 400, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'.")
		} else {
			s.tokenError(w, 400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type '"+gt+"'.")
		}
		return 400
	}
	cl, status := s.lookupClient(w, t, f.Get("client_id"))
	if status != 0 {
		return status
	}
	scope, status := s.checkScope(w, f.Get("scope"))
	if status != 0 {
		return status
	}
	acr, status := s.authenticateClient(w, r, tenantRef, cl)
	if status != 0 {
		return status
	}
	return s.issueToken(w, t, cl, scope, acr)
}

// tokenClient is the requesting application as tenant t knows it: its
// registration (a copy) and its service principal there.
type tokenClient struct {
	app   App
	certs []*x509.Certificate
	spID  string
	roles []string
}

// lookupClient finds the application registered under clientID and its
// service principal in t, answering the error (and returning its status)
// when either is missing or the app may not sign in to t.
func (s *Sim) lookupClient(w http.ResponseWriter, t *tenant, clientID string) (tokenClient, int) {
	var cl tokenClient
	id := strings.ToLower(clientID)
	if id == "" {
		s.tokenError(w, 400, "invalid_request", 900144, "The request body must contain the following parameter: 'client_id'.")
		return cl, 400
	}
	app, certs, registered := s.appSnapshot(id)
	cl.app, cl.certs = app, certs
	t.mu.RLock()
	sp := t.sps[id]
	if sp != nil {
		cl.roles = append(cl.roles, sp.roles...)
		cl.spID = sp.id
	}
	t.mu.RUnlock()
	if !registered || sp == nil || (cl.app.HomeTenant != t.id && !cl.app.MultiTenant) {
		s.tokenError(w, 400, "unauthorized_client", 700016, fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.", clientID, t.name))
		return cl, 400
	}
	return cl, 0
}

// authenticateClient checks the client's credential, a secret or a signed
// assertion, and returns the token's appidacr for it ("1" or "2").
func (s *Sim) authenticateClient(w http.ResponseWriter, r *http.Request, tenantRef string, cl tokenClient) (string, int) {
	f := r.PostForm
	switch {
	case f.Get("client_secret") != "":
		return "1", s.checkSecret(w, cl.app, f.Get("client_secret"))
	case f.Get("client_assertion") != "":
		if f.Get("client_assertion_type") != assertionType {
			s.tokenError(w, 400, "invalid_request", 70021, "The client_assertion_type must be '"+assertionType+"'.")
			return "", 400
		}
		return "2", s.checkAssertion(w, r, tenantRef, cl.app, cl.certs, f.Get("client_assertion"))
	}
	s.tokenError(w, 401, "invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
	return "", 401
}

// issueToken signs an app-only access token for cl in t, records it for the
// Graph endpoints to check and writes the token response.
func (s *Sim) issueToken(w http.ResponseWriter, t *tenant, cl tokenClient, scope, acr string) int {
	now := s.now()
	exp := now.Add(s.opts.TokenLifetime)
	aud := graphResource
	if strings.HasPrefix(scope, graphAppID) {
		aud = graphAppID
	}
	claims := jwt.MapClaims{
		"aud": aud, "iss": "https://sts.windows.net/" + t.id + "/",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": exp.Unix(),
		"tid": t.id, "oid": cl.spID, "sub": cl.spID, "appid": cl.app.ClientID, "appidacr": acr,
		"idtyp": "app", "ver": "1.0", "uti": uuid.NewString(), "rh": "0.graphsim.",
		"app_displayname": cl.app.DisplayName,
	}
	if len(cl.roles) > 0 {
		claims["roles"] = cl.roles
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = s.kid
	signed, err := tok.SignedString(s.signKey)
	if err != nil {
		s.tokenError(w, 500, "server_error", 90000, "Could not sign the token.")
		return 500
	}
	rs := map[string]bool{}
	for _, r := range cl.roles {
		rs[r] = true
	}
	s.tokens.Store(signed, &principal{tid: t.id, appid: cl.app.ClientID, oid: cl.spID, roles: rs, exp: exp})
	s.ctr.addToken()
	secs := int(s.opts.TokenLifetime / time.Second)
	writeJSON(w, 200, map[string]any{"token_type": "Bearer", "expires_in": secs, "ext_expires_in": secs, "access_token": signed})
	return 200
}

// checkScope accepts exactly one resource scope, Graph's /.default, plus
// the OIDC scopes MSAL adds. It returns the resource scope.
func (s *Sim) checkScope(w http.ResponseWriter, scope string) (string, int) {
	var res []string
	for _, sc := range strings.Fields(scope) {
		switch sc {
		case "openid", "offline_access", "profile", "email":
			continue
		}
		res = append(res, sc)
	}
	if len(res) != 1 {
		s.tokenError(w, 400, "invalid_scope", 1002012, "The provided value for scope "+scope+" is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).")
		return "", 400
	}
	sc := res[0]
	if !strings.HasSuffix(sc, "/.default") {
		s.tokenError(w, 400, "invalid_scope", 70011, "The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope "+sc+" is not valid.")
		return "", 400
	}
	resource := strings.TrimSuffix(strings.TrimSuffix(sc, "/.default"), "/")
	if resource != graphResource && resource != graphAppID && resource != "https://graph.microsoft.com/v1.0" {
		s.tokenError(w, 400, "invalid_resource", 500011, "The resource principal named "+resource+" was not found in the tenant. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant.")
		return "", 400
	}
	return sc, 0
}

func (s *Sim) checkSecret(w http.ResponseWriter, app App, given string) int {
	for _, sec := range app.Secrets {
		if subtle.ConstantTimeCompare([]byte(sec.Value), []byte(given)) == 1 {
			if !sec.Expires.IsZero() && s.now().After(sec.Expires) {
				s.tokenError(w, 401, "invalid_client", 7000222, fmt.Sprintf("The provided client secret keys for app '%s' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds.", app.ClientID))
				return 401
			}
			return 0
		}
	}
	s.tokenError(w, 401, "invalid_client", 7000215, fmt.Sprintf("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '%s'.", app.ClientID))
	return 401
}

// checkAssertion validates a client assertion: a JWT signed (PS256 with
// x5t#S256, or RS256 with x5t) by one of the app's certificates, aud = this
// token endpoint, iss = sub = client id, inside nbf/exp.
func (s *Sim) checkAssertion(w http.ResponseWriter, r *http.Request, tenantRef string, app App, certs []*x509.Certificate, assertion string) int {
	fail := func(code int, msg string) int {
		s.tokenError(w, 401, "invalid_client", code, msg)
		return 401
	}
	var used *x509.Certificate
	parser := jwt.NewParser(jwt.WithValidMethods([]string{"PS256", "RS256"}), jwt.WithoutClaimsValidation())
	claims := jwt.MapClaims{}
	_, err := parser.ParseWithClaims(assertion, claims, func(tk *jwt.Token) (any, error) {
		var want []byte
		var sum func(*x509.Certificate) []byte
		if v, ok := tk.Header["x5t#S256"].(string); ok {
			want = decodeB64(v)
			sum = func(c *x509.Certificate) []byte { h := sha256.Sum256(c.Raw); return h[:] }
		} else if v, ok := tk.Header["x5t"].(string); ok {
			want = decodeB64(v)
			sum = func(c *x509.Certificate) []byte { h := sha1.Sum(c.Raw); return h[:] }
		} else {
			return nil, errNoThumbprint
		}
		for _, c := range certs {
			if subtle.ConstantTimeCompare(sum(c), want) == 1 {
				used = c
				pk, ok := c.PublicKey.(*rsa.PublicKey)
				if !ok {
					return nil, errors.New("certificate key is not RSA")
				}
				return pk, nil
			}
		}
		return nil, errUnknownCert
	})
	switch {
	case errors.Is(err, errUnknownCert), errors.Is(err, errNoThumbprint):
		return fail(700027, fmt.Sprintf("The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '?', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '%s'.]", app.ClientID))
	case err != nil:
		return fail(700027, "Client assertion failed signature validation.")
	}
	now := s.now()
	if used != nil && (now.After(used.NotAfter) || now.Before(used.NotBefore)) {
		return fail(700027, "Client assertion contains an invalid signature. [Reason - The key used is expired.]")
	}
	iss, _ := claims["iss"].(string)
	sub, _ := claims["sub"].(string)
	if !strings.EqualFold(iss, app.ClientID) || !strings.EqualFold(sub, app.ClientID) {
		return fail(700021, "Client assertion application identifier doesn't match 'client_id' parameter.")
	}
	aud, _ := claims["aud"].(string)
	if !s.audienceOK(r, tenantRef, aud) {
		return fail(700212, "The audience claim of the client assertion is not valid. It must be the token endpoint of this tenant.")
	}
	exp, err1 := claims.GetExpirationTime()
	nbf, err2 := claims.GetNotBefore()
	const skew = 5 * time.Minute
	if err1 != nil || exp == nil || now.After(exp.Add(skew)) || (err2 == nil && nbf != nil && now.Add(skew).Before(nbf.Time)) {
		return fail(700024, "Client assertion is not within its valid time range.")
	}
	return 0
}

var (
	errUnknownCert  = errors.New("unknown certificate")
	errNoThumbprint = errors.New("no x5t or x5t#S256 header")
)

// audienceOK accepts the token endpoint URL on this host or the public
// login host (transports that redirect login.microsoftonline.com here),
// with the tenant written as in the request path.
func (s *Sim) audienceOK(r *http.Request, tenantRef, aud string) bool {
	u, err := url.Parse(aud)
	if err != nil {
		return false
	}
	if !strings.EqualFold(u.Host, r.Host) && !strings.EqualFold(u.Host, publicLoginHost) {
		return false
	}
	p := strings.Trim(u.Path, "/")
	return strings.EqualFold(p, tenantRef+"/oauth2/v2.0/token") || strings.EqualFold(p, tenantRef+"/oauth2/token")
}

func decodeB64(s string) []byte {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b
		}
	}
	return nil
}

// authenticate checks the bearer token of a Graph call. A token this Sim
// issued is found in its cache; anything else is verified so the error
// names the actual problem.
func (s *Sim) authenticate(h string) (*principal, *response) {
	const pfx = "bearer "
	if len(h) < len(pfx) || !strings.EqualFold(h[:len(pfx)], pfx) || strings.TrimSpace(h[len(pfx):]) == "" {
		return nil, gErr(401, "InvalidAuthenticationToken", "Access token is empty.")
	}
	raw := strings.TrimSpace(h[len(pfx):])
	now := s.now()
	if v, ok := s.tokens.Load(raw); ok {
		p := v.(*principal)
		if now.After(p.exp) {
			return nil, gErr(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
		}
		return p, nil
	}
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(raw, claims, func(tk *jwt.Token) (any, error) { return &s.signKey.PublicKey, nil },
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithTimeFunc(s.now))
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return nil, gErr(401, "InvalidAuthenticationToken", "IDX14100: JWT is not well formed, there are no dots (.).")
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, gErr(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
	case err != nil:
		return nil, gErr(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid signature.")
	}
	if aud, _ := claims["aud"].(string); aud != graphResource && aud != graphAppID {
		return nil, gErr(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience.")
	}
	p := &principal{roles: map[string]bool{}}
	p.tid, _ = claims["tid"].(string)
	p.appid, _ = claims["appid"].(string)
	p.oid, _ = claims["oid"].(string)
	if rs, ok := claims["roles"].([]any); ok {
		for _, r := range rs {
			if s, ok := r.(string); ok {
				p.roles[s] = true
			}
		}
	}
	if e, err := claims.GetExpirationTime(); err == nil && e != nil {
		p.exp = e.Time
	}
	if s.tenant(p.tid) == nil {
		return nil, gErr(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid tenant.")
	}
	s.tokens.Store(raw, p)
	return p, nil
}

// adminConsent stands in for a tenant administrator opening the admin
// consent URL and accepting: the app's required roles are granted in the
// tenant. The real page is interactive and ends in a redirect carrying
// admin_consent=True and tenant; here the same facts come back as JSON.
func (s *Sim) adminConsent(w http.ResponseWriter, r *http.Request, tenantRef string) int {
	t := s.tenantByRef(tenantRef)
	if t == nil {
		s.tokenError(w, 400, "invalid_tenant", 90002, fmt.Sprintf("Tenant '%s' not found.", tenantRef))
		return 400
	}
	clientID := strings.ToLower(r.URL.Query().Get("client_id"))
	app, _, registered := s.appSnapshot(clientID)
	if !registered || (app.HomeTenant != t.id && !app.MultiTenant) {
		s.tokenError(w, 400, "unauthorized_client", 700016, fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'.", r.URL.Query().Get("client_id"), t.name))
		return 400
	}
	s.Consent(t.id, clientID, app.RequiredRoles...)
	writeJSON(w, 200, map[string]any{"admin_consent": "True", "tenant": t.id, "client_id": clientID, "roles": app.RequiredRoles})
	return 200
}
