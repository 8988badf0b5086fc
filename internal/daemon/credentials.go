package daemon

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/metrics"
)

// publishCertificateExpiry reads the NotAfter of every certificate job's
// configured file (no network) into
// entraprov_credential_expiry_timestamp_seconds and warns in the log when
// it is within directory.ExpiryWarning or past. A file that cannot be read
// is logged, not fatal: the job's runs then fail with the same error.
func publishCertificateExpiry(ctx context.Context, m *metrics.Metrics, jobs []config.Job, log *slog.Logger) {
	for _, j := range jobs {
		if j.Auth.Method != "certificate" {
			m.SetCredentialExpiry(j.Name, metrics.CredentialCertificate, time.Time{})
			continue
		}
		end, err := directory.CertificateNotAfter(ctx, j.Auth)
		if err != nil {
			log.Warn("could not read the certificate's expiry", "job", j.Name, "err", err)
			m.SetCredentialExpiry(j.Name, metrics.CredentialCertificate, time.Time{})
			continue
		}
		m.SetCredentialExpiry(j.Name, metrics.CredentialCertificate, end)
		logExpiry(log, j.Name, "certificate", end)
	}
}

// publishSecretExpiry asks Graph, for every client-secret job, when the app
// registration's secrets end (GET /applications(appId=…)), through the
// runner when it can (engineRunner). It runs beside the scheduler: a slow
// or refused answer must not hold the start-up. Without
// Application.Read.All the expiry stays unknown and the log says which
// permission would let the worker know.
func publishSecretExpiry(ctx context.Context, m *metrics.Metrics, r secretExpiryReader, jobs []config.Job, log *slog.Logger) {
	for _, j := range jobs {
		if j.Auth.Method != "secret" {
			m.SetCredentialExpiry(j.Name, metrics.CredentialSecret, time.Time{})
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		end, err := r.SecretExpiry(rctx, j)
		cancel()
		if ctx.Err() != nil {
			return
		}
		var ae *directory.AuthError
		switch {
		case errors.As(err, &ae) && ae.Permission == directory.PermReadApplication:
			log.Info("the client secret's expiry is unknown: the app may not read its own registration", "job", j.Name,
				"permission", directory.PermReadApplication, "consent_url", ae.ConsentURL)
		case err != nil:
			log.Warn("could not read the client secret's expiry", "job", j.Name, "err", err)
		case end.IsZero():
			log.Info("the app registration lists no client secret with an end date", "job", j.Name)
		default:
			m.SetCredentialExpiry(j.Name, metrics.CredentialSecret, end)
			logExpiry(log, j.Name, "client secret", end)
			continue
		}
		m.SetCredentialExpiry(j.Name, metrics.CredentialSecret, time.Time{})
	}
}

func logExpiry(log *slog.Logger, job, what string, end time.Time) {
	left := time.Until(end)
	switch {
	case left <= 0:
		log.Error("the "+what+" has expired: sign-in will fail", "job", job, "expired_at", end.UTC().Format(time.RFC3339))
	case left < directory.ExpiryWarning:
		log.Warn("the "+what+" expires soon: renew it and upload it to the app registration", "job", job,
			"expires_at", end.UTC().Format(time.RFC3339), "days_left", int(left.Hours()/24))
	}
}
