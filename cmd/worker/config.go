package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/jobs"
	"github.com/entraprov/entraprov/internal/store"
)

// errNoConfig tells the operator how to name the configuration file.
var errNoConfig = errors.New("no configuration file: pass --config FILE or set ENTRAPROV_CONFIG (start from configs/entraprov.example.yaml)")

// loadConfig loads and validates the file named by --config (or
// ENTRAPROV_CONFIG) and applies --database-url. Every failure maps to exit
// code 78 (EX_CONFIG): the operator must fix the file, not retry.
func loadConfig(cmd *cobra.Command) (*config.Config, error) {
	_ = cmd // the flags are global; cmd keeps the call sites uniform
	if globals.configPath == "" {
		return nil, withExit(exitConfig, errNoConfig)
	}
	if _, err := processPacing(); err != nil {
		return nil, withExit(exitConfig, err)
	}
	cfg, err := config.Load(globals.configPath)
	if err != nil {
		return nil, withExit(exitConfig, err)
	}
	if globals.databaseURL != "" {
		cfg.Database.URL, cfg.Database.URLFrom = globals.databaseURL, "--database-url"
	}
	return cfg, nil
}

// databaseURL returns the connection string for commands that need only the
// database (migrate, history, show): --database-url, else the config file
// (with its environment overrides and password reference) if one is named,
// else ENTRAPROV_DATABASE_URL / DATABASE_URL. The result may hold a
// password: never print it (config.RedactURL).
func databaseURL(cmd *cobra.Command) (string, error) {
	if globals.databaseURL != "" {
		return globals.databaseURL, nil
	}
	if globals.configPath != "" {
		cfg, err := loadConfig(cmd)
		if err != nil {
			return "", err
		}
		s, err := cfg.Database.ConnString(commandContext(cmd))
		if err != nil {
			return "", withExit(exitConfig, err)
		}
		if s != "" {
			return s, nil
		}
	}
	for _, name := range []string{config.EnvDatabaseURL, config.EnvDatabaseURLFallback} {
		if v := os.Getenv(name); v != "" {
			return v, nil
		}
	}
	return "", withExit(exitConfig, errors.New("no database: pass --database-url, set ENTRAPROV_DATABASE_URL or DATABASE_URL, or set database.url in the --config file"))
}

// withStore opens the database named by the flags, config or environment
// for the duration of fn. A missing URL is a configuration error (78); an
// unreachable server is a failure (1).
func withStore(cmd *cobra.Command, fn func(context.Context, *store.Store) error) error {
	url, err := databaseURL(cmd)
	if err != nil {
		return err
	}
	ctx := commandContext(cmd)
	st, err := store.Open(ctx, url)
	if err != nil {
		return withExit(exitFail, err)
	}
	defer st.Close()
	return fn(ctx, st)
}

// withCurrentStore is withStore for the commands that read or write the
// history: the schema must be the one this worker knows (exit 1 otherwise;
// the store's message names `worker migrate up` for pending migrations).
func withCurrentStore(cmd *cobra.Command, fn func(context.Context, *store.Store) error) error {
	return withStore(cmd, func(ctx context.Context, st *store.Store) error {
		if err := st.CheckSchema(ctx); err != nil {
			return withExit(exitFail, err)
		}
		return fn(ctx, st)
	})
}

// commandContext is the context a command's I/O runs under: the one
// execute passes (cancelled on SIGINT/SIGTERM), or Background when RunE is
// called without one.
func commandContext(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}

// configStore is the preamble of the commands that run a loaded
// configuration's jobs (sync, plan, audit, tenants, run): the command's
// context, the configuration (loadConfig: any problem is 78) and its
// database (openConfigStore: 78 for a bad database section, 1 for a server
// that cannot be reached or a schema this worker does not know). loaded,
// when not nil, sees the configuration before the database is opened, so
// that a logger it sets up reports the configuration's warnings even when
// the database is down. The caller closes the store.
func configStore(cmd *cobra.Command, loaded func(*config.Config)) (context.Context, *config.Config, *store.Store, error) {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return nil, nil, nil, err
	}
	ctx := commandContext(cmd)
	if loaded != nil {
		loaded(cfg)
	}
	st, err := openConfigStore(ctx, cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	return ctx, cfg, st, nil
}

