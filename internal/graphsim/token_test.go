package graphsim_test

import (
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/entraprov/entraprov/internal/graphsim"
)

// TestTokenErrors: each credential problem answers the documented status,
// OAuth error and AADSTS code, in the identity platform's error shape.
func TestTokenErrors(t *testing.T) {
	sim, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{})
	r := &raw{t: t, srv: srv, hc: srv.Client()}
	sim.AddTenant("99999999-0000-0000-0000-000000000001", "fabrikam.example")
	sim.AddApp(graphsim.App{ClientID: "99999999-0000-0000-0000-0000000000a1", HomeTenant: seeded.TenantID, Secrets: []graphsim.Secret{{Value: "single-tenant-secret"}}})
	sim.AddApp(graphsim.App{ClientID: "99999999-0000-0000-0000-0000000000a2", HomeTenant: seeded.TenantID,
		Secrets: []graphsim.Secret{{Value: "expired-secret", Expires: time.Now().Add(-time.Hour)}}})
	base := func(over map[string]string) url.Values {
		v := url.Values{"grant_type": {"client_credentials"}, "client_id": {seeded.ClientID},
			"client_secret": {seeded.ClientSecret}, "scope": {"https://graph.microsoft.com/.default"}}
		for k, x := range over {
			if x == "" {
				v.Del(k)
			} else {
				v.Set(k, x)
			}
		}
		return v
	}
	cases := []struct {
		name, tenant string
		form         url.Values
		status       int
		oauth        string
		code         float64
	}{
		{"wrong_secret_is_7000215", seeded.TenantID, base(map[string]string{"client_secret": "nope"}), 401, "invalid_client", 7000215},
		{"expired_secret_is_7000222", seeded.TenantID, base(map[string]string{"client_id": "99999999-0000-0000-0000-0000000000a2", "client_secret": "expired-secret"}), 401, "invalid_client", 7000222},
		{"unknown_tenant_is_90002", "00000000-1111-2222-3333-444444444444", base(nil), 400, "invalid_tenant", 90002},
		{"unknown_app_is_700016", seeded.TenantID, base(map[string]string{"client_id": uuid.NewString()}), 400, "unauthorized_client", 700016},
		{"app_not_in_other_tenant_is_700016", "fabrikam.example", base(nil), 400, "unauthorized_client", 700016},
		{"single_tenant_app_elsewhere_is_700016", "fabrikam.example", base(map[string]string{"client_id": "99999999-0000-0000-0000-0000000000a1", "client_secret": "single-tenant-secret"}), 400, "unauthorized_client", 700016},
		{"no_credential_is_7000218", seeded.TenantID, base(map[string]string{"client_secret": ""}), 401, "invalid_client", 7000218},
		{"scope_without_default_is_70011", seeded.TenantID, base(map[string]string{"scope": "https://graph.microsoft.com/User.Read"}), 400, "invalid_scope", 70011},
		{"other_resource_is_500011", seeded.TenantID, base(map[string]string{"scope": "https://management.example/.default"}), 400, "invalid_resource", 500011},
		{"wrong_grant_is_70003", seeded.TenantID, base(map[string]string{"grant_type": "password"}), 400, "unsupported_grant_type", 70003},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, body := r.tokenRequest(tc.tenant, tc.form)
			if st != tc.status || body["error"] != tc.oauth {
				t.Fatalf("got %d %v, want %d %s", st, body["error"], tc.status, tc.oauth)
			}
			codes, _ := body["error_codes"].([]any)
			if len(codes) != 1 || codes[0] != tc.code {
				t.Fatalf("error_codes %v, want [%v]", body["error_codes"], tc.code)
			}
			desc, _ := body["error_description"].(string)
			if !strings.HasPrefix(desc, "AADSTS") || !strings.Contains(desc, "Trace ID:") || body["trace_id"] == nil || body["correlation_id"] == nil || body["timestamp"] == nil {
				t.Fatalf("error shape: %v", body)
			}
			if strings.Contains(desc, seeded.ClientSecret) {
				t.Fatal("error description leaks the client secret")
			}
		})
	}
	t.Run("discovery_of_unknown_tenant_is_90002", func(t *testing.T) {
		resp, err := srv.Client().Get(srv.AuthorityHost + "nosuch.example/v2.0/.well-known/openid-configuration")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
	t.Run("azidentity_reports_the_AADSTS_code", func(t *testing.T) {
		cred := secretCredential(t, srv, seeded.TenantID, seeded.ClientID, "wrong")
		_, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: graphScopes})
		if err == nil || !strings.Contains(err.Error(), "AADSTS7000215") {
			t.Fatalf("want AADSTS7000215, got %v", err)
		}
	})
	t.Run("tenant_by_domain_name", func(t *testing.T) {
		if st, body := r.tokenRequest(seeded.Domain, base(nil)); st != 200 {
			t.Fatalf("token by domain: %d %v", st, body)
		}
	})
}

