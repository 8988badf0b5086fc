// Package config loads and validates the worker's YAML configuration.
//
// It owns the typed configuration, its defaults (in one place: Default and
// DefaultJob, applied by Load to the keys absent from the file) and its
// validation, which reports every problem at once with its key path and a
// fix (*ValidationError). It never holds a secret literal: secrets are
// referenced by file, environment variable or systemd credential name and
// read only when a credential is built (see SecretRef.Read). It does no
// network I/O: validation only stats the files the config names (and parses
// ca_file), so `worker config validate` is safe to run anywhere.
//
//	cfg, err := config.Load("/etc/entraprov/config.yaml")
//	var ve *config.ValidationError
//	if errors.As(err, &ve) {
//		for _, p := range ve.Problems {
//			fmt.Println(p) // jobs[1].schedule: "0 2 * *" has 4 fields; want 5 (...) (line 19)
//		}
//	}
package config

import (
	"fmt"
	"time"

	"github.com/entraprov/entraprov/internal/profile"
)

// Config is the whole configuration file.
type Config struct {
	// Database holds the PostgreSQL connection. The URL may be overridden by
	// the environment variable ENTRAPROV_DATABASE_URL (then DATABASE_URL).
	Database Database `yaml:"database"`
	// Metrics is where /metrics and /healthz are served ("" disables).
	Metrics Metrics `yaml:"metrics"`
	// Log selects the log format and level.
	Log Log `yaml:"log"`
	// Quarantine backs off the schedule of a job whose runs keep failing.
	Quarantine Quarantine `yaml:"quarantine"`
	// History says how long the daemon keeps the run history.
	History History `yaml:"history"`
	// MaxConcurrentJobs caps the runs `worker run` has in flight at once;
	// further due occurrences queue, oldest scheduled time first
	// (internal/jobs). See DefaultMaxConcurrentJobs for its default.
	MaxConcurrentJobs int `yaml:"max_concurrent_jobs"`
	// Tenants says how often the daemon reads the tenants relations of
	// template jobs (jobs[].tenants_from) again.
	Tenants Tenants `yaml:"tenants"`
	// Jobs are the provisioning jobs, one per tenant/source pair, or
	// templates expanded over a tenants relation (tenants_from).
	Jobs []Job `yaml:"jobs"`
}

// Tenants is how the daemon follows the tenants relations of template jobs.
type Tenants struct {
	// Refresh: `worker run` reads every tenants relation again this often
	// (and on SIGHUP), adding the jobs of new or enabled rows and removing
	// those of deleted or disabled ones, without a restart.
	Refresh Duration `yaml:"refresh"`
}

// History is the retention of sync_runs and sync_operations.
type History struct {
	// Retention: `worker run` deletes runs that started longer ago, daily
	// (as `worker history prune --older-than` does); 0 keeps everything.
	Retention Duration `yaml:"retention"`
}

// Quarantine says when a job whose runs keep failing stops running on every
// occurrence of its schedule (see internal/jobs, quarantine.go).
type Quarantine struct {
	// AfterFailures consecutive failed runs put the job in quarantine;
	// 0 turns quarantine off.
	AfterFailures int `yaml:"after_failures"`
	// FailurePercent: a run that finished with more than this share of its
	// sent operations failed counts as failed too (1..100).
	FailurePercent int `yaml:"failure_percent"`
	// MaxBackoff caps the doubling wait between runs of a quarantined job.
	MaxBackoff Duration `yaml:"max_backoff"`
}

// Database is the PostgreSQL connection.
type Database struct {
	URL string `yaml:"url"`
	// Password, when set, is added to URL at connect time (see ConnString),
	// so the file never holds it. A password inside url in the file is
	// refused; one from the environment is accepted.
	Password SecretRef `yaml:"password"`
	// URLFrom says where URL came from: "file", ENTRAPROV_DATABASE_URL,
	// DATABASE_URL, "--database-url" or "" (unset: libpq defaults apply).
	URLFrom string `yaml:"-"`
	// MaxConns bounds the pgx pool.
	MaxConns int32 `yaml:"max_conns"`
}

// Metrics is the Prometheus /metrics and /healthz listener.
type Metrics struct {
	Listen string `yaml:"listen"` // e.g. 127.0.0.1:9464; empty: off
}

// Log controls log/slog output.
type Log struct {
	Format string `yaml:"format"` // auto | json | text
	Level  string `yaml:"level"`  // debug | info | warn | error
}

