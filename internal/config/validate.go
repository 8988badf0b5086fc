package config

import (
	"crypto/x509"
	"fmt"
	"github.com/entraprov/entraprov/internal/profile"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // CRON_TZ= must validate the same on hosts without /usr/share/zoneinfo

	"github.com/robfig/cron/v3"
)

// Problem is one thing wrong with the configuration.
type Problem struct {
	Key  string // key path, e.g. jobs[1].schedule ("" for the whole file)
	Msg  string // what is wrong and how to fix it; never a secret value
	Line int    // line in the file, 0 if unknown
	// covers is the key an unknown key was probably meant to be (its
	// "did you mean"): problems of that key, such as "required", would
	// report the same typo twice.
	covers string
}

func (p Problem) String() string {
	s := p.Msg
	if p.Key != "" {
		s = p.Key + ": " + s
	}
	if p.Line > 0 {
		s += fmt.Sprintf(" (line %d)", p.Line)
	}
	return s
}

// ValidationError holds every problem found, so an operator fixes the file
// in one pass.
type ValidationError struct {
	File     string
	Problems []Problem
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("config")
	if e.File != "" {
		b.WriteString(" " + e.File)
	}
	if len(e.Problems) == 1 {
		b.WriteString(": 1 problem:")
	} else {
		fmt.Fprintf(&b, ": %d problems:", len(e.Problems))
	}
	for _, p := range e.Problems {
		b.WriteString("\n  " + p.String())
	}
	return b.String()
}

// Validate checks a Config built in code (Load already validates). It
// returns a *ValidationError or nil.
func (c *Config) Validate() error {
	if ps := c.problems(); len(ps) > 0 {
		return &ValidationError{Problems: ps}
	}
	return nil
}

// Cloud is a national cloud: its default endpoints, and the hosts that
// authority_host and graph_url may name without unsafe_custom_endpoints.
type Cloud struct {
	AuthorityHost, GraphURL    string
	AuthorityHosts, GraphHosts []string
}

// Clouds are the national clouds, with the endpoints Microsoft documents
// (learn.microsoft.com/graph/deployments): usgov has a Graph for GCC High
// and one for DoD.
var Clouds = map[string]Cloud{
	"public": {"https://login.microsoftonline.com/", "https://graph.microsoft.com/v1.0",
		[]string{"login.microsoftonline.com"}, []string{"graph.microsoft.com"}},
	"usgov": {"https://login.microsoftonline.us/", "https://graph.microsoft.us/v1.0",
		[]string{"login.microsoftonline.us"}, []string{"graph.microsoft.us", "dod-graph.microsoft.us"}},
	"china": {"https://login.chinacloudapi.cn/", "https://microsoftgraph.chinacloudapi.cn/v1.0",
		[]string{"login.chinacloudapi.cn"}, []string{"microsoftgraph.chinacloudapi.cn"}},
}

// foreignHost returns the host of rawURL when it is neither one of hosts
// nor a loopback address, and "" otherwise (or when rawURL does not parse:
// the URL check reports that).
func foreignHost(rawURL string, hosts []string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return ""
	}
	h := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if isLoopbackHost(h) {
		return ""
	}
	for _, ok := range hosts {
		if h == ok {
			return ""
		}
	}
	return h
}

// foreignEndpoints returns the hosts of the job's endpoint overrides that
// are outside its cloud and loopback ("" for each that is not): allowed
// only with unsafe_custom_endpoints.
func (j Job) foreignEndpoints() (authority, graph string) {
	c, ok := Clouds[j.Cloud]
	if !ok {
		return "", ""
	}
	if j.AuthorityHost != "" {
		authority = foreignHost(j.AuthorityHost, c.AuthorityHosts)
	}
	if j.GraphURL != "" {
		graph = foreignHost(j.GraphURL, c.GraphHosts)
	}
	return authority, graph
}

// Endpoints returns the authority host and Graph base URL (ending in
// /v1.0) of the job: the overrides if set, else those of its cloud.
func (j Job) Endpoints() (authorityHost, graphURL string) {
	c := Clouds[j.Cloud]
	authorityHost, graphURL = c.AuthorityHost, c.GraphURL
	if j.AuthorityHost != "" {
		authorityHost = j.AuthorityHost
	}
	if j.GraphURL != "" {
		graphURL = strings.TrimRight(j.GraphURL, "/")
	}
	return authorityHost, graphURL
}

