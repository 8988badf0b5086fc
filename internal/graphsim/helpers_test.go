package graphsim_test

import (
	"bytes"
	"crypto/sha1"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/entraprov/entraprov/internal/graphsim"
)

// jwtClaims reads a token's claims without verifying it (the emulator
// verifies; tests only inspect).
func jwtClaims(t testing.TB, raw string) jwt.MapClaims {
	t.Helper()
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(raw, claims); err != nil {
		t.Fatalf("parse token: %v", err)
	}
	return claims
}

// raw is a plain HTTP client for the emulator, for facts the SDK hides
// (exact status codes, headers and bodies).
type raw struct {
	t     testing.TB
	srv   *graphsim.Server
	hc    *http.Client
	token string
}

func newRaw(t testing.TB, srv *graphsim.Server, seeded graphsim.Seeded) *raw {
	t.Helper()
	r := &raw{t: t, srv: srv, hc: srv.Client()}
	st, body := r.tokenRequest(seeded.TenantID, url.Values{
		"grant_type": {"client_credentials"}, "client_id": {seeded.ClientID},
		"client_secret": {seeded.ClientSecret}, "scope": {"https://graph.microsoft.com/.default"},
	})
	if st != 200 {
		t.Fatalf("token: %d %v", st, body)
	}
	r.token = body["access_token"].(string)
	return r
}

func (r *raw) tokenRequest(tenant string, form url.Values) (int, map[string]any) {
	r.t.Helper()
	resp, err := r.hc.PostForm(r.srv.AuthorityHost+tenant+"/oauth2/v2.0/token", form)
	if err != nil {
		r.t.Fatalf("token request: %v", err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

type answer struct {
	status int
	header http.Header
	body   map[string]any
}

// code is the Graph error code of the answer ("" when none).
func (a answer) code() string {
	e, _ := a.body["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func (a answer) message() string {
	e, _ := a.body["error"].(map[string]any)
	m, _ := e["message"].(string)
	return m
}

// do sends a Graph call; body is JSON-encoded unless nil; hdr are
// name, value pairs.
func (r *raw) do(method, path string, body any, hdr ...string) answer {
	r.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, r.srv.GraphURL+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		r.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode, header: resp.Header}
	b, _ := io.ReadAll(resp.Body)
	if len(b) > 0 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, &a.body); err != nil {
			r.t.Fatalf("%s %s: decode %q: %v", method, path, b, err)
		}
	}
	return a
}

func userBody(upn string) map[string]any {
	return map[string]any{
		"accountEnabled": true, "displayName": "User " + upn, "mailNickname": strings.SplitN(upn, "@", 2)[0],
		"userPrincipalName": upn, "passwordProfile": map[string]any{"password": "Xy7!longenough", "forceChangePasswordNextSignIn": true},
	}
}

// mustCreate creates a user and returns its id.
func (r *raw) mustCreate(upn string) string {
	r.t.Helper()
	a := r.do("POST", "/users", userBody(upn))
	if a.status != 201 {
		r.t.Fatalf("create %s: %d %v", upn, a.status, a.body)
	}
	return a.body["id"].(string)
}

func sha1Sum(b []byte) []byte {
	s := sha1.Sum(b)
	return s[:]
}

func decode(resp *http.Response, v any) {
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(v)
}

func newRequest(method, url string, body io.Reader, token string) *http.Request {
	req, _ := http.NewRequest(method, url, body)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	return req
}