// Job is one provisioning job: a source relation reconciled into one tenant.
//
// A job with TenantsFrom is a template (one app, many customer tenants):
// internal/tenants expands it into one job per row of that relation, named
// "<template>@<tenant name>", each with the row's tenant id and reading only
// the rows of Source whose tenant_scope column equals the row's scope
// (ScopedSource). The template itself never runs.
type Job struct {
	Name     string `yaml:"name"`
	TenantID string `yaml:"tenant_id,omitempty"` // absent from a template (tenants_from)
	// TenantsFrom, when set, makes the job a template expanded over the
	// rows of this relation (tenant_id, name, enabled, scope).
	TenantsFrom string `yaml:"tenants_from,omitempty"`
	// Template is, on a job expanded from a template, the template's name;
	// "" on a job written in the file. Never read from the file.
	Template string `yaml:"-"`
	// Cloud is public | usgov | china; it selects the authority host and the
	// Graph base URL.
	Cloud string `yaml:"cloud"`
	// AuthorityHost and GraphURL override the cloud's endpoints. GraphURL
	// ends in /v1.0. They may name only the cloud's own hosts (see Clouds)
	// or a loopback address (the emulator): the client secret, the signed
	// certificate assertion and the Graph tokens go wherever they point.
	AuthorityHost string `yaml:"authority_host"`
	GraphURL      string `yaml:"graph_url"`
	// UnsafeCustomEndpoints lets AuthorityHost and GraphURL name any https
	// host (a proxy the operator trusts with the job's credentials); every
	// start-up, check and validate then prints a warning.
	UnsafeCustomEndpoints bool `yaml:"unsafe_custom_endpoints"`
	// CAFile adds a PEM CA bundle trusted for the endpoints (the emulator).
	CAFile string `yaml:"ca_file"`

	Auth Auth `yaml:"auth"`

	// Schedule is a cron spec: 5 fields, optional seconds field, CRON_TZ= or
	// TZ= prefix, or a descriptor (@daily, @every 6h).
	Schedule string   `yaml:"schedule"`
	Jitter   Duration `yaml:"jitter"`
	// CatchUp runs once at start-up when a scheduled time was missed.
	CatchUp bool `yaml:"catch_up"`

	// Source is the relation (table or view) holding desired users, e.g.
	// "entraprov.desired_users" or "hr.entra_users".
	Source string `yaml:"source"`
	// AllowedDomains are the UPN domains this job may write.
	AllowedDomains []string `yaml:"allowed_domains"`
	// AllowedGroups, when set, are the group object ids the job may add
	// users to or remove them from; a row naming another group fails for
	// that user. Unset (nil) honours any group id of the source, as before
	// the key existed; `worker check` warns about it.
	AllowedGroups []string `yaml:"allowed_groups,omitempty"`
	// SchemaExtensions are directory schema extensions registered on the
	// job's application (auth.client_id), written as
	// extension_{appId without dashes}_{name} from the source column named
	// like the extension in snake_case (costCode: cost_code).
	SchemaExtensions []SchemaExtension `yaml:"schema_extensions,omitempty"`

	Leaver Leaver `yaml:"leaver"`
	// Budget bounds the destructive changes of one run, per kind.
	Budget ChangeBudget `yaml:"change_budget"`
	// Threshold is the older name of Budget.Disables and Budget.Deletes
	// (both get its bound). Load copies it into Budget and leaves it nil:
	// the engine and the effective config know Budget only.
	Threshold *Bound   `yaml:"deletion_threshold,omitempty"`
	Matching  Matching `yaml:"matching"`
	Password  Password `yaml:"password"`

	// BatchSize is the number of steps per $batch request (1..20).
	BatchSize int `yaml:"batch_size"`
	// MaxConcurrency bounds the $batch requests in flight.
	MaxConcurrency int `yaml:"max_concurrency"`
	// MaxRunDuration is the overall deadline of one run: past it the run
	// stops as if cancelled and ends interrupted, so a hostile or broken
	// endpoint (answers trickling in, throttling without end) cannot hold
	// the job's lock forever.
	MaxRunDuration Duration `yaml:"max_run_duration"`

	// Webhook, when its URL is set, receives a JSON POST when a run of the
	// job is blocked or fails, when the job is quarantined, and when it
	// recovers (internal/webhook).
	Webhook Webhook `yaml:"webhook"`

	// UserBackoff: a user whose write fails the same way run after run is
	// tried less and less often (internal/sync, backoff.go).
	UserBackoff UserBackoff `yaml:"user_backoff"`
}

// UserBackoff says when a user whose write keeps failing the same way (the
// same 4xx for the same desired attributes) stops being tried at every run.
// A change of the user's source row (or of the directory) is tried at the
// next run whatever the back-off says; `worker sync --retry-stuck` tries
// every user once.
type UserBackoff struct {
	// AfterFailures identical failures in a row start the back-off; 0
	// turns it off.
	AfterFailures int `yaml:"after_failures"`
	// Base: the AfterFailures-th identical failure waits 2×Base before the
	// next attempt, each further one twice as long. 0 means one interval
	// of the job's schedule (1h without one): the user sits out 1 run,
	// then 3, 7, ….
	Base Duration `yaml:"base"`
	// Max caps the wait.
	Max Duration `yaml:"max"`
}

// Webhook is where a job's state changes are POSTed. The payload never
// holds a secret; the URL often does (most alerting systems put a token in
// its path or query), so it may be given by reference, and a literal one
// must not carry user:password@ or a query string.
type Webhook struct {
	URL     URLRef   `yaml:"url"`     // https (http only to a loopback address); unset: off
	Timeout Duration `yaml:"timeout"` // per attempt
	Retries int      `yaml:"retries"` // further attempts after a 5xx, 429 or network error
}

