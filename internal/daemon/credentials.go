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
//
// The jobs expanded from one template share its app and secret, and the
// app registration lives in one tenant only (a customer tenant answers
// 404): they are asked in turn until one answers, the answer is published
// for all of them, and a group where none answers is logged once, not once
// per tenant.
func publishSecretExpiry(ctx context.Context, m *metrics.Metrics, r secretExpiryReader, jobs []config.Job, log *slog.Logger) {
	for _, group := range secretGroups(jobs) {
		if group[0].Auth.Method != "secret" {
			for _, j := range group {
				m.SetCredentialExpiry(j.Name, metrics.CredentialSecret, time.Time{})
			}
			continue
		}
		end, known, err := readSecretExpiry(ctx, r, group)
		if ctx.Err() != nil {
			return
		}
		for _, j := range group {
			m.SetCredentialExpiry(j.Name, metrics.CredentialSecret, end)
		}
		name, attrs := group[0].Name, []any{}
		if len(group) > 1 {
			name = group[0].Template
			attrs = []any{"tenants", len(group)}
		}
		var ae *directory.AuthError
		switch {
		case known && end.IsZero():
			log.Info("the app registration lists no client secret with an end date", append([]any{"job", name}, attrs...)...)
		case known:
			logExpiry(log, name, "client secret", end)
		case errors.As(err, &ae) && ae.Permission == directory.PermReadApplication:
			log.Info("the client secret's expiry is unknown: the app may not read its own registration", append([]any{"job", name,
				"permission", directory.PermReadApplication, "consent_url", ae.ConsentURL}, attrs...)...)
		default:
			log.Warn("could not read the client secret's expiry", append([]any{"job", name, "err", err}, attrs...)...)
		}
	}
}

// secretGroups puts the jobs expanded from one template together (in the
// order of their first job); every other job is a group of its own.
func secretGroups(jobs []config.Job) [][]config.Job {
	var groups [][]config.Job
	at := map[string]int{}
	for _, j := range jobs {
		if j.Template == "" {
			groups = append(groups, []config.Job{j})
			continue
		}
		i, ok := at[j.Template]
		if !ok {
			i = len(groups)
			at[j.Template] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], j)
	}
	return groups
}

// readSecretExpiry asks for the group's secret end date through each job
// in turn until one answers (known); err is the last refusal otherwise.
func readSecretExpiry(ctx context.Context, r secretExpiryReader, group []config.Job) (end time.Time, known bool, err error) {
	for _, j := range group {
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		end, err = r.SecretExpiry(rctx, j)
		cancel()
		if err == nil {
			return end, true, nil
		}
		if ctx.Err() != nil {
			return time.Time{}, false, ctx.Err()
		}
	}
	return time.Time{}, false, err
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