// openConfigStore is the preamble of the commands that run a loaded
// configuration's jobs: connect to its database (a bad database section is
// a configuration error, 78; an unreachable server a failure, 1) and check
// the schema is the one this worker knows (1; the store's message names
// `worker migrate up` for pending migrations). The caller closes the store.
func openConfigStore(ctx context.Context, cfg *config.Config) (*store.Store, error) {
	dsn, err := cfg.Database.ConnString(ctx)
	if err != nil {
		return nil, withExit(exitConfig, err)
	}
	// The pool serves max_concurrent_jobs runs at once (config.PoolSize),
	// unless the URL's pool_max_conns says otherwise.
	pool := cfg.PoolSize()
	if cfg.Database.MaxConns == 0 && strings.Contains(dsn, "pool_max_conns") {
		pool = 0
	}
	st, err := store.Open(ctx, dsn, store.WithMaxConns(pool))
	if err != nil {
		return nil, withExit(exitFail, err)
	}
	if err := st.CheckSchema(ctx); err != nil {
		st.Close()
		return nil, withExit(exitFail, err)
	}
	return st, nil
}

func init() {
	addCommand(func() *cobra.Command {
		c := &cobra.Command{
			Use:   "config",
			Short: "Inspect the configuration file",
			Args:  cobra.NoArgs,
		}
		c.AddCommand(&cobra.Command{
			Use:   "validate",
			Short: "Check the configuration file and list its jobs (exit 78 if invalid)",
			Long: "Loads the configuration exactly as `worker run` would, reports every problem at once\n" +
				"with its key path and a fix, and otherwise prints each job with its next run time.\n" +
				"Secret references are checked for readability; their values are never printed.",
			Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				cfg, err := loadConfig(cmd)
				if err != nil {
					return err
				}
				if err := printConfigSummary(commandContext(cmd), cmd.OutOrStdout(), cfg, time.Now()); err != nil {
					return err
				}
				for _, p := range cfg.Warnings() {
					fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", p)
				}
				return nil
			},
		})
		c.AddCommand(&cobra.Command{
			Use:   "show",
			Short: "Print the effective configuration: the file with defaults and overrides applied",
			Long: "Prints the configuration as the worker sees it, every default filled in, the\n" +
				"database URL's secrets masked and a literal webhook URL cut to its scheme and host.\n" +
				"Secret references are shown, never their values.",
			Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				cfg, err := loadConfig(cmd)
				if err != nil {
					return err
				}
				enc := yaml.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent(2)
				if err := enc.Encode(cfg.Redacted()); err != nil {
					return err
				}
				return enc.Close()
			},
		})
		return c
	})
}