// signAssertion builds a client assertion like MSAL (PS256 + x5t#S256) or
// like older clients (RS256 + x5t).
func signAssertion(t *testing.T, seeded graphsim.Seeded, aud string, alg string, nbf, exp time.Time) string {
	t.Helper()
	certs, key := parseCertKey(t, seeded.CertPEM, seeded.KeyPEM)
	claims := jwt.MapClaims{"aud": aud, "iss": seeded.ClientID, "sub": seeded.ClientID, "jti": uuid.NewString(), "nbf": nbf.Unix(), "exp": exp.Unix()}
	var tok *jwt.Token
	if alg == "RS256" {
		tok = jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
		sum := sha1Sum(certs[0].Raw)
		tok.Header["x5t"] = base64.RawURLEncoding.EncodeToString(sum)
	} else {
		tok = jwt.NewWithClaims(jwt.SigningMethodPS256, claims)
		sum := sha256.Sum256(certs[0].Raw)
		tok.Header["x5t#S256"] = base64.StdEncoding.EncodeToString(sum[:])
	}
	s, err := tok.SignedString(key.(*rsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestClientAssertion: signature, thumbprint, audience and time range of
// certificate assertions are all checked.
func TestClientAssertion(t *testing.T) {
	_, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{})
	r := &raw{t: t, srv: srv, hc: srv.Client()}
	endpoint := srv.AuthorityHost + seeded.TenantID + "/oauth2/v2.0/token"
	now := time.Now()
	other := seeded
	other.CertPEM, other.KeyPEM, _ = graphsim.NewCertificate("unregistered", time.Hour)
	cases := []struct {
		name      string
		assertion string
		status    int
		code      float64
	}{
		{"PS256_x5tS256_is_accepted", signAssertion(t, seeded, endpoint, "PS256", now, now.Add(10*time.Minute)), 200, 0},
		{"RS256_x5t_is_accepted", signAssertion(t, seeded, endpoint, "RS256", now, now.Add(10*time.Minute)), 200, 0},
		{"public_login_host_audience_is_accepted", signAssertion(t, seeded, "https://login.microsoftonline.com/"+seeded.TenantID+"/oauth2/v2.0/token", "PS256", now, now.Add(10*time.Minute)), 200, 0},
		{"unregistered_certificate_is_700027", signAssertion(t, other, endpoint, "PS256", now, now.Add(10*time.Minute)), 401, 700027},
		{"expired_assertion_is_700024", signAssertion(t, seeded, endpoint, "PS256", now.Add(-time.Hour), now.Add(-30*time.Minute)), 401, 700024},
		{"wrong_audience_is_rejected", signAssertion(t, seeded, "https://example.com/token", "PS256", now, now.Add(10*time.Minute)), 401, 700212},
		{"tampered_signature_is_700027", signAssertion(t, seeded, endpoint, "PS256", now, now.Add(10*time.Minute)) + "A", 401, 700027},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, body := r.tokenRequest(seeded.TenantID, url.Values{
				"grant_type": {"client_credentials"}, "client_id": {seeded.ClientID}, "scope": {"https://graph.microsoft.com/.default"},
				"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {tc.assertion},
			})
			if st != tc.status {
				t.Fatalf("status %d %v, want %d", st, body, tc.status)
			}
			if tc.code != 0 {
				if codes, _ := body["error_codes"].([]any); len(codes) != 1 || codes[0] != tc.code {
					t.Fatalf("error_codes %v, want %v", body["error_codes"], tc.code)
				}
			}
		})
	}
}

