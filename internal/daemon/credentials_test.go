package daemon

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/graphsim"
	"github.com/entraprov/entraprov/internal/metrics"
	esync "github.com/entraprov/entraprov/internal/sync"
)

// expirySeries reads entraprov_credential_expiry_timestamp_seconds from a
// gather of m's registry, by "job/kind".
func expirySeries(t *testing.T, m *metrics.Metrics) map[string]float64 {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		if f.GetName() != "entraprov_credential_expiry_timestamp_seconds" {
			continue
		}
		for _, s := range f.GetMetric() {
			var job, kind string
			for _, l := range s.GetLabel() {
				switch l.GetName() {
				case "job":
					job = l.GetValue()
				case "kind":
					kind = l.GetValue()
				}
			}
			out[job+"/"+kind] = s.GetGauge().GetValue()
		}
	}
	return out
}

// At start the daemon publishes each job's credential expiry: the
// certificate file's NotAfter (a warning in the log at 29 days), and the
// client secret's end date read from the app registration through the
// engine's real Graph client against graphsim, once the app holds
// Application.Read.All; before that the series is absent and the log names
// the permission.
func TestCredentialExpiryAtStart(t *testing.T) {
	ctx := context.Background()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	m := metrics.New()

	dir := t.TempDir()
	certPEM, keyPEM, err := graphsim.NewCertificate("expiring", 29*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "app.crt"), filepath.Join(dir, "app.key")
	for f, b := range map[string][]byte{certFile: certPEM, keyFile: keyPEM} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	certJob := config.Job{Name: "cert", Auth: config.Auth{Method: "certificate", CertificateFile: certFile, KeyFile: keyFile}}
	publishCertificateExpiry(ctx, m, []config.Job{certJob}, log)
	want, _ := directory.CertificateNotAfter(ctx, certJob.Auth)
	if got := expirySeries(t, m)["cert/certificate"]; got != float64(want.Unix()) {
		t.Errorf("certificate expiry = %v, want %v", got, want.Unix())
	}
	if !strings.Contains(logs.String(), "certificate expires soon") || !strings.Contains(logs.String(), "days_left=28") {
		t.Errorf("no warning for a certificate with 29 days left:\n%s", logs.String())
	}

	sim := graphsim.New(graphsim.Options{})
	seeded := sim.SeedDefault()
	srv := graphsim.StartTestTLS(t, sim)
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte(seeded.ClientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	secretJob := config.Job{Name: "secret", TenantID: seeded.TenantID, AuthorityHost: srv.AuthorityHost, GraphURL: srv.GraphURL,
		Auth: config.Auth{Method: "secret", ClientID: seeded.ClientID, Secret: config.SecretRef{File: secretFile}}}
	runner := EngineRunner(&esync.Engine{Connect: func(ctx context.Context, job config.Job) (esync.Directory, error) {
		return directory.New(ctx, job, directory.Options{HTTPClient: srv.Client(), MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond})
	}}).(secretExpiryReader)

	logs.Reset()
	publishSecretExpiry(ctx, m, runner, []config.Job{secretJob}, log)
	if _, ok := expirySeries(t, m)["secret/secret"]; ok {
		t.Error("a secret expiry was published without Application.Read.All")
	}
	if !strings.Contains(logs.String(), "expiry is unknown") || !strings.Contains(logs.String(), "permission=Application.Read.All") {
		t.Errorf("the log should name the permission that would let the worker know:\n%s", logs.String())
	}

	sim.Consent(seeded.TenantID, seeded.ClientID, directory.PermReadApplication)
	publishSecretExpiry(ctx, m, runner, []config.Job{secretJob}, log)
	got := expirySeries(t, m)["secret/secret"]
	if left := time.Until(time.Unix(int64(got), 0)); left < 360*24*time.Hour || left > 366*24*time.Hour {
		t.Errorf("secret expiry in %v, want the seeded secret's year", left)
	}
	if strings.Contains(logs.String(), seeded.ClientSecret) {
		t.Fatal("the log shows the client secret")
	}
}

// homeTenantReader answers for the template's home tenant only, as Graph
// does (the app registration lives there; a customer tenant answers 404).
type homeTenantReader struct {
	home  string
	end   time.Time
	asked []string
}

func (r *homeTenantReader) SecretExpiry(_ context.Context, job config.Job) (time.Time, error) {
	r.asked = append(r.asked, job.Name)
	if job.TenantID != r.home {
		return time.Time{}, &directory.GraphError{Status: 404, Code: "Request_ResourceNotFound"}
	}
	return r.end, nil
}

// The jobs of one template share its app and secret: they are asked until
// one answers, the answer is published for every tenant, and a template
// none of whose tenants answers is logged once, not once per tenant.
func TestSecretExpiryIsReadOncePerTemplate(t *testing.T) {
	secret := config.Auth{Method: "secret", ClientID: "c1"}
	job := func(name, template, tenant string) config.Job {
		return config.Job{Name: name, Template: template, TenantID: tenant, Auth: secret}
	}
	end := time.Now().Add(20 * 24 * time.Hour).Truncate(time.Second)
	for _, tc := range []struct {
		name      string
		home      string
		wantAsked []string
		wantLog   string
		lines     int
	}{
		{"home tenant second", "t2", []string{"isv@a", "isv@b", "hr"}, "client secret expires soon", 1},
		{"no tenant answers", "elsewhere", []string{"isv@a", "isv@b", "isv@c", "hr"}, "could not read the client secret's expiry", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			m := metrics.New()
			r := &homeTenantReader{home: tc.home, end: end}
			jobs := []config.Job{job("isv@a", "isv", "t1"), job("isv@b", "isv", "t2"), job("hr", "", "t9"), job("isv@c", "isv", "t3")}
			publishSecretExpiry(context.Background(), m, r, jobs, log)
			if strings.Join(r.asked, ",") != strings.Join(tc.wantAsked, ",") {
				t.Errorf("asked %v; want %v", r.asked, tc.wantAsked)
			}
			if n := strings.Count(logs.String(), tc.wantLog); n != tc.lines {
				t.Errorf("%d lines %q; want %d:\n%s", n, tc.wantLog, tc.lines, logs.String())
			}
			series := expirySeries(t, m)
			for _, name := range []string{"isv@a", "isv@b", "isv@c"} {
				want := float64(end.Unix())
				if tc.home == "elsewhere" {
					want = 0
				}
				if got := series[name+"/secret"]; got != want {
					t.Errorf("%s secret expiry = %v; want %v", name, got, want)
				}
			}
		})
	}
}
