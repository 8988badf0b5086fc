package graphsim

import (
	"crypto/sha1"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

// permReadApp are the application permissions that allow GET
// /applications(appId='…') ("Get application", learn.microsoft.com
// graph/api/application-get, v1.0: least privileged Application.Read.All;
// higher Application.ReadWrite.OwnedBy, Application.ReadWrite.All,
// Directory.Read.All, Directory.ReadWrite.All).
var permReadApp = []string{"Application.Read.All", "Application.ReadWrite.OwnedBy", "Application.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}

// getApplication answers GET /applications(appId='{appId}') with the
// registration's passwordCredentials and keyCredentials: their end dates,
// never a secret's value (Graph returns secretText only when the secret is
// created, and this emulator leaves out the three-character hint too).
// A secret without expiry has a null endDateTime (Graph always sets one;
// the emulator's Secret.Expires zero means "never").
func (s *Sim) getApplication(t *tenant, c *call) *response {
	app, certs, registered := s.appSnapshot(strings.ToLower(c.params[0]))
	// The application object lives in its home tenant only; elsewhere a
	// multi-tenant app is a service principal.
	if !registered || app.HomeTenant != t.id {
		return notFound(c.params[0])
	}
	pw := make([]any, 0, len(app.Secrets))
	for i, sec := range app.Secrets {
		var end any
		if !sec.Expires.IsZero() {
			end = sec.Expires.UTC().Format(time.RFC3339)
		}
		pw = append(pw, map[string]any{
			"keyId": credentialKeyID(app.ClientID, "secret", i), "displayName": fmt.Sprintf("secret %d", i+1),
			"endDateTime": end, "startDateTime": nil, "hint": nil, "secretText": nil, "customKeyIdentifier": nil,
		})
	}
	keys := make([]any, 0, len(certs))
	for i, cert := range certs {
		sum := sha1.Sum(cert.Raw)
		keys = append(keys, map[string]any{
			"keyId": credentialKeyID(app.ClientID, "cert", i), "displayName": "CN=" + cert.Subject.CommonName,
			"type": "AsymmetricX509Cert", "usage": "Verify", "key": nil,
			"customKeyIdentifier": strings.ToUpper(hex.EncodeToString(sum[:])),
			"startDateTime":       cert.NotBefore.UTC().Format(time.RFC3339),
			"endDateTime":         cert.NotAfter.UTC().Format(time.RFC3339),
		})
	}
	body := map[string]any{"@odata.context": c.base + "/$metadata#applications(passwordCredentials,keyCredentials)/$entity"}
	sel := c.query.Get("$select")
	if sel == "" || strings.Contains(sel, "passwordCredentials") {
		body["passwordCredentials"] = pw
	}
	if sel == "" || strings.Contains(sel, "keyCredentials") {
		body["keyCredentials"] = keys
	}
	if sel == "" {
		body["id"], body["appId"], body["displayName"] = appObjectID(app.ClientID), app.ClientID, app.DisplayName
	}
	return &response{status: 200, body: body}
}

// credentialKeyID is a stable keyId per credential of an app.
func credentialKeyID(clientID, kind string, i int) string {
	return uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "%s/%s/%d", clientID, kind, i)).String()
}

// appSnapshot copies an app registration (its secrets slice too: rotation
// appends to it) and its parsed certificates under the lock.
func (s *Sim) appSnapshot(clientID string) (App, []*x509.Certificate, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	reg := s.apps[clientID]
	if reg == nil {
		return App{}, nil, false
	}
	app := reg.app
	app.Secrets = append([]Secret(nil), reg.app.Secrets...)
	return app, reg.certs, true
}
