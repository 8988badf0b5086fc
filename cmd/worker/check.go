package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/store"
	esync "github.com/entraprov/entraprov/internal/sync"
	"github.com/entraprov/entraprov/internal/tenants"
)

func init() { addCommand(newCheckCommand) }

// Check statuses.
const (
	checkOK   = "ok"
	checkFail = "fail"
	checkWarn = "warn" // worth fixing, does not fail the check
	checkSkip = "skip" // not run: an earlier check it depends on failed
)

// checkItem is one line of the preflight checklist.
type checkItem struct {
	Name       string   `json:"name"` // config, database, schema, source, source_ids, groups, credential, token, permissions, graph, clock
	Job        string   `json:"job,omitempty"`
	Status     string   `json:"status"`
	Detail     string   `json:"detail"`
	Advice     string   `json:"advice,omitempty"`
	Missing    []string `json:"missing_permissions,omitempty"`
	ConsentURL string   `json:"consent_url,omitempty"`
}

type checkReport struct {
	OK bool `json:"ok"`
	// Quarantined holds one line per quarantined job, printed first.
	Quarantined []string    `json:"quarantined,omitempty"`
	Checks      []checkItem `json:"checks"`
}

func (r *checkReport) add(it checkItem) *checkItem {
	r.Checks = append(r.Checks, it)
	return &r.Checks[len(r.Checks)-1]
}

// Application permissions a job needs (internal/directory, permissions.go).
var (
	permUsers  = directory.PermUsers
	permGroups = directory.PermGroups
)

// missingPermissions lists the required permissions the token's roles do
// not grant (directly or through a broader permission).
func missingPermissions(required, roles []string) []string {
	return directory.MissingPermissions(required, roles)
}

// maxClockSkew: beyond it the certificate assertions the worker signs may be
// refused (AADSTS700024) and run times in history are misleading.
const maxClockSkew = time.Minute