// TestAccessTokenClaims: tokens carry tid, appid, idtyp, roles from admin
// consent, aud Graph, and the configured lifetime; OIDC scopes MSAL adds
// and the claims parameter are accepted.
func TestAccessTokenClaims(t *testing.T) {
	_, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{TokenLifetime: 90 * time.Second})
	r := &raw{t: t, srv: srv, hc: srv.Client()}
	st, body := r.tokenRequest(seeded.TenantID, url.Values{
		"grant_type": {"client_credentials"}, "client_id": {seeded.ClientID}, "client_secret": {seeded.ClientSecret},
		"scope":  {"https://graph.microsoft.com/.default openid offline_access profile"},
		"claims": {`{"access_token":{"xms_cc":{"values":["CP1"]}}}`},
	})
	if st != 200 || body["token_type"] != "Bearer" || body["expires_in"] != float64(90) || body["refresh_token"] != nil {
		t.Fatalf("token answer: %d %v", st, body)
	}
	c := jwtClaims(t, body["access_token"].(string))
	roles, _ := c["roles"].([]any)
	if c["aud"] != "https://graph.microsoft.com" || c["tid"] != seeded.TenantID || c["appid"] != seeded.ClientID || c["idtyp"] != "app" || c["appidacr"] != "1" || len(roles) != len(graphsim.DefaultRoles) {
		t.Fatalf("claims: %v", c)
	}
	if exp, iat := c["exp"].(float64), c["iat"].(float64); exp-iat != 90 {
		t.Fatalf("lifetime %v s", exp-iat)
	}
}

// TestGraphAuthorization: Graph checks the token (401) and its roles (403).
func TestGraphAuthorization(t *testing.T) {
	// Tokens live a second on the emulator's clock, which stands still
	// until the test moves it: a loaded machine may take a second between
	// fetching a token and using it.
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	sim, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{TokenLifetime: time.Second,
		Now: func() time.Time { return time.Unix(0, clock.Load()) }})
	t.Run("no_token_is_401_InvalidAuthenticationToken", func(t *testing.T) {
		r := &raw{t: t, srv: srv, hc: srv.Client()}
		a := r.do("GET", "/users", nil)
		if a.status != 401 || a.code() != "InvalidAuthenticationToken" || a.header.Get("WWW-Authenticate") == "" {
			t.Fatalf("%d %v", a.status, a.body)
		}
	})
	t.Run("garbage_token_is_401", func(t *testing.T) {
		r := &raw{t: t, srv: srv, hc: srv.Client(), token: "abc.def.ghi"}
		if a := r.do("GET", "/users", nil); a.status != 401 || a.code() != "InvalidAuthenticationToken" {
			t.Fatalf("%d %v", a.status, a.body)
		}
	})
	t.Run("expired_token_is_401", func(t *testing.T) {
		r := newRaw(t, srv, seeded)
		if a := r.do("GET", "/users", nil); a.status != 200 {
			t.Fatalf("fresh token: %d", a.status)
		}
		clock.Add(int64(1100 * time.Millisecond))
		a := r.do("GET", "/users", nil)
		if a.status != 401 || !strings.Contains(a.message(), "expired") {
			t.Fatalf("%d %v", a.status, a.body)
		}
	})
	t.Run("no_consent_means_no_roles_and_403", func(t *testing.T) {
		sim.AddTenant("aaaaaaaa-0000-0000-0000-000000000002", "tailspin.example")
		app := graphsim.App{ClientID: "aaaaaaaa-0000-0000-0000-0000000000b1", HomeTenant: "aaaaaaaa-0000-0000-0000-000000000002", Secrets: []graphsim.Secret{{Value: "s3cret-value"}}}
		sim.AddApp(app)
		r := newRaw(t, srv, graphsim.Seeded{TenantID: app.HomeTenant, ClientID: app.ClientID, ClientSecret: "s3cret-value"})
		if c := jwtClaims(t, r.token); c["roles"] != nil {
			t.Fatalf("unconsented token has roles %v", c["roles"])
		}
		a := r.do("GET", "/users", nil)
		if a.status != 403 || a.code() != "Authorization_RequestDenied" || a.message() != "Insufficient privileges to complete the operation." {
			t.Fatalf("%d %v", a.status, a.body)
		}
		sim.Consent(app.HomeTenant, app.ClientID, "User.Read.All")
		r = newRaw(t, srv, graphsim.Seeded{TenantID: app.HomeTenant, ClientID: app.ClientID, ClientSecret: "s3cret-value"})
		if a := r.do("GET", "/users", nil); a.status != 200 {
			t.Fatalf("read with User.Read.All: %d", a.status)
		}
		if a := r.do("POST", "/users", userBody("x@tailspin.example")); a.status != 403 {
			t.Fatalf("write with User.Read.All: %d", a.status)
		}
	})
	t.Run("multi_tenant_app_consented_elsewhere_gets_that_tenant", func(t *testing.T) {
		sim.AddTenant("bbbbbbbb-0000-0000-0000-000000000003", "woodgrove.example")
		sim.Consent("bbbbbbbb-0000-0000-0000-000000000003", seeded.ClientID, "User.ReadWrite.All")
		other := seeded
		other.TenantID = "bbbbbbbb-0000-0000-0000-000000000003"
		r := newRaw(t, srv, other)
		if c := jwtClaims(t, r.token); c["tid"] != other.TenantID {
			t.Fatalf("tid %v", c["tid"])
		}
		r.mustCreate("w@woodgrove.example")
		if len(sim.Users(other.TenantID)) != 1 || len(sim.Users(seeded.TenantID)) != 0 {
			t.Fatal("tenants are not separate")
		}
	})
	t.Run("group_membership_needs_GroupMember_role", func(t *testing.T) {
		sim.RevokeConsent(seeded.TenantID, seeded.ClientID, "GroupMember.ReadWrite.All")
		defer sim.Consent(seeded.TenantID, seeded.ClientID, "GroupMember.ReadWrite.All")
		r := newRaw(t, srv, seeded)
		id := r.mustCreate("m@" + seeded.Domain)
		a := r.do("POST", "/groups/"+seeded.GroupIDs["Engineering"]+"/members/$ref", map[string]any{"@odata.id": srv.GraphURL + "/directoryObjects/" + id})
		if a.status != 403 {
			t.Fatalf("%d %v", a.status, a.body)
		}
	})
	_ = http.MethodGet
}

