package daemon

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/graphsim"
	"github.com/entraprov/entraprov/internal/jobs"
	"github.com/entraprov/entraprov/internal/metrics"
	esync "github.com/entraprov/entraprov/internal/sync"
	"github.com/entraprov/entraprov/internal/synctest"
	"github.com/entraprov/entraprov/internal/testdb"
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
	newCredentialWatch(m, log, []config.Job{certJob}).certificates(ctx, []config.Job{certJob})
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
	runner := simRunner(srv).(secretExpiryReader)

	logs.Reset()
	w := newCredentialWatch(m, log, []config.Job{secretJob})
	w.secrets(ctx, runner, []config.Job{secretJob})
	if _, ok := expirySeries(t, m)["secret/secret"]; ok {
		t.Error("a secret expiry was published without Application.Read.All")
	}
	if !strings.Contains(logs.String(), "expiry is unknown") || !strings.Contains(logs.String(), "permission=Application.Read.All") {
		t.Errorf("the log should name the permission that would let the worker know:\n%s", logs.String())
	}

	sim.Consent(seeded.TenantID, seeded.ClientID, directory.PermReadApplication)
	w.secrets(ctx, runner, []config.Job{secretJob})
	got := expirySeries(t, m)["secret/secret"]
	if left := time.Until(time.Unix(int64(got), 0)); left < 360*24*time.Hour || left > 366*24*time.Hour {
		t.Errorf("secret expiry in %v, want the seeded secret's year", left)
	}
	if strings.Contains(logs.String(), seeded.ClientSecret) {
		t.Fatal("the log shows the client secret")
	}
}

