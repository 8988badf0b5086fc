package daemon

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/metrics"
)

// credentialRefresh is how often `worker run` reads every job's credential
// expiry again (the certificate files, and the app registrations through
// Graph), so that a certificate file replaced on disk or a client secret
// added to the app registration shows in the gauge without a restart, and
// a credential nearing its end keeps being warned about. Credentials are
// renewed weeks ahead (the alert and the warning start 30 days before), so
// twice a day is ample, and costs one Graph read per app registration. It
// is not a setting: no operator needs another value.
const credentialRefresh = 12 * time.Hour

// expiryRepeat is how often a credential within directory.ExpiryWarning
// (or expired) is warned about again while it stays so: daily, not at
// every read, so the log does not fill with one warning per refresh.
const expiryRepeat = 24 * time.Hour

// credentialWatch publishes the jobs' credential expiry into
// entraprov_credential_expiry_timestamp_seconds and says in the log what
// it found, each outcome once until it changes, and an approaching or past
// expiry again every expiryRepeat.
type credentialWatch struct {
	m   *metrics.Metrics
	log *slog.Logger
	now func() time.Time

	mu sync.Mutex
	// jobs are the jobs scheduled now: a read that ends after a reload
	// removed a job (and its series) must not publish it again.
	jobs map[string]bool
	// said is what was last logged about each credential (by kind and job
	// or template name), and when.
	said map[string]said
}

type said struct {
	what string // the outcome, with the end date of an expiry warning
	at   time.Time
}

func newCredentialWatch(m *metrics.Metrics, log *slog.Logger, jobs []config.Job) *credentialWatch {
	w := &credentialWatch{m: m, log: log, now: time.Now, said: map[string]said{}}
	w.setJobs(jobs)
	return w
}