// SourceParts splits Source into identifiers for pgx.Identifier
// ("hr.users" -> ["hr", "users"]). Source has been validated by Load.
func (j Job) SourceParts() []string {
	rel, _, _ := SplitSource(j.Source)
	return strings.Split(rel, ".")
}

var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseSchedule parses a job schedule: 5 fields or 6 with seconds, an
// optional CRON_TZ=/TZ= prefix, or a descriptor (@daily, @every 6h). The
// scheduler uses it too, so what validates is what runs.
func ParseSchedule(spec string) (cron.Schedule, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return nil, fmt.Errorf("empty schedule; want e.g. \"0 2 * * *\" (02:00 daily) or \"CRON_TZ=Europe/Paris 0 2 * * *\"")
	}
	body := spec
	if strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=") {
		prefix, rest, ok := strings.Cut(spec, " ")
		_, zone, _ := strings.Cut(prefix, "=")
		if !ok || strings.TrimSpace(rest) == "" {
			return nil, fmt.Errorf("%q has a time zone but no schedule; want e.g. \"CRON_TZ=%s 0 2 * * *\"", spec, orStr(zone, "Europe/Paris"))
		}
		if zone == "" {
			return nil, fmt.Errorf("%q has an empty time zone; want an IANA name such as Europe/Paris or UTC", spec)
		}
		if _, err := time.LoadLocation(zone); err != nil {
			return nil, fmt.Errorf("%q: unknown time zone %q; want an IANA name such as Europe/Paris, America/New_York or UTC", spec, zone)
		}
		// robfig/cron slices up to the first space: normalise runs of spaces.
		body = strings.TrimSpace(rest)
		spec = prefix + " " + body
	}
	if !strings.HasPrefix(body, "@") {
		if n := len(strings.Fields(body)); n < 5 || n > 6 {
			return nil, fmt.Errorf("%q has %d fields; want 5 (minute hour day-of-month month day-of-week) or 6 with seconds", body, n)
		}
	}
	s, err := cronParser.Parse(spec)
	if err != nil {
		return nil, fmt.Errorf("%q is not a valid schedule: %v; want e.g. \"0 2 * * *\", \"*/30 * * * *\", \"@daily\" or \"@every 6h\"", body, err)
	}
	return s, nil
}

