package directory_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/graphsim"
)

// The app reads its own registration through the real SDK pipeline: the
// end dates graphsim holds for its secrets and certificate come back, and
// without Application.Read.All the 403 names that permission (not the
// User.Read.All of a user read) and the consent URL.
func TestAppCredentials(t *testing.T) {
	e := newEnv(t, graphsim.Options{}, nil)
	ctx := context.Background()
	_, err := e.c.AppCredentials(ctx)
	var ae *directory.AuthError
	if !errors.As(err, &ae) || ae.Permission != directory.PermReadApplication || ae.ConsentURL == "" ||
		!strings.Contains(err.Error(), "Application.Read.All") {
		t.Fatalf("AppCredentials without Application.Read.All = %v; want an AuthError naming it", err)
	}

	e.sim.Consent(e.seeded.TenantID, e.seeded.ClientID, directory.PermReadApplication)
	soon := time.Now().Add(10 * 24 * time.Hour).UTC().Truncate(time.Second)
	e.sim.AddSecret(e.seeded.ClientID, graphsim.Secret{Value: graphsim.NewSecret(), Expires: soon})
	// A fresh client: the first token was issued before the consent.
	c, err := directory.New(ctx, e.job, directory.Options{HTTPClient: e.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.AppCredentials(ctx)
	if err != nil {
		t.Fatalf("AppCredentials: %v", err)
	}
	if len(got.Secrets) != 2 || len(got.Certificates) != 1 {
		t.Fatalf("credentials = %+v; want the seeded secret, the added one and the certificate", got)
	}
	if !got.Secrets[1].End.Equal(soon) {
		t.Errorf("added secret ends %v, want %v", got.Secrets[1].End, soon)
	}
	// The seeded secret lasts a year: the latest end is the one a rotation
	// moved to.
	if end, ok := got.LatestSecretEnd(); !ok || end.Before(time.Now().Add(300*24*time.Hour)) {
		t.Errorf("LatestSecretEnd = %v, %v; want the seeded secret's (a year out)", end, ok)
	}
	certEnd, err := directory.CertificateNotAfter(ctx, certAuth(t, e.seeded.CertPEM, e.seeded.KeyPEM))
	if err != nil {
		t.Fatal(err)
	}
	if !got.Certificates[0].End.Equal(certEnd.UTC().Truncate(time.Second)) {
		t.Errorf("keyCredentials end %v, want the certificate's NotAfter %v", got.Certificates[0].End, certEnd)
	}
}

func TestCertificateNotAfter(t *testing.T) {
	certPEM, keyPEM, err := graphsim.NewCertificate("expiring", 29*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	got, err := directory.CertificateNotAfter(context.Background(), certAuth(t, certPEM, keyPEM))
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(got); d < 28*24*time.Hour || d > 29*24*time.Hour {
		t.Errorf("NotAfter in %v, want 29 days", d)
	}
	_, err = directory.CertificateNotAfter(context.Background(), config.Auth{Method: "certificate", CertificateFile: filepath.Join(t.TempDir(), "none.pem")})
	if err == nil || !strings.Contains(err.Error(), "auth.certificate_file") {
		t.Errorf("missing file: %v; want an error naming auth.certificate_file", err)
	}
}

func certAuth(t *testing.T, certPEM, keyPEM []byte) config.Auth {
	t.Helper()
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "app.crt"), filepath.Join(dir, "app.key")
	if err := os.WriteFile(cf, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kf, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return config.Auth{Method: "certificate", CertificateFile: cf, KeyFile: kf}
}
