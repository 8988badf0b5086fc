package conformance_test

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

// The tenant target is read from the environment: each missing variable is
// named, a secret or a certificate (PEM or PFX) each give a sign-in, and
// the secret's value never lands in the job (only the variable's name).
func TestTenantTargetFromEnvironment(t *testing.T) {
	complete := map[string]string{envTenant: "t-id", envClient: "c-id", envDomain: "example.org", envGroup: "g-id"}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range complete {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	tests := []struct {
		name        string
		env         map[string]string
		wantMissing []string
		wantCreds   []string
		wantPFX     bool
	}{
		{name: "nothing set", env: nil,
			wantMissing: []string{envTenant, envClient, envDomain, envGroup, envSecret + " or " + envCert}},
		{name: "no credential", env: complete, wantMissing: []string{envSecret + " or " + envCert}},
		{name: "no group", env: map[string]string{envTenant: "t", envClient: "c", envDomain: "d", envSecret: "s"},
			wantMissing: []string{envGroup}},
		{name: "secret only", env: with(map[string]string{envSecret: "s3cr3t-value"}), wantCreds: []string{credSecret}},
		{name: "PEM certificate only", env: with(map[string]string{envCert: "/etc/app.pem"}), wantCreds: []string{credCert}},
		{name: "both, PFX", env: with(map[string]string{envSecret: "s3cr3t-value", envCert: "/etc/app.PFX", envCertPassword: "pw"}),
			wantCreds: []string{credCert, credSecret}, wantPFX: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, v := range []string{envTenant, envClient, envSecret, envCert, envCertPassword, envDomain, envGroup, envCloud} {
				t.Setenv(v, tc.env[v])
			}
			tg, missing := tenantTarget()
			if !slices.Equal(missing, tc.wantMissing) {
				t.Fatalf("missing = %q, want %q", missing, tc.wantMissing)
			}
			if len(missing) > 0 {
				msg := skipMessage(missing)
				for _, v := range append(missing, envTenant, envClient, envSecret, envCert, envDomain, envGroup, "CONFORMANCE_TARGET=graphsim", "User.DeleteRestore.All") {
					for _, part := range strings.Split(v, " or ") {
						if !strings.Contains(msg, part) {
							t.Errorf("skip message does not name %s:\n%s", part, msg)
						}
					}
				}
				return
			}
			creds := slices.Sorted(maps.Keys(tg.jobs))
			if !slices.Equal(creds, tc.wantCreds) {
				t.Fatalf("credentials %v, want %v", creds, tc.wantCreds)
			}
			if j, ok := tg.jobs[credSecret]; ok && (j.Auth.Method != "secret" || j.Auth.Secret.Env != envSecret || j.Auth.Secret.File != "") {
				t.Errorf("secret job auth %+v: want the secret read from %s", j.Auth, envSecret)
			}
			if j, ok := tg.jobs[credCert]; ok {
				if j.Auth.Method != "certificate" || (j.Auth.PFXFile != "") != tc.wantPFX || (j.Auth.CertificateFile != "") == tc.wantPFX {
					t.Errorf("certificate job auth %+v (PFX wanted %v)", j.Auth, tc.wantPFX)
				}
				if tc.wantPFX && j.Auth.PFXPassword.Env != envCertPassword {
					t.Errorf("PFX password from %q, want %s", j.Auth.PFXPassword.Env, envCertPassword)
				}
			}
			if j := tg.primaryJob(); strings.Contains(j.Auth.Secret.Env+j.Auth.Secret.File, "s3cr3t") {
				t.Error("the secret's value reached the job")
			}
			if tg.tenantID != "t-id" || tg.domain != "example.org" || tg.groupID != "g-id" || tg.squeeze != nil || tg.sim != nil {
				t.Errorf("target %+v", tg)
			}
		})
	}
}