func TestWrongSecretNeverLogged(t *testing.T) {
	sim, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{})
	r := &raw{t: t, srv: srv, hc: srv.Client()}
	r.tokenRequest(seeded.TenantID, url.Values{"grant_type": {"client_credentials"}, "client_id": {seeded.ClientID}, "client_secret": {"leaky-secret-123"}, "scope": {"https://graph.microsoft.com/.default"}})
	c := sim.Counters()
	if c.TokenErrors["AADSTS7000215"] != 1 {
		t.Fatalf("token errors %v", c.TokenErrors)
	}
	resp, err := srv.Client().Get(srv.URL + "/_sim/counters")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b := make([]byte, 1<<16)
	n, _ := resp.Body.Read(b)
	if strings.Contains(string(b[:n]), "leaky-secret-123") || strings.Contains(string(b[:n]), seeded.ClientSecret) {
		t.Fatal("admin counters expose a secret")
	}
}

// TestAdminConsentURL: opening /{tenant}/adminconsent?client_id= grants
// the app's required roles, so the next token carries them.
func TestAdminConsentURL(t *testing.T) {
	sim, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{})
	sim.RevokeConsent(seeded.TenantID, seeded.ClientID)
	r := newRaw(t, srv, seeded)
	if a := r.do("GET", "/users", nil); a.status != 403 {
		t.Fatalf("before consent: %d", a.status)
	}
	resp, err := srv.Client().Get(srv.AuthorityHost + seeded.TenantID + "/adminconsent?client_id=" + seeded.ClientID)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("adminconsent: %d", resp.StatusCode)
	}
	r = newRaw(t, srv, seeded)
	if a := r.do("GET", "/users", nil); a.status != 200 {
		t.Fatalf("after consent: %d", a.status)
	}
	resp, _ = srv.Client().Get(srv.AuthorityHost + seeded.TenantID + "/adminconsent?client_id=00000000-0000-0000-0000-000000000001")
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("unknown app: %d", resp.StatusCode)
	}
}

// TestClockOption: moving the emulator's clock expires tokens and secrets
// without sleeping.
func TestClockOption(t *testing.T) {
	var offset atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	sim, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{Now: clock})
	sim.AddSecret(seeded.ClientID, graphsim.Secret{Value: "short-lived", Expires: clock().Add(time.Hour)})
	r := newRaw(t, srv, seeded)
	offset.Store(int64(2 * time.Hour))
	if a := r.do("GET", "/users", nil); a.status != 401 {
		t.Fatalf("token after 2h: %d", a.status)
	}
	st, body := r.tokenRequest(seeded.TenantID, url.Values{"grant_type": {"client_credentials"}, "client_id": {seeded.ClientID},
		"client_secret": {"short-lived"}, "scope": {"https://graph.microsoft.com/.default"}})
	if codes, _ := body["error_codes"].([]any); st != 401 || len(codes) != 1 || codes[0] != float64(7000222) {
		t.Fatalf("expired secret: %d %v", st, body)
	}
}