// simRunner is the engine's runner with its real Graph client, talking
// TLS to graphsim.
func simRunner(srv *graphsim.Server) jobs.Runner {
	return EngineRunner(&esync.Engine{Connect: func(ctx context.Context, job config.Job) (esync.Directory, error) {
		return directory.New(ctx, job, directory.Options{HTTPClient: srv.Client(), MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond})
	}})
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
			newCredentialWatch(m, log, jobs).secrets(context.Background(), r, jobs)
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

// A credential within the warning window is warned about at the first
// read that finds it so and then at most once a day while it stays so
// (the daemon reads every 12 h); a renewed credential that is close too,
// or one that expires, is said at once; an unreadable file is said once
// until it changes.
func TestExpiryWarningAtMostDaily(t *testing.T) {
	var logs bytes.Buffer
	w := newCredentialWatch(metrics.New(), slog.New(slog.NewTextHandler(&logs, nil)), nil)
	t0 := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	first := t0.Add(20 * 24 * time.Hour)
	renewed := t0.Add(25 * 24 * time.Hour)
	for _, step := range []struct {
		after time.Duration // since t0
		end   time.Time
		want  string // the line logged ("": none)
	}{
		{0, first, "expires soon"},
		{12 * time.Hour, first, ""},
		{24*time.Hour - time.Second, first, ""},
		{24 * time.Hour, first, "expires soon"},
		{36 * time.Hour, first, ""},
		{37 * time.Hour, renewed, "expires soon"}, // another end date: a new credential
		{38 * time.Hour, renewed, ""},
		{25*24*time.Hour + time.Second, renewed, "has expired"},
		{25*24*time.Hour + 12*time.Hour, renewed, ""},
		{26*24*time.Hour + time.Second, renewed, "has expired"},
		{26*24*time.Hour + 2*time.Second, t0.Add(400 * 24 * time.Hour), ""}, // renewed for a year
		{27 * 24 * time.Hour, t0.Add(400 * 24 * time.Hour), ""},
	} {
		logs.Reset()
		w.now = func() time.Time { return t0.Add(step.after) }
		w.logExpiry("certificate/nightly", "nightly", "certificate", step.end)
		got := logs.String()
		if step.want == "" && got != "" || step.want != "" && strings.Count(got, "\n") != 1 || !strings.Contains(got, step.want) {
			t.Errorf("at t0+%v, ending %s: logged %q; want one line %q", step.after, step.end.Format(time.DateOnly), got, step.want)
		}
	}

	logs.Reset()
	missing := []config.Job{{Name: "nightly", Auth: config.Auth{Method: "certificate", CertificateFile: filepath.Join(t.TempDir(), "gone.crt")}}}
	w.setJobs(missing)
	for range 3 {
		w.certificates(context.Background(), missing)
	}
	if n := strings.Count(logs.String(), "could not read the certificate's expiry"); n != 1 {
		t.Errorf("an unreadable certificate logged %d times in 3 reads; want once:\n%s", n, logs.String())
	}
}

// writeCertificate writes a new certificate valid for validity, and its
// key, over certFile and keyFile (an operator's renewal), and returns its
// NotAfter.
func writeCertificate(t *testing.T, certFile, keyFile string, validity time.Duration) time.Time {
	t.Helper()
	certPEM, keyPEM, err := graphsim.NewCertificate("entraprov", validity)
	if err != nil {
		t.Fatal(err)
	}
	for f, b := range map[string][]byte{certFile: certPEM, keyFile: keyPEM} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	end, err := directory.CertificateNotAfter(context.Background(), config.Auth{Method: "certificate", CertificateFile: certFile, KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	return end
}

// The running daemon (real PostgreSQL, the engine's Graph client against
// graphsim) follows its credentials without a restart: at each refresh
// tick it reads the certificate file replaced on disk and the secret added
// to the app registration; a SIGHUP reads the secret again at once; the
// certificate expiring in 29 days is warned about once at start, not at
// every read; and it stops with nothing left running.
func TestCredentialExpiryFollowedWhileRunning(t *testing.T) {
	sim := graphsim.New(graphsim.Options{})
	seeded := sim.SeedDefault()
	sim.Consent(seeded.TenantID, seeded.ClientID, directory.PermReadApplication)
	srv, err := graphsim.StartTLS(sim, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)

	dir := t.TempDir()
	certFile, keyFile, secretFile := filepath.Join(dir, "app.crt"), filepath.Join(dir, "app.key"), filepath.Join(dir, "secret")
	certEnd := writeCertificate(t, certFile, keyFile, 29*24*time.Hour)
	if err := os.WriteFile(secretFile, []byte(seeded.ClientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	job := func(name string, auth config.Auth) config.Job {
		return config.Job{Name: name, TenantID: seeded.TenantID, AuthorityHost: srv.AuthorityHost, GraphURL: srv.GraphURL,
			Schedule: "0 3 1 1 *", Auth: auth} // yearly, no catch-up: nothing runs during the test
	}
	cfg := config.Default()
	cfg.Metrics.Listen = ""
	cfg.Jobs = []config.Job{
		job("cert", config.Auth{Method: "certificate", ClientID: seeded.ClientID, CertificateFile: certFile, KeyFile: keyFile}),
		job("secret", config.Auth{Method: "secret", ClientID: seeded.ClientID, Secret: config.SecretRef{File: secretFile}}),
	}

	var logs synctest.Buffer
	mc := make(chan *metrics.Metrics, 1)
	tick, hangup := make(chan time.Time), make(chan os.Signal)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{
			Config: &cfg, Reload: func() (*config.Config, error) { return &cfg, nil }, Store: testdb.New(t),
			NewRunner: func(_ context.Context, m *metrics.Metrics) (jobs.Runner, error) {
				mc <- m
				return simRunner(srv), nil
			},
			Log: slog.New(slog.NewTextHandler(&logs, nil)), StopTimeout: 5 * time.Second, Hangup: hangup,
			credentialTick: tick,
		})
	}()
	m := <-mc
	// The credential loop takes one tick at a time after its start-up
	// read: a second tick is taken once the first one's reads are done.
	refresh := func() {
		tick <- time.Now()
		tick <- time.Now()
	}
	secretEnd := func() int64 { return int64(expirySeries(t, m)["secret/secret"]) }

	refresh()
	if got := expirySeries(t, m)["cert/certificate"]; got != float64(certEnd.Unix()) {
		t.Errorf("certificate expiry at start = %v; want %v", got, certEnd.Unix())
	}
	if left := time.Until(time.Unix(secretEnd(), 0)); left < 360*24*time.Hour || left > 366*24*time.Hour {
		t.Errorf("secret expiry at start in %v; want the seeded secret's year", left)
	}
	if n := strings.Count(logs.String(), "certificate expires soon"); n != 1 {
		t.Errorf("the certificate expiring in 29 days was warned about %d times in a start and 2 refreshes; want once:\n%s", n, logs.String())
	}

	renewedCert := writeCertificate(t, certFile, keyFile, 400*24*time.Hour)
	added := time.Now().Add(2 * 365 * 24 * time.Hour).Truncate(time.Second)
	sim.AddSecret(seeded.ClientID, graphsim.Secret{Value: graphsim.NewSecret(), Expires: added})
	refresh()
	if got := expirySeries(t, m)["cert/certificate"]; got != float64(renewedCert.Unix()) {
		t.Errorf("certificate expiry after the file was replaced = %v; want the new file's %v", got, renewedCert.Unix())
	}
	if got := secretEnd(); got != added.Unix() {
		t.Errorf("secret expiry after a secret was added = %v; want the new secret's %v", got, added.Unix())
	}

	// SIGHUP: no tick, the reload alone reads the secrets again.
	reloaded := added.Add(365 * 24 * time.Hour)
	sim.AddSecret(seeded.ClientID, graphsim.Secret{Value: graphsim.NewSecret(), Expires: reloaded})
	hangup <- syscall.SIGHUP
	for deadline := time.Now().Add(10 * time.Second); secretEnd() != reloaded.Unix(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("secret expiry %v 10s after SIGHUP; want the secret added before it, %v:\n%s", secretEnd(), reloaded.Unix(), logs.String())
		}
	}
	if n := strings.Count(logs.String(), "expires soon"); n != 1 {
		t.Errorf("%d expiry warnings; want the first certificate's one:\n%s", n, logs.String())
	}
	if strings.Contains(logs.String(), seeded.ClientSecret) {
		t.Fatal("the log shows the client secret")
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the daemon did not stop within 10s:\n%s", logs.String())
	}
}

// refusingReader answers each tenant with its own refusal, as Graph does
// for a template whose tenants differ: one where the app lacks
// Application.Read.All (403), one that never consented (AADSTS700016 at
// sign-in), one where it may read but is not registered (404).
type refusingReader map[string]error

func (r refusingReader) SecretExpiry(_ context.Context, job config.Job) (time.Time, error) {
	return time.Time{}, r[job.TenantID]
}

// When no tenant of a template answers, the log says what the operator can
// act on — the permission the app lacks — whichever tenant was asked last,
// and names no customer's consent page: the app registration is read in
// the tenant where the app is registered, not in a customer's tenant.
func TestSecretExpiryRefusedByEveryTenant(t *testing.T) {
	secret := config.Auth{Method: "secret", ClientID: "c1"}
	denied := &directory.AuthError{Tenant: "t1", ClientID: "c1", Permission: directory.PermReadApplication,
		ConsentURL: "https://login.microsoftonline.com/t1/adminconsent?client_id=c1", Consent: true}
	notConsented := &directory.AuthError{Code: 700016, Tenant: "t2", ClientID: "c1",
		ConsentURL: "https://login.microsoftonline.com/t2/adminconsent?client_id=c1", Consent: true}
	notFound := &directory.GraphError{Status: 404, Code: "Request_ResourceNotFound"}
	for _, tc := range []struct {
		name    string
		answers refusingReader
		want    string
		not     []string
	}{
		{"permission first, unconsented tenant last", refusingReader{"t1": denied, "t3": notFound, "t2": notConsented},
			"the client secret's expiry is unknown", []string{"could not read", "AADSTS700016", "adminconsent"}},
		{"only sign-in failures and 404", refusingReader{"t1": notFound, "t3": notFound, "t2": notConsented},
			"could not read the client secret's expiry", []string{"AADSTS700016"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			jobs := []config.Job{
				{Name: "isv@a", Template: "isv", TenantID: "t1", Auth: secret},
				{Name: "isv@c", Template: "isv", TenantID: "t3", Auth: secret},
				{Name: "isv@b", Template: "isv", TenantID: "t2", Auth: secret},
			}
			newCredentialWatch(metrics.New(), log, jobs).secrets(context.Background(), tc.answers, jobs)
			out := logs.String()
			if strings.Count(out, tc.want) != 1 || strings.Count(out, "\n") != 1 {
				t.Errorf("want one line %q; log:\n%s", tc.want, out)
			}
			for _, s := range tc.not {
				if strings.Contains(out, s) {
					t.Errorf("log says %q:\n%s", s, out)
				}
			}
		})
	}
}
