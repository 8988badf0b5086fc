package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// This file holds what tenants as data (internal/tenants) reads and
// writes: the rows of a template job's tenants relation, and each job's
// last sign-in and consent (table tenant_consent). Deciding what they mean
// is internal/tenants' job.

// TenantRow is one row of a tenants relation (jobs[].tenants_from).
type TenantRow struct {
	TenantID string // tenant id GUID or verified domain ("" when NULL)
	Name     string // the tenant's short name: the job is "<template>@<name>"
	Enabled  bool   // NULL reads as false: a row must say it wants runs
	Scope    string // the value of the source's tenant_scope column for this tenant
	// AllowedDomains, from the optional allowed_domains text[] column:
	// the UPN domains of this tenant's users (nil: the template's).
	AllowedDomains []string
	// ScopeNull is true when the scope column is NULL (the row is refused:
	// an unscoped tenant would read every tenant's users).
	ScopeNull bool
}

// ErrTenantsRelation wraps a tenants relation that cannot be read as one:
// missing, not readable by the worker's role, or lacking a column. Its text
// says which and how to fix it.
var ErrTenantsRelation = errors.New("tenants relation unusable")

// ReadTenants reads every row of relation ("schema.name" or "name",
// already validated) ordered by name. The columns are cast to what the
// worker needs, so tenant_id may be uuid or text and name any string type.
func (s *Store) ReadTenants(ctx context.Context, relation string) ([]TenantRow, error) {
	ident, err := relationIdent(relation)
	if err != nil {
		return nil, err
	}
	// allowed_domains is optional: each customer has its own domains,
	// which a template's one list cannot name.
	var hasDomains bool
	err = s.pool.QueryRow(ctx, `
SELECT EXISTS (SELECT 1 FROM pg_attribute
                WHERE attrelid = to_regclass($1) AND attname = 'allowed_domains' AND attnum > 0 AND NOT attisdropped)`,
		ident.Sanitize()).Scan(&hasDomains)
	if err != nil {
		return nil, tenantsError(relation, err)
	}
	domains := "NULL::text[]"
	if hasDomains {
		domains = "allowed_domains::text[]"
	}
	rows, err := s.pool.Query(ctx, `
SELECT coalesce(tenant_id::text, ''), coalesce(name::text, ''), coalesce(enabled, false),
       coalesce(scope::text, ''), scope IS NULL, `+domains+`
  FROM `+ident.Sanitize()+`
 ORDER BY 2, 1`)
	if err != nil {
		return nil, tenantsError(relation, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (TenantRow, error) {
		var t TenantRow
		err := row.Scan(&t.TenantID, &t.Name, &t.Enabled, &t.Scope, &t.ScopeNull, &t.AllowedDomains)
		return t, err
	})
	if err != nil {
		return nil, tenantsError(relation, err)
	}
	return out, nil
}

// tenantsError turns PostgreSQL's refusal into the fix.
func tenantsError(relation string, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		const want = "(tenant_id text or uuid, name text, enabled boolean, scope text; optional allowed_domains text[])"
		switch pe.Code {
		case "42P01": // undefined_table
			return fmt.Errorf("%w: %s does not exist (or the worker's role cannot see it); create it %s, e.g. CREATE TABLE %s (tenant_id uuid PRIMARY KEY, name text NOT NULL UNIQUE, enabled boolean NOT NULL DEFAULT true, scope text NOT NULL)",
				ErrTenantsRelation, relation, want, relation)
		case "42703": // undefined_column
			return fmt.Errorf("%w: %s: %s; it must have the columns %s (alias them in a view if yours are named otherwise)",
				ErrTenantsRelation, relation, pe.Message, want)
		case "42501": // insufficient_privilege
			return fmt.Errorf("%w: %s: the worker's role may not read it (GRANT SELECT ON %s TO <role>)", ErrTenantsRelation, relation, relation)
		case "42846", "42804": // cannot_coerce, datatype_mismatch
			return fmt.Errorf("%w: %s: %s; want %s", ErrTenantsRelation, relation, pe.Message, want)
		}
	}
	return fmt.Errorf("read tenants from %s: %w", relation, err)
}

