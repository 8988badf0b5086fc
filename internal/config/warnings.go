package config

import (
	"fmt"
	"os"
)

// Warnings lists what is allowed but risky in a valid configuration, for
// `worker config validate`, `worker check` and the log at start-up and
// reload: endpoints outside the job's cloud (unsafe_custom_endpoints), and
// secret files that other accounts can read or that this process's user
// does not own. Like validation, it only stats files; messages never hold
// a secret.
func (c *Config) Warnings() []Problem {
	v := &validator{}
	v.secretFile("database.password.file", c.Database.Password.File)
	for i, j := range c.Jobs {
		k := fmt.Sprintf("jobs[%d]", i)
		fa, fg := j.foreignEndpoints()
		if j.UnsafeCustomEndpoints {
			if fa != "" {
				v.add(k+".authority_host", "unsafe_custom_endpoints: the job's client secret or signed assertion is sent to %s, outside cloud %s", fa, j.Cloud)
			}
			if fg != "" {
				v.add(k+".graph_url", "unsafe_custom_endpoints: the job's Graph tokens are sent to %s, outside cloud %s", fg, j.Cloud)
			}
			if fa == "" && fg == "" {
				v.add(k+".unsafe_custom_endpoints", "set, but no endpoint leaves cloud %s: remove it so that a later edit cannot redirect the credentials unnoticed", j.Cloud)
			}
		}
		a := j.Auth
		if a.Method == "secret" {
			v.secretFile(k+".auth.client_secret.file", a.Secret.File)
		}
		if a.Method == "certificate" {
			v.secretFile(k+".auth.key_file", a.KeyFile)
			v.secretFile(k+".auth.pfx_file", a.PFXFile)
			v.secretFile(k+".auth.pfx_password.file", a.PFXPassword.File)
			if a.KeyFile == "" && a.KeyCredential == "" {
				// The PEM holds the private key too.
				v.secretFile(k+".auth.certificate_file", a.CertificateFile)
			}
		}
		// federated_token_file is left out: the kubelet owns and projects
		// it with its own modes.
		v.secretFile(k+".webhook.url.file", j.Webhook.URL.Ref.File)
	}
	return v.ps
}

// secretFile warns about a secret file other accounts may read or replace.
// Files from $CREDENTIALS_DIRECTORY are not checked: systemd makes them
// readable by the service alone.
func (v *validator) secretFile(k, path string) {
	if path == "" {
		return
	}
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return // validation reports it
	}
	const fix = "or let systemd load it (LoadCredential=NAME:%s) and reference it as {credential: NAME}"
	if perm := fi.Mode().Perm(); perm&0o044 != 0 {
		who := "world"
		if perm&0o004 == 0 {
			who = "group"
		}
		v.add(k, "%s is %s-readable (mode %04o): other accounts can read the secret; chmod 600 %s, "+fix, path, who, perm, path, path)
	}
	if uid, ok := fileOwner(fi); ok && uid != os.Geteuid() {
		v.add(k, "%s is owned by uid %d, not by the user this process runs as (uid %d): that account can read or replace the secret; chown it to the service user, "+fix, path, uid, os.Geteuid(), path)
	}
}
