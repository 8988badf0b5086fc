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

// Recorder keeps each job's last sign-in, and says whether the job
// manages group memberships (which needs one more permission)
// (*store.Store).
type Recorder interface {
	SaveConsent(ctx context.Context, c store.Consent) error
	JobUsesGroups(ctx context.Context, job, relation string) (bool, error)
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
// requests that follow, so this costs no extra token request), records the
// outcome for `worker tenants` and returns the sign-in's error: a job that
// cannot sign in fails at once, naming the fix, instead of at its first
// Graph request. A missing role is recorded, not an error: Graph's 403 then
// says which request needed it. A failure to record is logged only: the
// run matters more than its onboarding view.
func SignIn(ctx context.Context, s Signer, rec Recorder, job config.Job, by string, log *slog.Logger) error {
	roles, _, _, err := s.TokenRoles(ctx)
	if ctx.Err() != nil {
		// Stopped while signing in: that says nothing about the tenant.
		return err
	}
	// The permissions judged are those worker check requires: a run must
	// not call a tenant fine that check calls short of GroupMember.
	required := []string{directory.PermUsers}
	if err == nil {
		if uses, gerr := rec.JobUsesGroups(ctx, job.Name, job.Source); gerr == nil && uses {
			required = append(required, directory.PermGroups)
		}
	}
	c := Judge(job, required, roles, err, by, time.Now())
	if rerr := rec.SaveConsent(context.WithoutCancel(ctx), c); rerr != nil && log != nil {
		log.WarnContext(ctx, "could not record the sign-in for worker tenants", "job", job.Name, "err", rerr)
	}
	if err != nil {
		return fmt.Errorf("sign in: %w", err)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
