package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/store"
	"github.com/entraprov/entraprov/internal/tenants"
)

func init() { addCommand(newTenantsCommand) }

// expandConfig returns cfg with its template jobs expanded over their
// tenants relations (cfg itself when it has none), and the expansion. A
// tenants relation that cannot be read is a configuration error (78), the
// database failing a failure (1).
func expandConfig(ctx context.Context, cfg *config.Config, st *store.Store) (*config.Config, tenants.Expansion, error) {
	if !tenants.HasTemplates(cfg) {
		return cfg, tenants.Expansion{Jobs: cfg.Jobs}, nil
	}
	exp, err := tenants.Expand(ctx, st, cfg)
	if err != nil {
		var ve *config.ValidationError
		if errors.As(err, &ve) {
			ve.File = globals.configPath
			return nil, exp, withExit(exitConfig, err)
		}
		return nil, exp, withExit(exitFail, err)
	}
	return exp.Config(cfg), exp, nil
}

// findConfigJob is findJob over the expanded jobs: `--job isv@contoso`
// names a template's tenant. A tenant whose row is disabled or refused is
// a usage error (2) saying so and how to change it.
func findConfigJob(ctx context.Context, cfg *config.Config, st *store.Store, name string) (config.Job, error) {
	ecfg, exp, err := expandConfig(ctx, cfg, st)
	if err != nil {
		return config.Job{}, err
	}
	if t, ok := exp.Find(name); ok && !t.Runs() {
		if t.Problem != "" {
			return config.Job{}, withExit(exitUsage, fmt.Errorf("job %s: its row in %s is refused: %s", name, t.Relation, t.Problem))
		}
		return config.Job{}, withExit(exitUsage, fmt.Errorf("job %s: tenant %s is disabled in %s (enabled = false); set enabled = true to run it", name, t.Row.Name, t.Relation))
	}
	return findJob(ecfg, name)
}

// Tenant states in `worker tenants`, worst first.
const (
	tenantInvalid    = "invalid"        // the tenants row gives no job
	tenantNoConsent  = "no consent"     // sign-in refused; an administrator's consent is the fix
	tenantSignInFail = "sign-in failed" // sign-in refused for another reason
	tenantMissing    = "missing roles"  // signed in without a permission the job needs
	tenantNever      = "not signed in"  // no run or check signed in yet
	tenantOK         = "ok"
	tenantDisabled   = "disabled" // enabled = false: no runs
)

// tenantJSON is one line of `worker tenants --json`.
type tenantJSON struct {
	Job         string       `json:"job"`
	Template    string       `json:"template,omitempty"`
	TenantsFrom string       `json:"tenants_from,omitempty"`
	Name        string       `json:"name,omitempty"`
	TenantID    string       `json:"tenant_id"`
	Enabled     bool         `json:"enabled"`
	State       string       `json:"state"`
	Problem     string       `json:"problem,omitempty"`
	SignIn      *signInJSON  `json:"last_sign_in,omitempty"`
	LastRun     *lastRunJSON `json:"last_run,omitempty"`
	consent     *store.Consent
}

// lastRunJSON is a tenant's latest apply run (worker show ID for more).
type lastRunJSON struct {
	ID        int64           `json:"id"`
	Status    store.RunStatus `json:"status"`
	StartedAt time.Time       `json:"started_at"`
	Error     string          `json:"error,omitempty"`
}

type signInJSON struct {
	At         time.Time `json:"at"`
	By         string    `json:"by"`
	SignedIn   bool      `json:"signed_in"`
	AADSTS     int       `json:"aadsts,omitempty"`
	Granted    []string  `json:"granted"`
	Missing    []string  `json:"missing"`
	ConsentURL string    `json:"consent_url,omitempty"`
	Advice     string    `json:"advice,omitempty"`
}

func newTenantsCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "tenants",
		Short: "Onboarding view: each tenant, whether the app may sign in there, and why not",
		Long: `tenants lists every tenant the configuration provisions: the jobs of one
tenant, and one line per row of each template job's tenants relation
(jobs[].tenants_from), enabled or not. For each it shows the last sign-in a
run or ` + "`worker check`" + ` made there: the application permissions granted, those
missing, and for a tenant whose administrator has not consented yet the
admin-consent URL to send them, with what to do; and its latest run
(` + "`worker show ID`" + ` for more). It never shows a secret or a token.

States: ok; missing roles (signed in, a permission the job needs is not
granted); no consent (sign-in refused, the consent URL is the fix);
sign-in failed (refused for another reason: see the advice); not signed in
(no run or check yet: run ` + "`worker check --job NAME`" + `); disabled (enabled =
false: no runs); invalid (the row gives no job: see the problem).

--json prints a JSON array instead of the table.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runTenants(cmd, asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of the table")
	return cmd
}

func runTenants(cmd *cobra.Command, asJSON bool) error {
	ctx, cfg, st, err := configStore(cmd, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	_, exp, err := expandConfig(ctx, cfg, st)
	if err != nil {
		return err
	}
	consent, err := st.ListConsent(ctx)
	if err != nil {
		return withExit(exitFail, err)
	}
	list := tenantList(cfg, exp, consent)
	names := make([]string, len(list))
	for i, t := range list {
		names[i] = t.Job
	}
	runs, err := st.LastApplyRuns(ctx, names)
	if err != nil {
		return withExit(exitFail, err)
	}
	for i := range list {
		if r, ok := runs[list[i].Job]; ok {
			list[i].LastRun = &lastRunJSON{ID: r.ID, Status: r.Status, StartedAt: r.StartedAt, Error: r.ErrorSummary}
		}
	}
	if asJSON {
		return writeJSON(cmd.OutOrStdout(), list)
	}
	return printTenants(cmd.OutOrStdout(), list)
}

// tenantList is the configuration's tenants in file order: a job of one
// tenant where it is written, a template's rows in name order where the
// template is.
func tenantList(cfg *config.Config, exp tenants.Expansion, consent map[string]store.Consent) []tenantJSON {
	var out []tenantJSON
	add := func(t tenantJSON) {
		if c, ok := consent[t.Job]; ok {
			t.consent = &c
			t.SignIn = &signInJSON{At: c.CheckedAt, By: c.CheckedBy, SignedIn: c.SignedIn, AADSTS: c.AADSTS,
				Granted: c.Granted, Missing: c.Missing, ConsentURL: c.ConsentURL, Advice: c.Advice}
		}
		t.State = tenantState(t)
		out = append(out, t)
	}
	for _, j := range cfg.Jobs {
		if j.TenantsFrom == "" {
			add(tenantJSON{Job: j.Name, TenantID: j.TenantID, Enabled: true})
			continue
		}
		for _, t := range exp.Tenants {
			if t.Template == j.Name {
				add(tenantJSON{Job: t.Job, Template: t.Template, TenantsFrom: t.Relation, Name: t.Row.Name,
					TenantID: t.Row.TenantID, Enabled: t.Row.Enabled, Problem: t.Problem})
			}
		}
	}
	return out
}

func tenantState(t tenantJSON) string {
	c := t.consent
	switch {
	case t.Problem != "":
		return tenantInvalid
	case !t.Enabled:
		return tenantDisabled
	case c == nil:
		return tenantNever
	case !c.SignedIn && c.ConsentURL != "":
		return tenantNoConsent
	case !c.SignedIn:
		return tenantSignInFail
	case len(c.Missing) > 0:
		return tenantMissing
	}
	return tenantOK
}

func printTenants(w io.Writer, list []tenantJSON) error {
	if len(list) == 0 {
		_, err := fmt.Fprintln(w, "no tenants")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tTENANT\tSTATE\tLAST SIGN-IN\tGRANTED\tMISSING\tLAST RUN")
	var notes []string
	for _, t := range list {
		last, granted, missing := "-", "-", "-"
		if s := t.SignIn; s != nil {
			last = s.At.Local().Format("2006-01-02 15:04") + " (" + s.By + ")"
			if s.AADSTS != 0 {
				last += fmt.Sprintf(" AADSTS%d", s.AADSTS)
			}
			if len(s.Granted) > 0 {
				granted = strings.Join(s.Granted, ", ")
			}
			if len(s.Missing) > 0 {
				missing = strings.Join(s.Missing, ", ")
			}
			if !s.SignedIn {
				granted = "-"
			}
		}
		run := "-"
		if r := t.LastRun; r != nil {
			run = fmt.Sprintf("%d %s %s", r.ID, r.Status, r.StartedAt.Local().Format("2006-01-02 15:04"))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Job, orDash(t.TenantID), t.State, last, granted, missing, run)
		if n := tenantNote(t); n != "" {
			notes = append(notes, n)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(notes) > 0 {
		fmt.Fprintf(w, "\n%s\n", strings.Join(notes, "\n"))
	}
	return nil
}

// tenantNote is what to do about a tenant that is not ok ("" for one that is).
func tenantNote(t tenantJSON) string {
	var lines []string
	switch {
	case t.Problem != "":
		lines = append(lines, "→ "+t.Problem)
	case t.State == tenantNever:
		lines = append(lines, "→ no sign-in recorded yet: worker check --job "+t.Job)
	case t.SignIn != nil && t.State != tenantOK && t.State != tenantDisabled:
		if t.SignIn.Advice != "" {
			lines = append(lines, "→ "+t.SignIn.Advice)
		}
		if u := t.SignIn.ConsentURL; u != "" && !strings.Contains(t.SignIn.Advice, u) {
			lines = append(lines, "→ admin consent: "+u)
		}
	}
	if len(lines) == 0 {
		return ""
	}
	return t.Job + ":\n  " + strings.Join(lines, "\n  ")
}