// Auth says how the job signs in as the application. Secrets are references.
type Auth struct {
	// Method is certificate | secret | managed_identity | workload_identity.
	Method   string `yaml:"method"`
	ClientID string `yaml:"client_id"`

	// Secret locates the client secret (method secret).
	Secret SecretRef `yaml:"client_secret"`

	// Certificate: PEM file holding certificate(s) and key, or separate
	// files, or a PFX; key/PFX passwords by reference.
	CertificateFile string    `yaml:"certificate_file"`
	KeyFile         string    `yaml:"key_file"`
	KeyCredential   string    `yaml:"key_credential"` // systemd credential name holding the key/PEM
	PFXFile         string    `yaml:"pfx_file"`
	PFXPassword     SecretRef `yaml:"pfx_password"`
	SendChain       bool      `yaml:"send_certificate_chain"`

	// ManagedIdentityClientID selects a user-assigned managed identity.
	ManagedIdentityClientID string `yaml:"managed_identity_client_id"`

	// FederatedTokenFile is the projected service-account token for
	// workload_identity; empty means $AZURE_FEDERATED_TOKEN_FILE.
	FederatedTokenFile string `yaml:"federated_token_file"`
}

// SecretRef points at a secret without holding it. Exactly one field is set.
type SecretRef struct {
	File       string `yaml:"file"`       // path to a file holding the secret
	Env        string `yaml:"env"`        // name of an environment variable
	Credential string `yaml:"credential"` // systemd LoadCredential= name, read from $CREDENTIALS_DIRECTORY
}

// Leaver says what happens to a managed user that left the source.
type Leaver struct {
	Action      string   `yaml:"action"`       // disable | delete | ignore
	DeleteAfter Duration `yaml:"delete_after"` // with delete: grace period while disabled
}

// ChangeBudget bounds, per kind, how many managed users one run may change
// destructively. A run over any bound is blocked with its plan stored
// (internal/sync, budget.go); the apply pass also stops sending a kind once
// its bound is reached, whatever a later read of the source says. Counts
// are users (a user removed from three groups is one group removal).
type ChangeBudget struct {
	// PercentFloor: a percent bound applies only when the count is above
	// this many users, so a small job's first leaver is not a mass event.
	PercentFloor int `yaml:"percent_floor"`
	// Disables: users whose account is disabled.
	Disables Bound `yaml:"disables"`
	// Deletes: users soft-deleted (leaver.action delete).
	Deletes Bound `yaml:"deletes"`
	// GroupRemovals: users removed from at least one group.
	GroupRemovals Bound `yaml:"group_removals"`
	// AttributeClears: users with a present attribute set to null.
	AttributeClears Bound `yaml:"attribute_clears"`
	// UPNRenames: users whose userPrincipalName changes.
	UPNRenames Bound `yaml:"upn_renames"`
	// ManagerRemovals: users whose manager is removed (not replaced).
	ManagerRemovals Bound `yaml:"manager_removals"`
}

// Bound is one kind's share of the change budget: a run is over it when
// the count exceeds MaxCount, or when it exceeds the budget's PercentFloor
// and MaxPercent of the job's managed users. 0 turns that half off; both 0
// is refused: turning the bound off is said with Off.
type Bound struct {
	MaxCount   int     `yaml:"max_count"`   // users; 0: no count bound
	MaxPercent float64 `yaml:"max_percent"` // of managed users; 0: no percent bound
	Off        bool    `yaml:"off"`         // no bound at all for this kind
}

// Matching is the rule for adopting a pre-existing unlinked directory user.
type Matching struct {
	AdoptBy string `yaml:"adopt_by"` // none | employee_id | user_principal_name
}

// Password controls initial passwords of created users.
type Password struct {
	ForceChangeNextSignIn bool `yaml:"force_change_next_sign_in"`
	Length                int  `yaml:"length"`
}

// Duration is a time.Duration that also accepts a day suffix ("30d").
type Duration struct{ time.Duration }

// SchemaExtension is one directory schema extension a job writes.
type SchemaExtension struct {
	// Name is the extension's short name, e.g. costCode.
	Name string `yaml:"name"`
	// Type is the extensionProperty dataType: String, Integer, Boolean or
	// DateTime.
	Type string `yaml:"type"`
}

// Profile is the job's attribute set: the attribute table plus its schema
// extensions, all managed until the source's columns restrict it.
func (j Job) Profile() (*profile.Schema, error) {
	exts := make([]profile.Attr, 0, len(j.SchemaExtensions))
	for _, e := range j.SchemaExtensions {
		a, err := profile.Extension(j.Auth.ClientID, e.Name, e.Type)
		if err != nil {
			return nil, fmt.Errorf("job %s: %w", j.Name, err)
		}
		exts = append(exts, a)
	}
	return profile.NewSchema(exts), nil
}