// Who made a sign-in recorded in tenant_consent.
const (
	ConsentByRun   = "run"
	ConsentByCheck = "check"
)

// Consent is a job's last sign-in and what it found (tenant_consent). It
// holds no token and no secret: Advice is the worker's translation.
type Consent struct {
	Job        string
	TenantID   string
	CheckedAt  time.Time
	CheckedBy  string // ConsentByRun or ConsentByCheck
	SignedIn   bool
	AADSTS     int      // the token endpoint's code when sign-in was refused; 0 otherwise
	Granted    []string // application roles in the token
	Missing    []string // required roles the token lacks
	ConsentURL string   // the tenant's admin-consent page, when consent is (or may be) the fix
	Advice     string   // what to do, when something is wrong
}

// SaveConsent records c as the job's last sign-in, replacing the one before.
func (s *Store) SaveConsent(ctx context.Context, c Consent) error {
	var code *int
	if c.AADSTS != 0 {
		code = &c.AADSTS
	}
	_, err := s.pool.Exec(ctx, `
INSERT INTO entraprov.tenant_consent AS t
       (job, tenant_id, checked_at, checked_by, signed_in, aadsts, granted, missing, consent_url, advice)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (job) DO UPDATE
   SET tenant_id = excluded.tenant_id, checked_at = excluded.checked_at, checked_by = excluded.checked_by,
       signed_in = excluded.signed_in, aadsts = excluded.aadsts, granted = excluded.granted,
       missing = excluded.missing, consent_url = excluded.consent_url, advice = excluded.advice`,
		c.Job, c.TenantID, c.CheckedAt, c.CheckedBy, c.SignedIn, code, nonNil(c.Granted), nonNil(c.Missing), c.ConsentURL, c.Advice)
	if err != nil {
		return fmt.Errorf("record the sign-in of job %s: %w", c.Job, err)
	}
	return nil
}

// ListConsent returns every job's last recorded sign-in, by job name.
func (s *Store) ListConsent(ctx context.Context) (map[string]Consent, error) {
	rows, err := s.pool.Query(ctx, `
SELECT job, tenant_id, checked_at, checked_by, signed_in, coalesce(aadsts, 0), granted, missing, consent_url, advice
  FROM entraprov.tenant_consent`)
	if err != nil {
		return nil, fmt.Errorf("read tenant consent: %w", err)
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Consent, error) {
		var c Consent
		err := row.Scan(&c.Job, &c.TenantID, &c.CheckedAt, &c.CheckedBy, &c.SignedIn, &c.AADSTS, &c.Granted, &c.Missing, &c.ConsentURL, &c.Advice)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("read tenant consent: %w", err)
	}
	out := make(map[string]Consent, len(list))
	for _, c := range list {
		out[c.Job] = c
	}
	return out, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// LastApplyRuns returns the latest apply run of each of jobs that has one
// (skipped occurrences left out): `worker tenants` shows whether a
// tenant's runs work, beside whether it may sign in. One query, an index
// lookup per job.
func (s *Store) LastApplyRuns(ctx context.Context, jobs []string) (map[string]Run, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+runColumns+` FROM (
SELECT r.* FROM unnest($1::text[]) AS j(name)
 CROSS JOIN LATERAL (SELECT * FROM entraprov.sync_runs s
                      WHERE s.job = j.name AND s.mode = 'apply' AND s.status <> 'skipped'
                      ORDER BY s.started_at DESC, s.id DESC LIMIT 1) r) last`, nonNil(jobs))
	if err != nil {
		return nil, fmt.Errorf("last runs of %d jobs: %w", len(jobs), err)
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Run, error) { return scanRun(row) })
	if err != nil {
		return nil, fmt.Errorf("last runs of %d jobs: %w", len(jobs), err)
	}
	out := make(map[string]Run, len(list))
	for _, r := range list {
		out[r.Job] = r
	}
	return out, nil
}