func newCheckCommand() *cobra.Command {
	var (
		jobName   string
		asJSON    bool
		checklist bool
	)
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Preflight: configuration, database, source, sign-in, permissions, Graph, clock",
		Long: `check verifies everything a run needs, without changing anything:
the configuration; the database connection and schema version; each job's
source relation (columns and types, one row per external_id, groups within
allowed_groups); when the job's certificate (its file's NotAfter) or
client secret (read from the app registration, which needs
Application.Read.All) expires, warning within 30 days; that a token can be
acquired (failures
explained from their AADSTS code); that the token carries the application
permissions the job needs (each missing one named, with the tenant's
admin-consent URL); a GET /users?$top=1 probe; and the clock against the
identity platform's.

It prints a checklist, on a terminal or piped; --json prints JSON instead.
The exit status is non-zero when any check fails.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runCheck(cmd, jobName, asJSON)
		},
	}
	cmd.Flags().StringVar(&jobName, "job", "", "check only this job")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of the checklist")
	cmd.Flags().BoolVar(&checklist, "checklist", false, "print the checklist (the default; kept for scripts that pass it)")
	cmd.MarkFlagsMutuallyExclusive("json", "checklist")
	return cmd
}

func runCheck(cmd *cobra.Command, jobName string, asJSON bool) error {
	ctx := commandContext(cmd)
	out := cmd.OutOrStdout()
	rep := &checkReport{}

	cfg, err := loadConfig(cmd)
	if err != nil {
		rep.add(checkItem{Name: "config", Status: checkFail, Detail: err.Error(),
			Advice: "fix the configuration file (worker config validate lists every problem)"})
		return finishCheck(out, rep, asJSON, exitConfig)
	}
	jobs := cfg.Jobs
	if jobName != "" && !tenants.HasTemplates(cfg) {
		j, err := findJob(cfg, jobName)
		if err != nil {
			return err
		}
		jobs = []config.Job{j}
	}
	rep.add(checkItem{Name: "config", Status: checkOK, Detail: fmt.Sprintf("%s: %d job(s) valid", globals.configPath, len(cfg.Jobs))})
	// Risky but valid settings (endpoints outside the cloud, secret files
	// others can read): top-level ones here, a job's with its checks.
	warnings := map[string][]string{}
	for _, p := range cfg.Warnings() {
		j := jobOfKey(cfg, p.Key)
		warnings[j] = append(warnings[j], p.String())
	}
	for _, w := range warnings[""] {
		rep.add(checkItem{Name: "config", Status: checkWarn, Detail: w})
	}

	st := checkDatabase(ctx, cfg, rep)
	if st != nil {
		defer st.Close()
		checkOwners(ctx, st, rep)
	}
	if tenants.HasTemplates(cfg) {
		jobs = checkTenants(ctx, cfg, st, rep)
		if jobName != "" {
			var j config.Job
			switch {
			case st != nil:
				if j, err = findConfigJob(ctx, cfg, st, jobName); err != nil {
					return err
				}
			case slices.ContainsFunc(jobs, func(j config.Job) bool { return j.Name == jobName }):
				j, _ = findJob(&config.Config{Jobs: jobs}, jobName)
			default:
				// A template's tenant, unknown without the database (its
				// failure is reported above).
				return finishCheck(out, rep, asJSON, exitFail)
			}
			jobs = []config.Job{j}
		}
	}
	for _, job := range jobs {
		if st != nil {
			checkQuarantine(ctx, job.Name, st, rep)
		}
		for _, w := range warnings[job.Name] {
			rep.add(checkItem{Name: "config", Job: job.Name, Status: checkWarn, Detail: w})
		}
		if job.Template != "" {
			for _, w := range warnings[job.Template] {
				rep.add(checkItem{Name: "config", Job: job.Name, Status: checkWarn, Detail: w})
			}
		}
		checkJob(ctx, job, st, rep)
		checkWebhook(ctx, job, rep)
	}
	return finishCheck(out, rep, asJSON, exitFail)
}

// jobOfKey names the job a key path such as jobs[2].graph_url belongs to
// ("" for a top-level key).
func jobOfKey(cfg *config.Config, key string) string {
	var i int
	if _, err := fmt.Sscanf(key, "jobs[%d]", &i); err == nil && i >= 0 && i < len(cfg.Jobs) {
		return cfg.Jobs[i].Name
	}
	return ""
}

// checkDatabase checks the connection and the schema version; it returns
// the store when both are fine (the source checks need it), else nil.
func checkDatabase(ctx context.Context, cfg *config.Config, rep *checkReport) *store.Store {
	dsn, err := cfg.Database.ConnString(ctx)
	if err != nil {
		rep.add(checkItem{Name: "database", Status: checkFail, Detail: err.Error()})
		rep.add(checkItem{Name: "schema", Status: checkSkip, Detail: "no database connection"})
		return nil
	}
	octx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	st, err := store.Open(octx, dsn, store.WithMaxConns(cfg.Database.MaxConns))
	if err != nil {
		rep.add(checkItem{Name: "database", Status: checkFail, Detail: err.Error(),
			Advice: "check database.url (or ENTRAPROV_DATABASE_URL), that the server is up and that pg_hba.conf admits this host and role"})
		rep.add(checkItem{Name: "schema", Status: checkSkip, Detail: "no database connection"})
		return nil
	}
	rep.add(checkItem{Name: "database", Status: checkOK, Detail: "connected to " + config.RedactURL(cfg.Database.URL)})
	if err := st.CheckSchema(octx); err != nil {
		it := rep.add(checkItem{Name: "schema", Status: checkFail, Detail: err.Error()})
		if errors.Is(err, store.ErrSchemaOutdated) {
			it.Advice = "run `worker migrate up`"
		} else if errors.Is(err, store.ErrSchemaTooNew) {
			it.Advice = "this worker is older than the database schema: install the newer worker"
		}
		st.Close()
		return nil
	}
	cur, _, _ := st.SchemaVersion(octx)
	rep.add(checkItem{Name: "schema", Status: checkOK, Detail: fmt.Sprintf("schema version %d is current", cur)})
	return st
}

func checkJob(ctx context.Context, job config.Job, st *store.Store, rep *checkReport) {
	name := job.Name
	// What a run requires too (directory.RequiredPermissions): users
	// alone until the source says more.
	required := directory.RequiredPermissions(nil, false)
	groupsKnown := false

	if st == nil {
		rep.add(checkItem{Name: "source", Job: name, Status: checkSkip, Detail: "database not ready"})
	} else {
		sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		_, facts, err := esync.JobSchema(sctx, st, job)
		if err != nil {
			rep.add(checkItem{Name: "source", Job: name, Status: checkFail, Detail: err.Error(),
				Advice: "create or fix the view (see configs/desired_users.example.sql) or point source at the right relation"})
		} else {
			// The attributes the job owns, and what reading and writing
			// them needs beyond User.ReadWrite.All (employeeLeaveDateTime,
			// owned only once a source row fills it).
			schema := facts.Schema
			detail := "manages " + strings.Join(schema.ManagedColumns(), ", ") + " (columns the source lacks are left to others)"
			if cols := schema.Unfilled(); len(cols) > 0 {
				detail += "; present but NULL in every row: not managed until filled: " + strings.Join(cols, ", ")
			}
			rep.add(checkItem{Name: "attributes", Job: name, Status: checkOK, Detail: detail})
			required, groupsKnown = directory.RequiredPermissions(schema, facts.Groups), true
			detail = job.Source + " has every contract column with a usable type"
			if facts.Groups {
				detail += "; manages group memberships"
			}
			rep.add(checkItem{Name: "source", Job: name, Status: checkOK, Detail: detail})
			checkSourceContract(sctx, job, st, rep, facts.Groups)
		}
		cancel()
	}

	checkCertificateExpiry(ctx, job, rep)
	tctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	client, err := directory.New(tctx, job, directory.Options{Logger: slog.New(slog.DiscardHandler), UserAgent: "entraprov-check/" + version})
	if err != nil {
		rep.add(checkItem{Name: "token", Job: name, Status: checkFail, Detail: err.Error(),
			Advice: "check the job's auth section and that this process can read its credential"})
		rep.add(checkItem{Name: "permissions", Job: name, Status: checkSkip, Detail: "no token"})
		rep.add(checkItem{Name: "graph", Job: name, Status: checkSkip, Detail: "no token"})
		checkClock(tctx, job, rep)
		return
	}
	roles, tenant, appID, err := client.TokenRoles(tctx)
	if st != nil {
		// What `worker tenants` shows for this tenant, as a run records it.
		if serr := st.SaveConsent(tctx, tenants.Judge(job, required, roles, err, store.ConsentByCheck, time.Now())); serr != nil {
			rep.add(checkItem{Name: "token", Job: name, Status: checkWarn, Detail: "could not record the sign-in for worker tenants: " + serr.Error()})
		}
	}
	if err != nil {
		it := rep.add(checkItem{Name: "token", Job: name, Status: checkFail, Detail: err.Error()})
		var ae *directory.AuthError
		if errors.As(err, &ae) {
			it.Detail = fmt.Sprintf("sign-in refused for app %s in tenant %s", ae.ClientID, ae.Tenant)
			if ae.Code != 0 {
				it.Detail += fmt.Sprintf(" (AADSTS%d)", ae.Code)
			}
			it.Advice, it.ConsentURL = ae.Advice, ae.ConsentURL
		}
		rep.add(checkItem{Name: "permissions", Job: name, Status: checkSkip, Detail: "no token"})
		rep.add(checkItem{Name: "graph", Job: name, Status: checkSkip, Detail: "no token"})
		checkClock(tctx, job, rep)
		return
	}
	rep.add(checkItem{Name: "token", Job: name, Status: checkOK,
		Detail: fmt.Sprintf("token acquired for app %s in tenant %s (%s)", appID, tenant, job.Auth.Method)})
	checkSecretExpiry(tctx, job, client, rep)

	granted := "no application permissions"
	if len(roles) > 0 {
		granted = "granted: " + strings.Join(roles, ", ")
	}
	if missing := missingPermissions(required, roles); len(missing) > 0 {
		consent := directory.ConsentURL(job)
		rep.add(checkItem{Name: "permissions", Job: name, Status: checkFail, Missing: missing, ConsentURL: consent,
			Detail: fmt.Sprintf("missing application permission %s (%s)", strings.Join(missing, ", "), granted),
			Advice: fmt.Sprintf("add %s under the app registration's API permissions (Microsoft Graph, Application), then a tenant administrator must grant admin consent: %s",
				strings.Join(missing, " and "), consent)})
	} else {
		detail := granted
		if !groupsKnown {
			detail += " (" + permGroups + " also needed if the source lists groups)"
		}
		rep.add(checkItem{Name: "permissions", Job: name, Status: checkOK, Detail: detail})
	}

	if err := client.Probe(tctx); err != nil {
		it := rep.add(checkItem{Name: "graph", Job: name, Status: checkFail, Detail: "GET /users?$top=1: " + err.Error()})
		var ae *directory.AuthError
		if errors.As(err, &ae) {
			// The AuthError's text already holds its advice: show the cause.
			if ae.Err != nil {
				it.Detail = "GET /users?$top=1: " + ae.Err.Error()
			}
			it.Advice, it.ConsentURL = ae.Advice, ae.ConsentURL
		}
	} else {
		rep.add(checkItem{Name: "graph", Job: name, Status: checkOK, Detail: "GET " + client.GraphURL() + "/users?$top=1 answered"})
	}
	checkClock(tctx, job, rep)
}

// checkWebhook reads the job's webhook URL, as a delivery would, and checks
// its form; it sends nothing. The URL is shown as scheme and host only.
func checkWebhook(ctx context.Context, job config.Job, rep *checkReport) {
	u := job.Webhook.URL
	if u.IsZero() {
		return
	}
	target, err := u.Resolve(ctx)
	if err != nil {
		// Not a failure: under systemd the service may read what this
		// shell cannot ({credential: …}).
		rep.add(checkItem{Name: "webhook", Job: job.Name, Status: checkWarn, Detail: "url not readable here: " + err.Error(),
			Advice: "the service must be able to read it, or alerts are lost"})
		return
	}
	shown := config.URLRef{Literal: target}.String()
	if msg := config.WebhookURLProblem(target, false); msg != "" {
		rep.add(checkItem{Name: "webhook", Job: job.Name, Status: checkFail, Detail: fmt.Sprintf("url (%s): %s", u, msg)})
		return
	}
	rep.add(checkItem{Name: "webhook", Job: job.Name, Status: checkOK, Detail: fmt.Sprintf("events go to %s (url %s; not sent by check)", shown, u)})
}

// checkClock compares the local clock with the Date header of the identity
// platform (the job's authority host), halfway through the round trip.
func checkClock(ctx context.Context, job config.Job, rep *checkReport) {
	authority, _ := job.Endpoints()
	target := strings.TrimRight(authority, "/") + "/" + url.PathEscape(job.TenantID) + "/v2.0/.well-known/openid-configuration"
	skew, err := measureSkew(ctx, job.CAFile, target)
	host := authority
	if u, perr := url.Parse(authority); perr == nil && u.Host != "" {
		host = u.Host
	}
	switch {
	case err != nil:
		rep.add(checkItem{Name: "clock", Job: job.Name, Status: checkWarn, Detail: "could not compare the clock with " + host + ": " + err.Error()})
	case skew > maxClockSkew || skew < -maxClockSkew:
		rep.add(checkItem{Name: "clock", Job: job.Name, Status: checkWarn,
			Detail: fmt.Sprintf("local clock is %s off %s", fmtSkew(skew), host),
			Advice: "synchronise the clock (timedatectl set-ntp true): certificate sign-in fails beyond a few minutes of skew (AADSTS700024)"})
	case skew > -time.Second && skew < time.Second:
		rep.add(checkItem{Name: "clock", Job: job.Name, Status: checkOK, Detail: "in sync with " + host + " (within the 1s of its Date header)"})
	default:
		rep.add(checkItem{Name: "clock", Job: job.Name, Status: checkOK, Detail: fmt.Sprintf("local clock is %s off %s: fine", fmtSkew(skew), host)})
	}
}

func fmtSkew(d time.Duration) string {
	if d < 0 {
		return "-" + (-d).Round(100*time.Millisecond).String()
	}
	return "+" + d.Round(100*time.Millisecond).String()
}

// measureSkew returns server time minus local time. The Date header has
// one-second resolution, so anything within a second is "in sync".
func measureSkew(ctx context.Context, caFile, target string) (time.Duration, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return 0, fmt.Errorf("ca_file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		pool.AppendCertsFromPEM(pem)
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	}
	c := &http.Client{Transport: tr, Timeout: 15 * time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	end := time.Now()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	date, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil {
		return 0, errors.New("the answer has no usable Date header")
	}
	local := start.Add(end.Sub(start) / 2)
	skew := date.Sub(local)
	// Date is truncated to the second: up to 1s of apparent lag is noise.
	if skew < 0 && skew > -time.Second {
		skew = 0
	}
	return skew, nil
}

// finishCheck prints the report and turns failures into the exit status.
func finishCheck(w io.Writer, rep *checkReport, asJSON bool, failCode int) error {
	failed := 0
	for _, it := range rep.Checks {
		if it.Status == checkFail {
			failed++
		}
	}
	rep.OK = failed == 0
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printChecklist(w, rep)
	}
	if failed > 0 {
		return withExit(failCode, fmt.Errorf("check: %d of %d checks failed", failed, len(rep.Checks)))
	}
	return nil
}

func printChecklist(w io.Writer, rep *checkReport) {
	mark := map[string]string{checkOK: "✓", checkFail: "✗", checkWarn: "!", checkSkip: "-"}
	for _, l := range rep.Quarantined {
		fmt.Fprintln(w, l)
	}
	job := "\x00"
	counts := map[string]int{}
	for _, it := range rep.Checks {
		counts[it.Status]++
		if it.Job != job {
			job = it.Job
			if job != "" {
				fmt.Fprintf(w, "\njob %s\n", job)
			}
		}
		fmt.Fprintf(w, "  %s %-12s %s\n", mark[it.Status], it.Name, indentTail(it.Detail, 17))
		if it.Advice != "" {
			fmt.Fprintf(w, "  %14s → %s\n", "", indentTail(it.Advice, 19))
		}
		if it.ConsentURL != "" && !strings.Contains(it.Advice, it.ConsentURL) {
			fmt.Fprintf(w, "  %14s → admin consent: %s\n", "", it.ConsentURL)
		}
	}
	fmt.Fprintf(w, "\n%d ok, %d failed, %d warnings, %d skipped\n", counts[checkOK], counts[checkFail], counts[checkWarn], counts[checkSkip])
}

// indentTail indents the continuation lines of a multi-line message.
func indentTail(s string, n int) string {
	return strings.ReplaceAll(s, "\n", "\n"+strings.Repeat(" ", n))
}

// isTerminal reports whether f (stdout, stderr or stdin) is a character
// device (a TTY).
func isTerminal(f any) bool {
	file, ok := f.(*os.File)
	if !ok {
		return false
	}
	fi, err := file.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// checkCertificateExpiry reads the NotAfter of a certificate job's file:
// a warning within directory.ExpiryWarning, a failure once expired. A file
// that cannot be read is the token check's failure, not reported twice.
func checkCertificateExpiry(ctx context.Context, job config.Job, rep *checkReport) {
	if job.Auth.Method != "certificate" {
		return
	}
	end, err := directory.CertificateNotAfter(ctx, job.Auth)
	if err != nil {
		return
	}
	rep.add(expiryItem(job.Name, "certificate", end, time.Now(),
		"create a new certificate, upload its public part to the app registration (Certificates & secrets) and point auth.certificate_file at it"))
}

// checkSecretExpiry reads the app registration's client secrets, when the
// app may (Application.Read.All); otherwise it says it cannot know.
func checkSecretExpiry(ctx context.Context, job config.Job, client *directory.Client, rep *checkReport) {
	if job.Auth.Method != "secret" {
		return
	}
	creds, err := client.AppCredentials(ctx)
	var ae *directory.AuthError
	switch {
	case errors.As(err, &ae) && ae.Permission == directory.PermReadApplication:
		rep.add(secretExpiryUnknown(job, ae))
	case err != nil:
		rep.add(checkItem{Name: "credential", Job: job.Name, Status: checkWarn, Detail: "cannot know when the client secret expires: " + err.Error()})
	default:
		end, ok := creds.LatestSecretEnd()
		if !ok {
			rep.add(checkItem{Name: "credential", Job: job.Name, Status: checkWarn, Detail: "the app registration lists no client secret with an end date"})
			return
		}
		rep.add(expiryItem(job.Name, "client secret", end, time.Now(),
			"create a new client secret in the app registration (Certificates & secrets) and update auth.client_secret's source"))
	}
}

// secretExpiryUnknown is the warning of a client-secret job whose app may
// not read its own registration (ae: the 403). A tenant of a template is
// often a customer's, where the registration is not (only the app's
// service principal is): granting the permission there would not help, so
// the advice names the tenant where the app is registered and no
// customer's consent page.
func secretExpiryUnknown(job config.Job, ae *directory.AuthError) checkItem {
	it := checkItem{Name: "credential", Job: job.Name, Status: checkWarn, ConsentURL: ae.ConsentURL,
		Detail: "cannot know when the client secret expires: the app may not read its own registration",
		Advice: fmt.Sprintf("grant the application permission %s (and admin consent) to have check and the metrics report it, or track the secret's end date yourself", directory.PermReadApplication)}
	if job.Template != "" {
		it.ConsentURL = ""
		it.Advice = fmt.Sprintf("the app registration is read in the tenant where the app is registered: grant %s (and admin consent) there, not in a customer's tenant, or track the secret's end date yourself", directory.PermReadApplication)
	}
	return it
}

// expiryItem judges one credential's end date at now.
func expiryItem(job, what string, end, now time.Time, renew string) checkItem {
	it := checkItem{Name: "credential", Job: job}
	left := end.Sub(now)
	date := end.UTC().Format("2006-01-02 15:04 UTC")
	switch {
	case left <= 0:
		it.Status, it.Detail, it.Advice = checkFail, fmt.Sprintf("the %s expired on %s: sign-in fails", what, date), renew
	case left < directory.ExpiryWarning:
		it.Status, it.Detail, it.Advice = checkWarn, fmt.Sprintf("the %s expires on %s, in %s", what, date, daysLeft(left)), renew
	default:
		it.Status, it.Detail = checkOK, fmt.Sprintf("the %s is valid until %s (%s)", what, date, daysLeft(left))
	}
	return it
}

// daysLeft counts started days: 28 days and an hour is "29 days", an hour
// is "1 day" (never "0 days" before the end).
func daysLeft(d time.Duration) string {
	n := int((d + 24*time.Hour - 1) / (24 * time.Hour))
	if n == 1 {
		return "1 day"
	}
	return fmt.Sprintf("%d days", n)
}

// checkTenants reads the tenants relation of every template job: one
// "tenants" line per template (how many rows run, are disabled, are
// refused), a warning per refused row. It returns the jobs to check: the
// file's jobs of one tenant and the tenants' that run.
func checkTenants(ctx context.Context, cfg *config.Config, st *store.Store, rep *checkReport) []config.Job {
	var plain []config.Job
	for _, j := range cfg.Jobs {
		if j.TenantsFrom == "" {
			plain = append(plain, j)
		}
	}
	if st == nil {
		for _, j := range cfg.Jobs {
			if j.TenantsFrom != "" {
				rep.add(checkItem{Name: "tenants", Job: j.Name, Status: checkSkip, Detail: "database not ready: the tenants of " + j.TenantsFrom + " are unknown"})
			}
		}
		return plain
	}
	_, exp, err := expandConfig(ctx, cfg, st)
	if err != nil {
		rep.add(checkItem{Name: "tenants", Status: checkFail, Detail: err.Error(),
			Advice: "create or fix the tenants relation (see configs/tenants.example.sql)"})
		return plain
	}
	for _, j := range cfg.Jobs {
		if j.TenantsFrom == "" {
			continue
		}
		var runs, disabled, refused int
		for _, t := range exp.Tenants {
			switch {
			case t.Template != j.Name:
			case t.Problem != "":
				refused++
				rep.add(checkItem{Name: "tenants", Job: t.Job, Status: checkWarn, Detail: "row refused: " + t.Problem})
			case !t.Row.Enabled:
				disabled++
			default:
				runs++
			}
		}
		rep.add(checkItem{Name: "tenants", Job: j.Name, Status: checkOK,
			Detail: fmt.Sprintf("template over %s: %d tenant(s) run, %d disabled, %d refused", j.TenantsFrom, runs, disabled, refused)})
	}
	return exp.Jobs
}
