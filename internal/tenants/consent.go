package tenants

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/store"
)

// Signer gets a token for a job's app in its tenant and reads the roles
// granted in it (*directory.Client). The token itself never leaves it.
type Signer interface {
	TokenRoles(ctx context.Context) (roles []string, tenant, appID string, err error)
}

var _ Signer = (*directory.Client)(nil)

// Recorder keeps each job's last sign-in (*store.Store).
type Recorder interface {
	SaveConsent(ctx context.Context, c store.Consent) error
}

var _ Recorder = (*store.Store)(nil)

// Judge is what one sign-in of job says about its tenant: signed in or
// not (with the AADSTS code and the translated advice), the roles granted,
// those of required missing, and the admin-consent URL when consent is or
// may be the fix. It is pure.
func Judge(job config.Job, required, roles []string, signInErr error, by string, at time.Time) store.Consent {
	c := store.Consent{Job: job.Name, TenantID: job.TenantID, CheckedAt: at, CheckedBy: by}
	if signInErr != nil {
		var ae *directory.AuthError
		if errors.As(signInErr, &ae) {
			c.AADSTS, c.Advice, c.ConsentURL = ae.Code, ae.Advice, ae.ConsentURL
		} else {
			// Not a refusal the worker can translate (the network, the
			// credential's file): its message names the cause, and never
			// holds a secret (azidentity does not echo one).
			c.Advice = truncate(signInErr.Error(), 400)
		}
		return c
	}
	c.SignedIn = true
	c.Granted = append([]string(nil), roles...)
	c.Missing = directory.MissingPermissions(required, roles)
	if len(c.Missing) > 0 {
		c.ConsentURL = directory.ConsentURL(job)
		c.Advice = fmt.Sprintf("the app lacks the application permission %s in this tenant: add it under the app registration's API permissions, then a tenant administrator must grant admin consent: %s",
			strings.Join(c.Missing, " and "), c.ConsentURL)
	}
	return c
}

// SignIn signs job in through s (the credential keeps the token for the
// requests that follow, so this costs no extra token request). A job that
// cannot sign in fails at once, naming the fix, instead of at its first
// Graph request: the failure is recorded for `worker tenants` and
// returned. A sign-in that succeeds is recorded by the returned Grant once
// the caller knows which permissions the job needs: that depends on its
// source (directory.RequiredPermissions), which a run reads after signing
// in. A failure to record is logged only: the run matters more than its
// onboarding view.
func SignIn(ctx context.Context, s Signer, rec Recorder, job config.Job, by string, log *slog.Logger) (*Grant, error) {
	roles, _, _, err := s.TokenRoles(ctx)
	if err != nil && ctx.Err() != nil {
		// Stopped while signing in: that says nothing about the tenant.
		return nil, err
	}
	g := &Grant{rec: rec, log: log, job: job, by: by, at: time.Now(), roles: roles}
	if err != nil {
		g.save(ctx, Judge(job, nil, nil, err, by, g.at))
		return nil, fmt.Errorf("sign in: %w", err)
	}
	return g, nil
}

// Grant is a successful sign-in waiting to be judged: the roles its token
// carries.
type Grant struct {
	rec   Recorder
	log   *slog.Logger
	job   config.Job
	by    string
	at    time.Time
	roles []string
}

// Record judges the sign-in's roles against required (what the job needs,
// directory.RequiredPermissions) and records the outcome for `worker
// tenants`. A missing role is recorded, not an error: Graph's 403 then
// says which request needed it.
func (g *Grant) Record(ctx context.Context, required []string) {
	g.save(ctx, Judge(g.job, required, g.roles, nil, g.by, g.at))
}

func (g *Grant) save(ctx context.Context, c store.Consent) {
	if err := g.rec.SaveConsent(context.WithoutCancel(ctx), c); err != nil && g.log != nil {
		g.log.WarnContext(ctx, "could not record the sign-in for worker tenants", "job", g.job.Name, "err", err)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
