package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The expiry gauge is exported per job and kind under the name the alert
// and the dashboard use; a zero time or a removed job drops the series.
func TestSetCredentialExpiry(t *testing.T) {
	m := New()
	certEnd := time.Unix(1_900_000_000, 0)
	m.SetCredentialExpiry("nightly", CredentialCertificate, certEnd)
	m.SetCredentialExpiry("daily", CredentialSecret, time.Unix(1_800_000_000, 0))
	m.SetCredentialExpiry("daily", CredentialCertificate, time.Unix(1_700_000_000, 0))
	m.SetCredentialExpiry("daily", CredentialCertificate, time.Time{})
	want := `
# HELP entraprov_credential_expiry_timestamp_seconds Unix time at which the job's sign-in credential expires, by job and kind (certificate: the configured file's NotAfter; secret: the app registration's latest client secret end date).
# TYPE entraprov_credential_expiry_timestamp_seconds gauge
entraprov_credential_expiry_timestamp_seconds{job="daily",kind="secret"} 1.8e+09
entraprov_credential_expiry_timestamp_seconds{job="nightly",kind="certificate"} 1.9e+09
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "entraprov_credential_expiry_timestamp_seconds"); err != nil {
		t.Fatal(err)
	}
	m.ForgetJob("daily")
	if n := testutil.CollectAndCount(m.credentialExpiry); n != 1 {
		t.Errorf("series after ForgetJob(daily) = %d, want 1", n)
	}
}