// setJobs makes jobs the ones whose series are published, and forgets
// what was said about credentials of jobs or templates no longer there.
func (w *credentialWatch) setJobs(jobs []config.Job) {
	names := map[string]bool{}
	for _, j := range jobs {
		names[j.Name] = true
		if j.Template != "" {
			names[j.Template] = true
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.jobs = names
	for key := range w.said {
		if _, name, _ := strings.Cut(key, "/"); !names[name] {
			delete(w.said, key)
		}
	}
}

// set publishes job's expiry of kind (zero: deletes the series) unless the
// job is no longer scheduled.
func (w *credentialWatch) set(job, kind string, end time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.jobs[job] {
		w.m.SetCredentialExpiry(job, kind, end)
	}
}

// once reports whether outcome what about credential key is to be logged
// now: when it differs from what was last logged, or, for a repeating
// outcome (an expiry warning), when expiryRepeat has passed since.
func (w *credentialWatch) once(key, what string, repeat bool) bool {
	now := w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	last, ok := w.said[key]
	if ok && last.what == what && (!repeat || now.Sub(last.at) < expiryRepeat) {
		return false
	}
	w.said[key] = said{what: what, at: now}
	return true
}

// certificates reads the NotAfter of every certificate job's configured
// file (no network) into the gauge and warns in the log when it is within
// directory.ExpiryWarning or past. A file that cannot be read is logged,
// not fatal: the job's runs then fail with the same error.
func (w *credentialWatch) certificates(ctx context.Context, jobs []config.Job) {
	for _, j := range jobs {
		if j.Auth.Method != "certificate" {
			w.set(j.Name, metrics.CredentialCertificate, time.Time{})
			continue
		}
		key := metrics.CredentialCertificate + "/" + j.Name
		end, err := directory.CertificateNotAfter(ctx, j.Auth)
		if err != nil {
			if w.once(key, "unreadable", false) {
				w.log.Warn("could not read the certificate's expiry", "job", j.Name, "err", err)
			}
			w.set(j.Name, metrics.CredentialCertificate, time.Time{})
			continue
		}
		w.set(j.Name, metrics.CredentialCertificate, end)
		w.logExpiry(key, j.Name, "certificate", end)
	}
}

// secrets asks Graph, for every client-secret job, when the app
// registration's secrets end (GET /applications(appId=…)), through the
// runner when it can (engineRunner). It runs beside the scheduler: a slow
// or refused answer must not hold the start-up or a reload. Without
// Application.Read.All the expiry stays unknown and the log says which
// permission would let the worker know.
//
// The jobs expanded from one template share its app and secret, and the
// app registration lives in one tenant only (a customer tenant answers
// 404): they are asked in turn until one answers, the answer is published
// for all of them, and a group where none answers is logged once, not once
// per tenant.
func (w *credentialWatch) secrets(ctx context.Context, r secretExpiryReader, jobs []config.Job) {
	for _, group := range secretGroups(jobs) {
		if group[0].Auth.Method != "secret" {
			for _, j := range group {
				w.set(j.Name, metrics.CredentialSecret, time.Time{})
			}
			continue
		}
		end, known, err := readSecretExpiry(ctx, r, group)
		if ctx.Err() != nil {
			return
		}
		for _, j := range group {
			w.set(j.Name, metrics.CredentialSecret, end)
		}
		name, attrs := group[0].Name, []any{}
		if len(group) > 1 {
			name = group[0].Template
			attrs = []any{"tenants", len(group)}
		}
		key := metrics.CredentialSecret + "/" + name
		var ae *directory.AuthError
		switch {
		case known && end.IsZero():
			if w.once(key, "no end date", false) {
				w.log.Info("the app registration lists no client secret with an end date", append([]any{"job", name}, attrs...)...)
			}
		case known:
			w.logExpiry(key, name, "client secret", end)
		case errors.As(err, &ae) && ae.Permission == directory.PermReadApplication:
			if w.once(key, "no permission", false) {
				where := []any{"consent_url", ae.ConsentURL}
				if group[0].Template != "" {
					// The tenant that refused may be a customer's: the
					// registration is read where the app is registered.
					where = []any{"grant_in", "the tenant where the app is registered"}
				}
				w.log.Info("the client secret's expiry is unknown: the app may not read its own registration", append(append([]any{"job", name,
					"permission", directory.PermReadApplication}, where...), attrs...)...)
			}
		default:
			if w.once(key, "unreadable", false) {
				w.log.Warn("could not read the client secret's expiry", append([]any{"job", name, "err", err}, attrs...)...)
			}
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
// in turn until one answers (known). Otherwise err is the refusal an
// operator can act on, whichever tenant gave it: the missing permission
// first, then another answer of a tenant the app signed in to (a 404),
// and a sign-in failure last — a customer tenant that has not consented
// yet says nothing about the secret (worker tenants shows it).
func readSecretExpiry(ctx context.Context, r secretExpiryReader, group []config.Job) (end time.Time, known bool, err error) {
	best := -1
	for _, j := range group {
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		e, rerr := r.SecretExpiry(rctx, j)
		cancel()
		if rerr == nil {
			return e, true, nil
		}
		if ctx.Err() != nil {
			return time.Time{}, false, ctx.Err()
		}
		if rank := refusalRank(rerr); rank > best {
			best, err = rank, rerr
		}
	}
	return time.Time{}, false, err
}

// refusalRank orders the refusals of readSecretExpiry by how much they say
// about the secret: a sign-in failure 0, another error 1, the missing
// Application.Read.All 2.
func refusalRank(err error) int {
	var ae *directory.AuthError
	switch {
	case errors.As(err, &ae) && ae.Permission == directory.PermReadApplication:
		return 2
	case errors.As(err, &ae) && ae.Code != 0:
		return 0
	}
	return 1
}

// logExpiry warns about credential key when it ends within
// directory.ExpiryWarning, and logs an error once it has ended: at the
// first read that finds it so, and again every expiryRepeat while it stays
// so. A renewed credential (another end date) is a new one, warned about
// at once if it too is close.
func (w *credentialWatch) logExpiry(key, job, what string, end time.Time) {
	left := end.Sub(w.now())
	switch {
	case left <= 0:
		if w.once(key, "expired "+end.UTC().Format(time.RFC3339), true) {
			w.log.Error("the "+what+" has expired: sign-in will fail", "job", job, "expired_at", end.UTC().Format(time.RFC3339))
		}
	case left < directory.ExpiryWarning:
		if w.once(key, "expires "+end.UTC().Format(time.RFC3339), true) {
			w.log.Warn("the "+what+" expires soon: renew it and upload it to the app registration", "job", job,
				"expires_at", end.UTC().Format(time.RFC3339), "days_left", int(left.Hours()/24))
		}
	default:
		w.once(key, "valid", false)
	}
}

// loop keeps the gauge current while the daemon runs: it reads the
// secrets of jobList at once, then every tick the certificates and the
// secrets again, and the secrets of each new list of jobs received on
// changed (a reload, a tenants change: certificates are read there, since
// reading a file holds nothing up). r nil: secrets are not read (a runner
// that cannot). It returns when ctx ends, abandoning a read in progress.
func (w *credentialWatch) loop(ctx context.Context, r secretExpiryReader, jobList []config.Job, tick <-chan time.Time, changed <-chan []config.Job) {
	secrets := func() {
		if r != nil {
			w.secrets(ctx, r, jobList)
		}
	}
	secrets()
	for {
		select {
		case <-ctx.Done():
			return
		case jobList = <-changed:
			secrets()
		case <-tick:
			w.certificates(ctx, jobList)
			secrets()
		}
	}
}