var (
	reGUID      = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	reLabel     = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	reJobName   = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	reIdent     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$]*$`)
	reEnvName   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	reCredName  = regexp.MustCompile(`^[A-Za-z0-9_.@-]+$`)
	exampleGUID = "00000000-0000-0000-0000-000000000000"
)

// IsDomain reports whether s is a DNS domain name (at least two labels),
// as allowed_domains wants.
func IsDomain(s string) bool { return isDomain(s) }

func isDomain(s string) bool {
	if len(s) > 253 || !strings.Contains(s, ".") {
		return false
	}
	for _, l := range strings.Split(strings.ToLower(s), ".") {
		if !reLabel.MatchString(l) {
			return false
		}
	}
	return true
}

// problems runs every check and returns all findings.
func (c *Config) problems() []Problem {
	v := &validator{}
	c.validateTop(v)
	names := map[string]int{}
	pairs := map[string]int{}
	for i := range c.Jobs {
		j := &c.Jobs[i]
		k := fmt.Sprintf("jobs[%d]", i)
		j.validate(v, k)
		if j.Name != "" {
			if first, dup := names[j.Name]; dup {
				v.add(k+".name", "%q is already used by jobs[%d]; job names must be unique", j.Name, first)
			} else {
				names[j.Name] = i
			}
		}
		if j.TenantID != "" && j.Source != "" && j.TenantsFrom == "" {
			pair := strings.ToLower(j.TenantID) + "\x00" + strings.ToLower(j.Source)
			if first, dup := pairs[pair]; dup {
				v.add(k+".source", "tenant %s and source %s are already used by jobs[%d]; two jobs would fight over the same users — merge them or give one its own source view", j.TenantID, j.Source, first)
			} else {
				pairs[pair] = i
			}
		}
	}
	return v.ps
}

type validator struct{ ps []Problem }

func (v *validator) add(key, format string, args ...any) {
	v.ps = append(v.ps, Problem{Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (c *Config) validateTop(v *validator) {
	if u := c.Database.URL; u != "" {
		// Never echo the URL: it may carry a password from the environment.
		if isURL(u) {
			if _, err := url.Parse(u); err != nil {
				v.add("database.url", "not a valid URL; want postgres://user@host:5432/dbname (from %s)", orStr(c.Database.URLFrom, "file"))
			}
		} else if strings.Contains(u, "://") {
			v.add("database.url", "unsupported scheme; want postgres://user@host:5432/dbname or a key=value string such as \"host=/run/postgresql dbname=entraprov\" (from %s)", orStr(c.Database.URLFrom, "file"))
		} else if !strings.Contains(u, "=") {
			v.add("database.url", "not a URL or key=value string; want postgres://user@host:5432/dbname or \"host=/run/postgresql dbname=entraprov\" (from %s)", orStr(c.Database.URLFrom, "file"))
		}
	}
	v.secretRef("database.password", c.Database.Password)
	if c.Database.MaxConns < 0 {
		v.add("database.max_conns", "%d is negative; want 0 (pgx default) or a pool size such as 8", c.Database.MaxConns)
	}
	if l := c.Metrics.Listen; l != "" {
		host, port, err := net.SplitHostPort(l)
		if err != nil {
			v.add("metrics.listen", "%q is not host:port; want e.g. 127.0.0.1:9464, :9464, or \"\" to turn metrics off", l)
		} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			v.add("metrics.listen", "port %q is not a number in 0..65535; want e.g. 127.0.0.1:9464", port)
		} else if host != "" && net.ParseIP(host) == nil && !isDomain(host) && host != "localhost" {
			v.add("metrics.listen", "host %q is neither an IP address nor a host name; want e.g. 127.0.0.1:9464", host)
		}
	}
	switch c.Log.Format {
	case "auto", "json", "text":
	default:
		v.add("log.format", "%q is not a log format; want auto (JSON unless stderr is a terminal), json or text", c.Log.Format)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		v.add("log.level", "%q is not a log level; want debug, info, warn or error", c.Log.Level)
	}
	if q := c.Quarantine; q.AfterFailures < 0 {
		v.add("quarantine.after_failures", "%d is negative; want the number of consecutive failed runs that quarantine a job (default 5), or 0 to turn quarantine off", q.AfterFailures)
	}
	if q := c.Quarantine; q.FailurePercent < 1 || q.FailurePercent > 100 {
		v.add("quarantine.failure_percent", "%d is not in 1..100; want the share of failed operations above which a run counts as failed (default 40)", q.FailurePercent)
	}
	if q := c.Quarantine; q.MaxBackoff.Duration < time.Minute {
		v.add("quarantine.max_backoff", "%s is shorter than 1m; want the longest wait between runs of a quarantined job, e.g. 24h (default)", q.MaxBackoff.Duration)
	}
	if r := c.History.Retention.Duration; r != 0 && r < MinRetention {
		v.add("history.retention", "%s is shorter than 1d; want how long run history is kept, e.g. 400d (default), or 0 to keep everything", r)
	}
	c.validateConcurrency(v)
	if len(c.Jobs) == 0 {
		v.add("jobs", "no jobs defined; add at least one job (see configs/entraprov.example.yaml)")
	}
	if r := c.Tenants.Refresh.Duration; r < time.Second {
		v.add("tenants.refresh", "%s is shorter than 1s; want how often `worker run` reads the tenants relations of template jobs again, e.g. 1m (default)", r)
	}
}

func (j *Job) validate(v *validator, k string) {
	j.validateExtensions(v, k)
	switch {
	case j.Name == "":
		v.add(k+".name", "required; a short id such as nightly or contoso-staff (lowercase letters, digits, - and _)")
	case NameProblem(j.Name) != "":
		v.add(k+".name", "%q is not a valid job name; want 1-63 lowercase letters, digits, - and _, starting with a letter or digit (e.g. contoso-staff)", j.Name)
	}

	if j.TenantsFrom != "" {
		j.validateTemplate(v, k)
	} else if msg := TenantIDProblem(j.TenantID); msg != "" {
		v.add(k+".tenant_id", "%s", msg)
	}

	if _, ok := Clouds[j.Cloud]; !ok {
		v.add(k+".cloud", "%q is not a cloud; want public, usgov or china", j.Cloud)
	}
	authOK := v.httpsURL(k+".authority_host", j.AuthorityHost, "https://login.microsoftonline.com/")
	graphOK := v.httpsURL(k+".graph_url", j.GraphURL, "https://graph.microsoft.com/v1.0")
	if graphOK {
		if u, _ := url.Parse(j.GraphURL); !strings.HasSuffix(strings.TrimRight(u.Path, "/"), "/v1.0") {
			v.add(k+".graph_url", "%q must end in /v1.0, e.g. https://graph.microsoft.com/v1.0", j.GraphURL)
		}
	}
	// Whoever can edit this (world-readable, secret-free) file must not be
	// able to receive the job's credential or a Graph token by pointing an
	// endpoint at their own host.
	if fa, fg := j.foreignEndpoints(); !j.UnsafeCustomEndpoints {
		c := Clouds[j.Cloud]
		if authOK && fa != "" {
			v.add(k+".authority_host", "host %s is neither cloud %s's token authority (%s) nor a loopback address: the client secret or signed assertion would be sent there; remove it, or for a proxy you trust set unsafe_custom_endpoints: true", fa, j.Cloud, strings.Join(c.AuthorityHosts, ", "))
		}
		if graphOK && fg != "" {
			v.add(k+".graph_url", "host %s is neither cloud %s's Graph (%s) nor a loopback address: Graph tokens would be sent there; remove it, or for a proxy you trust set unsafe_custom_endpoints: true", fg, j.Cloud, strings.Join(c.GraphHosts, ", "))
		}
	}
	if j.CAFile != "" {
		if pem, err := os.ReadFile(j.CAFile); err != nil {
			v.add(k+".ca_file", "cannot read %s: %v", j.CAFile, errNoPath(err))
		} else if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			v.add(k+".ca_file", "%s holds no PEM certificate; want a PEM CA bundle (-----BEGIN CERTIFICATE-----)", j.CAFile)
		}
	}

	j.Auth.validate(v, k+".auth")

	if _, err := ParseSchedule(j.Schedule); err != nil {
		v.add(k+".schedule", "%v", err)
	}
	if j.Jitter.Duration < 0 {
		v.add(k+".jitter", "%s is negative; want 0 or a delay such as 5m", j.Jitter)
	}

	if parts := strings.Split(j.Source, "."); j.Source == "" {
		v.add(k+".source", "required; a table or view such as entraprov.desired_users or hr.entra_users")
	} else if len(parts) > 2 || !allIdents(parts) {
		v.add(k+".source", "%q is not a relation name; want table or schema.table with unquoted identifiers (letters, digits, _; at most 63 bytes each), e.g. hr.entra_users", j.Source)
	}

	if len(j.AllowedDomains) == 0 && j.TenantsFrom == "" {
		v.add(k+".allowed_domains", "required; list the UPN domains this job may write, e.g. [contoso.com]; users outside them are refused")
	}
	seen := map[string]bool{}
	for i, d := range j.AllowedDomains {
		dk := fmt.Sprintf("%s.allowed_domains[%d]", k, i)
		switch {
		case strings.HasPrefix(d, "@"):
			v.add(dk, "%q: write the domain without @, e.g. %s", d, strings.TrimPrefix(d, "@"))
		case !isDomain(d):
			v.add(dk, "%q is not a domain name; want e.g. contoso.com", d)
		case seen[strings.ToLower(d)]:
			v.add(dk, "%q is listed twice", d)
		}
		seen[strings.ToLower(d)] = true
	}

	j.validateAllowedGroups(v, k)

	switch j.Leaver.Action {
	case "disable", "ignore":
		if j.Leaver.DeleteAfter.Duration != 0 {
			v.add(k+".leaver.delete_after", "only used with action: delete; remove it or set action: delete")
		}
	case "delete":
		if j.Leaver.DeleteAfter.Duration <= 0 {
			v.add(k+".leaver.delete_after", "required and > 0 with action: delete; leavers are disabled first and deleted after this grace period, e.g. 30d")
		}
	default:
		v.add(k+".leaver.action", "%q is not a leaver action; want disable, delete (with delete_after: 30d) or ignore", j.Leaver.Action)
	}

	v.budget(k, j)

	switch j.Matching.AdoptBy {
	case "none", "employee_id", "user_principal_name":
	default:
		v.add(k+".matching.adopt_by", "%q is not a matching rule; want none (never adopt), employee_id or user_principal_name", j.Matching.AdoptBy)
	}

	if l := j.Password.Length; l < 8 || l > 256 {
		v.add(k+".password.length", "%d is out of range; want 8..256 (Entra ID allows at most 256), e.g. 16", l)
	}
	if b := j.BatchSize; b < 1 || b > 20 {
		v.add(k+".batch_size", "%d is out of range; want 1..20 (Graph $batch takes at most 20 requests)", b)
	}
	j.Webhook.validate(v, k+".webhook")
	j.UserBackoff.validate(v, k+".user_backoff")
	if c := j.MaxConcurrency; c < 1 || c > 64 {
		v.add(k+".max_concurrency", "%d is out of range; want 1..64 $batch requests in flight, e.g. 4", c)
	}
	if d := j.MaxRunDuration.Duration; d < time.Minute {
		v.add(k+".max_run_duration", "%s is shorter than 1m; want the longest a run may take before it is stopped, e.g. 6h (default)", j.MaxRunDuration)
	}
}

// NameProblem says what is wrong with a job name, or a tenant's name in a
// tenants relation ("" if nothing): 1-63 lowercase letters, digits, - and
// _, starting with a letter or digit. Names appear in history, metrics
// labels and log lines.
func NameProblem(name string) string {
	if name == "" || !reJobName.MatchString(name) || len(name) > 63 {
		return "want 1-63 lowercase letters, digits, - and _, starting with a letter or digit"
	}
	return ""
}

// TenantIDProblem says what is wrong with a tenant id ("" if nothing),
// without echoing it: a secret pasted into the wrong field must not reach
// the terminal or the journal; the key (or the tenants row) locates it.
func TenantIDProblem(t string) string {
	switch {
	case t == "":
		return "required; the directory (tenant) id GUID or a verified domain such as contoso.onmicrosoft.com"
	case t == "common" || t == "organizations" || t == "consumers":
		return fmt.Sprintf("%q is not a tenant; app-only sign-in needs the tenant id GUID or a domain such as contoso.onmicrosoft.com", t)
	case !reGUID.MatchString(t) && !isDomain(t):
		return fmt.Sprintf("is neither a GUID (%s) nor a domain such as contoso.onmicrosoft.com", exampleGUID)
	}
	return ""
}

// validateTemplate checks what is particular to a template job: its
// tenants relation's name, and that it names no tenant of its own (each
// expanded job takes its row's).
func (j *Job) validateTemplate(v *validator, k string) {
	if parts := strings.Split(j.TenantsFrom, "."); len(parts) > 2 || !allIdents(parts) {
		v.add(k+".tenants_from", "%q is not a relation name; want table or schema.table with unquoted identifiers, e.g. isv.tenants (columns tenant_id, name, enabled, scope)", j.TenantsFrom)
	}
	if j.TenantID != "" {
		v.add(k+".tenant_id", "not used with tenants_from: each tenant's id comes from the tenant_id column of %s; remove tenant_id (or remove tenants_from for a job of one tenant)", j.TenantsFrom)
	}
}

// ScopeColumn is the column of a template's source relation that scopes it
// to one tenant: an expanded job reads only the rows whose tenant_scope
// equals its tenants row's scope (compared as text, passed as a query
// parameter, never spliced into SQL).
const ScopeColumn = "tenant_scope"

// ScopedSource is the Source of a job expanded from a template: relation
// read only where its tenant_scope column equals scope. The form,
// "isv.desired_users[tenant_scope=acme]", is what messages show; the store
// parses it back with SplitSource. No configured source can take this form
// (relation names are plain identifiers), so a file cannot unscope a job.
func ScopedSource(relation, scope string) string {
	return relation + "[" + ScopeColumn + "=" + scope + "]"
}

// SplitSource is the inverse of ScopedSource: a plain relation comes back
// with scoped false.
func SplitSource(source string) (relation, scope string, scoped bool) {
	i := strings.IndexByte(source, '[')
	if i < 0 {
		return source, "", false
	}
	rest, ok := strings.CutPrefix(source[i+1:], ScopeColumn+"=")
	if !ok || !strings.HasSuffix(rest, "]") {
		// Not a form ScopedSource makes: keep it whole, so the relation
		// check refuses it instead of reading an unscoped relation.
		return source, "", false
	}
	return source[:i], strings.TrimSuffix(rest, "]"), true
}

func allIdents(parts []string) bool {
	for _, p := range parts {
		if !reIdent.MatchString(p) || len(p) > 63 {
			return false
		}
	}
	return true
}

func (a *Auth) validate(v *validator, k string) {
	needClientID := true
	used := map[string]bool{}
	switch a.Method {
	case "secret":
		used["client_secret"] = true
		if a.Secret.IsZero() {
			v.add(k+".client_secret", "required with method: secret; use client_secret: {file: /etc/entraprov/secret} or {credential: graph-secret} (systemd LoadCredential=), or {env: NAME}")
		}
	case "certificate":
		used["certificate_file"], used["key_file"], used["key_credential"] = true, true, true
		used["pfx_file"], used["pfx_password"], used["send_certificate_chain"] = true, true, true
		switch {
		case a.PFXFile != "" && (a.CertificateFile != "" || a.KeyFile != "" || a.KeyCredential != ""):
			v.add(k+".pfx_file", "set either pfx_file or certificate_file (+ key_file / key_credential), not both")
		case a.PFXFile != "":
			v.fileExists(k+".pfx_file", a.PFXFile)
		case a.CertificateFile != "":
			v.fileExists(k+".certificate_file", a.CertificateFile)
			if a.KeyFile != "" && a.KeyCredential != "" {
				v.add(k+".key_file", "set either key_file or key_credential, not both")
			}
			if a.KeyFile != "" {
				v.fileExists(k+".key_file", a.KeyFile)
			}
			if a.KeyCredential != "" && !reCredName.MatchString(a.KeyCredential) {
				v.add(k+".key_credential", "is not a systemd credential name (letters, digits, - _ . @), e.g. app-key")
			}
		case a.KeyCredential != "":
			if !reCredName.MatchString(a.KeyCredential) {
				v.add(k+".key_credential", "is not a systemd credential name (letters, digits, - _ . @), e.g. app-key")
			}
		default:
			v.add(k+".certificate_file", "required with method: certificate; give certificate_file (PEM with certificate and key, or with key_file / key_credential) or pfx_file")
		}
		if a.PFXFile == "" && !a.PFXPassword.IsZero() {
			v.add(k+".pfx_password", "only used with pfx_file")
		}
		if !a.PFXPassword.IsZero() {
			v.secretRef(k+".pfx_password", a.PFXPassword)
		}
	case "managed_identity":
		needClientID = false
		used["managed_identity_client_id"] = true
		if id := a.ManagedIdentityClientID; id != "" && !reGUID.MatchString(id) {
			v.add(k+".managed_identity_client_id", "is not a GUID; want the user-assigned identity's client id, e.g. %s, or leave it out for the system-assigned identity", exampleGUID)
		}
		if a.ClientID != "" {
			v.add(k+".client_id", "not used with managed_identity; for a user-assigned identity set managed_identity_client_id")
		}
	case "workload_identity":
		used["federated_token_file"] = true
		if a.FederatedTokenFile != "" {
			v.fileExists(k+".federated_token_file", a.FederatedTokenFile)
		}
	case "":
		v.add(k+".method", "required; want certificate, secret, managed_identity or workload_identity")
		return
	default:
		v.add(k+".method", "%q is not an auth method; want certificate, secret, managed_identity or workload_identity", a.Method)
		return
	}
	if needClientID {
		switch {
		case a.ClientID == "":
			v.add(k+".client_id", "required with method: %s; the app registration's application (client) id, e.g. %s", a.Method, exampleGUID)
		case !reGUID.MatchString(a.ClientID):
			v.add(k+".client_id", "is not a GUID; want the application (client) id, e.g. %s (a client secret belongs in client_secret: {file: ...})", exampleGUID)
		}
	}
	if a.Method == "secret" {
		v.secretRef(k+".client_secret", a.Secret)
	}
	// A field of another method is a sign the operator meant something else.
	set := map[string]bool{
		"client_secret": !a.Secret.IsZero(), "certificate_file": a.CertificateFile != "", "key_file": a.KeyFile != "",
		"key_credential": a.KeyCredential != "", "pfx_file": a.PFXFile != "", "pfx_password": !a.PFXPassword.IsZero(),
		"send_certificate_chain": a.SendChain, "managed_identity_client_id": a.ManagedIdentityClientID != "",
		"federated_token_file": a.FederatedTokenFile != "",
	}
	for _, f := range []string{"client_secret", "certificate_file", "key_file", "key_credential", "pfx_file", "pfx_password", "send_certificate_chain", "managed_identity_client_id", "federated_token_file"} {
		if set[f] && !used[f] {
			v.add(k+"."+f, "not used with method: %s; remove it or change method", a.Method)
		}
	}
}

func (v *validator) secretRef(k string, r SecretRef) {
	if r.IsZero() {
		return
	}
	n := 0
	for _, s := range []string{r.File, r.Env, r.Credential} {
		if s != "" {
			n++
		}
	}
	if n > 1 {
		v.add(k, "set exactly one of file, env, credential")
		return
	}
	// The names are not echoed: a secret written where its name belongs
	// ({env: <the secret>}) must not reach the terminal or the journal.
	switch {
	case r.Env != "" && !reEnvName.MatchString(r.Env):
		v.add(k+".env", "is not an environment variable name; want e.g. GRAPH_CLIENT_SECRET (the name of the variable holding the secret, not the secret)")
	case r.Credential != "" && !reCredName.MatchString(r.Credential):
		v.add(k+".credential", "is not a systemd credential name (letters, digits, - _ . @), e.g. graph-secret (the LoadCredential= name, not the secret)")
	case r.File != "":
		v.fileExists(k+".file", r.File)
	}
}

// fileExists checks a file of the auth section or a secret reference; the
// path is not echoed (a secret pasted in its place must not be), the key
// and line locate it.
func (v *validator) fileExists(k, path string) {
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		v.add(k, "cannot use the file named here: %v", errNoPath(err))
	case fi.IsDir():
		v.add(k, "names a directory; want a file")
	}
}

// httpsURL checks an optional https URL; it reports whether s is set and valid.
func (v *validator) httpsURL(k, s, example string) bool {
	if s == "" {
		return false
	}
	u, err := url.Parse(s)
	if err == nil && u.User != nil {
		v.add(k, "must not carry user information; want e.g. %s", example)
		return false
	}
	if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		v.add(k, "%q is not an https URL; want e.g. %s", s, example)
		return false
	}
	return true
}

// errNoPath drops the path from an *os.PathError (the message already has it).
func errNoPath(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// WebhookURLProblem says what is wrong with a webhook URL ("" if nothing),
// without echoing it. A literal (written in the file) must not carry a
// credential; one read from a secret reference may.
func WebhookURLProblem(s string, literal bool) string {
	u, err := url.Parse(s)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		return "not an http(s) URL; want e.g. https://alerts.example.com/entraprov"
	case literal && u.User != nil:
		return "contains user:password@; a literal secret is not allowed in the file — put the URL in a file or systemd credential: url: {credential: webhook-url}"
	case literal && (u.RawQuery != "" || u.ForceQuery):
		return "has a query string, where alerting systems put their token; a literal secret is not allowed in the file — put the URL in a file or systemd credential: url: {credential: webhook-url}"
	case u.Scheme == "http" && !isLoopbackHost(u.Hostname()):
		return "http is only allowed to a loopback address (payloads name users' jobs and errors); use https"
	}
	return ""
}

func (w Webhook) validate(v *validator, k string) {
	switch {
	case w.URL.Literal != "":
		if msg := WebhookURLProblem(w.URL.Literal, true); msg != "" {
			v.add(k+".url", "%s", msg)
		}
	case !w.URL.Ref.IsZero():
		v.secretRef(k+".url", w.URL.Ref)
	}
	if t := w.Timeout.Duration; t < time.Second || t > 5*time.Minute {
		v.add(k+".timeout", "%s is not in 1s..5m; want the time one POST may take, e.g. 10s (default)", t)
	}
	if r := w.Retries; r < 0 || r > 10 {
		v.add(k+".retries", "%d is not in 0..10; want how often a failed POST is sent again, e.g. 3 (default)", r)
	}
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func (b UserBackoff) validate(v *validator, k string) {
	if b.AfterFailures < 0 {
		v.add(k+".after_failures", "%d is negative; want the number of identical failures in a row after which a user is tried less often (default 3), or 0 to turn the back-off off", b.AfterFailures)
	}
	if d := b.Base.Duration; d != 0 && d < time.Minute {
		v.add(k+".base", "%s is neither 0 (one interval of the job's schedule, the default) nor at least 1m; want e.g. 1h", d)
	}
	switch d := b.Max.Duration; {
	case d < time.Hour:
		v.add(k+".max", "%s is shorter than 1h; want the longest wait between attempts of a failing user, e.g. 7d (default)", d)
	case b.Base.Duration > d:
		v.add(k+".max", "%s is shorter than user_backoff.base (%s); want max >= base", d, b.Base.Duration)
	}
}

// budget checks the change budget (deletion_threshold, its older name, is
// checked by legacyThreshold when the file is read).
func (v *validator) budget(k string, j *Job) {
	b := j.Budget
	if b.PercentFloor < 0 {
		v.add(k+".change_budget.percent_floor", "%d is negative; want 0 (percent bounds always apply) or a number of users such as 10", b.PercentFloor)
	}
	kinds := []struct {
		name string
		b    Bound
	}{{"disables", b.Disables}, {"deletes", b.Deletes}, {"group_removals", b.GroupRemovals},
		{"attribute_clears", b.AttributeClears}, {"upn_renames", b.UPNRenames}, {"manager_removals", b.ManagerRemovals}}
	for _, kd := range kinds {
		v.bound(k+".change_budget."+kd.name, kd.b)
	}
}

func (v *validator) bound(key string, b Bound) {
	if b.MaxCount < 0 {
		v.add(key+".max_count", "%d is negative; want a number of users such as 500 (0: no count bound, the percent bound stays)", b.MaxCount)
	}
	if p := b.MaxPercent; p < 0 || p > 100 || p != p {
		v.add(key+".max_percent", "%v is out of range; want 0 (no percent bound, the count bound stays) to 100, e.g. 10", p)
	}
	if !b.Off && b.MaxCount == 0 && b.MaxPercent == 0 {
		v.add(key, "max_count and max_percent are both 0, which would allow any number of changes; "+
			"set a bound (e.g. max_count: 500, max_percent: 10) or, to turn this bound off, say so: off: true")
	}
}

// validateConcurrency checks max_concurrent_jobs, and that an explicit pool
// can serve that many runs: each holds its job lock's connection for the
// whole run and needs at least one more for its queries, so a pool of
// 2×N+1 or fewer can leave every run waiting for a connection another run
// holds.
func (c *Config) validateConcurrency(v *validator) {
	n := c.MaxConcurrentJobs
	if n < 1 {
		v.add("max_concurrent_jobs", "%d is less than 1; want how many jobs may run at once, e.g. %d (default: enough jobs in different tenants to fill one app's Graph write budget)", n, DefaultMaxConcurrentJobs)
		return
	}
	if m := int(c.Database.MaxConns); m > 0 && m < 2*n+2 {
		v.add("max_concurrent_jobs", "%d runs at once need at least %d database connections (each holds its job lock's and needs one more) but database.max_conns is %d; "+
			"want max_concurrent_jobs: %d or less, or database.max_conns: %d (or 0, which sizes the pool from max_concurrent_jobs)",
			n, 2*n+2, m, runsForPool(m), connsPerRun*n+connsForSpare)
	}
}

// validateExtensions checks jobs[].schema_extensions: a name Graph accepts,
// a known dataType, no name twice and no column a built-in attribute uses.
func (j *Job) validateExtensions(v *validator, k string) {
	seen := map[string]bool{}
	for i, e := range j.SchemaExtensions {
		ek := fmt.Sprintf("%s.schema_extensions[%d]", k, i)
		if _, ok := profile.ExtensionTypes[e.Type]; !ok {
			v.add(ek+".type", "%q is not an extensionProperty dataType; want String, Integer, Boolean or DateTime", e.Type)
		}
		a, err := profile.Extension("", e.Name, "String")
		switch {
		case err != nil:
			v.add(ek+".name", "%q: want 1-40 letters and digits starting with a letter, the extension's short name (e.g. costCode)", e.Name)
		case seen[a.Column]:
			v.add(ek+".name", "%q is declared twice (its source column is %s); remove one", e.Name, a.Column)
		case builtinColumn(a.Column):
			v.add(ek+".name", "%q maps to column %s, which a built-in attribute uses; rename the extension", e.Name, a.Column)
		}
		seen[a.Column] = true
	}
}

func builtinColumn(c string) bool {
	for _, a := range profile.Builtin {
		if a.Column == c {
			return true
		}
	}
	switch c {
	case "external_id", "account_enabled", "manager_external_id", "groups":
		return true
	}
	return false
}