// printConfigSummary writes what a valid configuration will do.
func printConfigSummary(ctx context.Context, w io.Writer, cfg *config.Config, now time.Time) error {
	noun := "jobs"
	if len(cfg.Jobs) == 1 {
		noun = "job"
	}
	fmt.Fprintf(w, "config OK: %d %s (%s)\n", len(cfg.Jobs), noun, globals.configPath)
	db := config.RedactURL(cfg.Database.URL)
	if db == "" {
		db = "(unset: libpq defaults)"
	} else {
		db += " (from " + cfg.Database.URLFrom + ")"
	}
	fmt.Fprintf(w, "database: %s\n", db)
	if !cfg.Database.Password.IsZero() {
		fmt.Fprintf(w, "database password: %s\n", secretStatus(ctx, cfg.Database.Password))
	}
	metrics := cfg.Metrics.Listen
	if metrics == "" {
		metrics = "off"
	}
	fmt.Fprintf(w, "metrics: %s   log: %s/%s\n\n", metrics, cfg.Log.Format, cfg.Log.Level)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tTENANT\tAUTH\tSCHEDULE\tNEXT RUN\tSOURCE\tLEAVER")
	for _, j := range cfg.Jobs {
		next := "-"
		// jobs.Parse, not config.ParseSchedule: @every is clock-aligned by
		// the scheduler, and the time shown must be the one that runs.
		if s, err := jobs.Parse(j.Schedule); err == nil {
			t := s.Next(now)
			next = t.Format("2006-01-02 15:04 MST") + " (in " + untilNextRun(t.Sub(now)) + ")"
		}
		leaver := j.Leaver.Action
		if leaver == "delete" {
			leaver += " after " + j.Leaver.DeleteAfter.String()
		}
		tenant := j.TenantID
		if j.TenantsFrom != "" {
			// A template: its tenants are rows, listed by worker tenants.
			tenant = "each row of " + j.TenantsFrom
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", j.Name, tenant, j.Auth.Method, j.Schedule, next, j.Source, leaver)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	// Where each job's credentials come from, and whether this process can
	// read them. Unreadable here is not an error: the service may get them
	// from systemd (LoadCredential=) or its own environment.
	var lines []string
	for _, j := range cfg.Jobs {
		a := j.Auth
		switch a.Method {
		case "secret":
			lines = append(lines, fmt.Sprintf("  %s: client_secret %s", j.Name, secretStatus(ctx, a.Secret)))
		case "certificate":
			desc := a.CertificateFile
			if a.PFXFile != "" {
				desc = "pfx " + a.PFXFile
			}
			if a.KeyCredential != "" {
				desc += " + key " + secretStatus(ctx, config.SecretRef{Credential: a.KeyCredential})
			} else if a.KeyFile != "" {
				desc += " + key " + a.KeyFile
			}
			if !a.PFXPassword.IsZero() {
				desc += ", pfx_password " + secretStatus(ctx, a.PFXPassword)
			}
			lines = append(lines, fmt.Sprintf("  %s: certificate %s", j.Name, strings.TrimPrefix(desc, " + ")))
		case "managed_identity":
			id := "system-assigned"
			if a.ManagedIdentityClientID != "" {
				id = "user-assigned " + a.ManagedIdentityClientID
			}
			lines = append(lines, fmt.Sprintf("  %s: managed identity, %s", j.Name, id))
		case "workload_identity":
			f := a.FederatedTokenFile
			if f == "" {
				f = "$AZURE_FEDERATED_TOKEN_FILE"
			}
			lines = append(lines, fmt.Sprintf("  %s: workload identity, token file %s", j.Name, f))
		}
	}
	for _, j := range cfg.Jobs {
		switch u := j.Webhook.URL; {
		case u.Literal != "":
			lines = append(lines, fmt.Sprintf("  %s: webhook %s", j.Name, u))
		case !u.Ref.IsZero():
			lines = append(lines, fmt.Sprintf("  %s: webhook url %s", j.Name, secretStatus(ctx, u.Ref)))
		}
	}
	if len(lines) > 0 {
		fmt.Fprintf(w, "\ncredentials:\n%s\n", strings.Join(lines, "\n"))
	}
	return nil
}

// logConfigWarnings logs what config.Warnings finds (start-up, reload).
func logConfigWarnings(log *slog.Logger, cfg *config.Config) {
	for _, p := range cfg.Warnings() {
		log.Warn("configuration: "+p.Msg, "key", p.Key)
	}
}

// secretStatus names a secret reference and says whether it can be read
// from here; the value itself is read only to be discarded.
func secretStatus(ctx context.Context, r config.SecretRef) string {
	if _, err := r.Read(ctx); err != nil {
		return fmt.Sprintf("%s (not readable here: %v)", r, err)
	}
	return r.String() + " (readable)"
}

// checkJobName refuses a --job (or JOB argument) that names no job, for
// the commands that read or write the history without running a job
// (history, show --stuck, quarantine release): checked against the
// configuration when one is named, else against the jobs the database
// knows. Like findJob, an unknown name is a usage error (2) listing the
// jobs; "" (every job) passes.
func checkJobName(cmd *cobra.Command, ctx context.Context, st *store.Store, name string) error {
	if name == "" {
		return nil
	}
	if globals.configPath != "" {
		cfg, err := loadConfig(cmd)
		if err != nil {
			return err
		}
		ecfg, exp, err := expandConfig(ctx, cfg, st)
		if err != nil {
			return err
		}
		if _, ok := exp.Find(name); ok {
			return nil // a tenants row, even disabled: its history stays readable
		}
		_, err = findJob(ecfg, name)
		return err
	}
	names, err := st.JobNames(ctx)
	if err != nil {
		return withExit(exitFail, err)
	}
	if slices.Contains(names, name) {
		return nil
	}
	known := "none yet"
	if len(names) > 0 {
		known = strings.Join(names, ", ")
	}
	return withExit(exitUsage, fmt.Errorf("no job %q in the database (jobs with runs or state: %s); pass --config to check against the configuration", name, known))
}

// untilNextRun says how far off a next run is: to the minute ("3h20m"),
// and in seconds under a minute, where minutes would round to nothing
// (an @every schedule, a run due at once).
func untilNextRun(d time.Duration) string {
	switch {
	case d < time.Second:
		return "now"
	case d < time.Minute:
		return d.Truncate(time.Second).String()
	}
	return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
}
