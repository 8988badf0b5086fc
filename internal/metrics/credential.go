package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Credential kinds of entraprov_credential_expiry_timestamp_seconds.
const (
	CredentialCertificate = "certificate"
	CredentialSecret      = "secret"
)

// newCredentialExpiry is
// entraprov_credential_expiry_timestamp_seconds{job,kind}, set by the
// daemon at start, on reload and every 12 h from the certificate file's
// NotAfter and, when the app may read its own registration, its client
// secret's end date.
func newCredentialExpiry() *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "credential_expiry_timestamp_seconds",
		Help: "Unix time at which the job's sign-in credential expires, by job and kind (certificate: the configured file's NotAfter; secret: the app registration's latest client secret end date).",
	}, []string{"job", "kind"})
}

// SetCredentialExpiry publishes when job's credential of kind expires; a
// zero time deletes the series (not known, or no longer used).
func (m *Metrics) SetCredentialExpiry(job, kind string, end time.Time) {
	if end.IsZero() {
		m.credentialExpiry.DeleteLabelValues(job, kind)
		return
	}
	m.credentialExpiry.WithLabelValues(job, kind).Set(float64(end.Unix()))
}
