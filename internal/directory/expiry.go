package directory

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/entraprov/entraprov/internal/config"
)

// PermReadApplication is the least privileged application permission that
// lets the app read its own registration (GET /applications(appId='…'),
// learn.microsoft.com graph/api/application-get): without it the worker
// cannot know when its client secret expires.
const PermReadApplication = "Application.Read.All"

// opReadApplication names the read for permissionFor.
const opReadApplication OpKind = "read_application"

// CertificateNotAfter is when the job's configured certificate stops being
// valid: the earliest NotAfter of the certificates in the file (a chain
// is only as good as its shortest link). It reads the files the sign-in
// reads (certificate_file with key_file or key_credential, or pfx_file).
func CertificateNotAfter(ctx context.Context, a config.Auth) (time.Time, error) {
	certs, _, err := loadCertificate(ctx, a)
	if err != nil {
		return time.Time{}, err
	}
	var end time.Time
	for _, c := range certs {
		if end.IsZero() || c.NotAfter.Before(end) {
			end = c.NotAfter
		}
	}
	if end.IsZero() {
		return time.Time{}, errors.New("auth.certificate_file: no certificate found")
	}
	return end, nil
}

// CredentialEnd is one credential of the app registration: its key id,
// display name and end date (zero: none given).
type CredentialEnd struct {
	KeyID, Name string
	End         time.Time
}

// AppCredentials are the end dates of the app registration's client
// secrets (passwordCredentials) and certificates (keyCredentials).
type AppCredentials struct {
	Secrets, Certificates []CredentialEnd
}

// LatestSecretEnd is the last end date among the client secrets, and false
// when there is none with an end date. The worker cannot tell which secret
// it holds (Graph never returns a value), so it reports the one a rotation
// would have moved to: a secret that expires while a newer one exists is
// an unfinished rotation, which the sign-in's AADSTS7000222 then names.
func (a AppCredentials) LatestSecretEnd() (time.Time, bool) {
	var end time.Time
	for _, s := range a.Secrets {
		if s.End.After(end) {
			end = s.End
		}
	}
	return end, !end.IsZero()
}

type credentialJSON struct {
	KeyID       string     `json:"keyId"`
	DisplayName string     `json:"displayName"`
	EndDateTime *time.Time `json:"endDateTime"`
}

func (c credentialJSON) end() CredentialEnd {
	e := CredentialEnd{KeyID: c.KeyID, Name: c.DisplayName}
	if c.EndDateTime != nil {
		e.End = *c.EndDateTime
	}
	return e
}

// AppCredentials reads the job's own app registration,
// GET /applications(appId='{client id}')?$select=passwordCredentials,keyCredentials.
// Without Application.Read.All (403) the error is an *AuthError whose
// Permission is PermReadApplication, with the admin-consent URL.
func (c *Client) AppCredentials(ctx context.Context) (AppCredentials, error) {
	u := c.ep.graphURL + "/applications(appId='" + url.PathEscape(c.job.Auth.ClientID) + "')?$select=passwordCredentials,keyCredentials"
	var body struct {
		Password []credentialJSON `json:"passwordCredentials"`
		Key      []credentialJSON `json:"keyCredentials"`
	}
	if _, err := c.getJSON(ctx, u, nil, &body); err != nil {
		// getJSON names the permission of a user read; this one needs
		// another.
		if ge, ok := asGraphError(err); ok && ge.Status == 403 {
			err = c.auth.denied(ge, opReadApplication)
		}
		return AppCredentials{}, fmt.Errorf("read the app registration: %w", err)
	}
	var out AppCredentials
	for _, p := range body.Password {
		out.Secrets = append(out.Secrets, p.end())
	}
	for _, k := range body.Key {
		out.Certificates = append(out.Certificates, k.end())
	}
	return out, nil
}

// ExpiryWarning is how long before a credential expires the worker warns
// (worker check, the daemon's start-up log, the alert rule's threshold):
// time for a change request and an upload to the app registration.
const ExpiryWarning = 30 * 24 * time.Hour
