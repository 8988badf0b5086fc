package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/daemon"
	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/jobs"
	"github.com/entraprov/entraprov/internal/metrics"
	"github.com/entraprov/entraprov/internal/store"
	esync "github.com/entraprov/entraprov/internal/sync"
	"github.com/entraprov/entraprov/internal/tenants"
)

func init() { addCommand(newRunCommand) }

// newJobRunner builds what the scheduler calls for each occurrence: the
// reconcile engine adapted to jobs.Runner (tests substitute their own).
var newJobRunner = engineJobRunner

// engineJobRunner wires the reconcile engine for the scheduler.
func engineJobRunner(_ context.Context, rt runtimeDeps) (jobs.Runner, error) {
	return daemon.EngineRunner(newEngine(rt.Store, rt.Metrics, rt.Log)), nil
}

// newEngine builds the reconcile engine the way every command runs it: the
// store, and per job a Graph client (reporting live to m when m is set).
func newEngine(st *store.Store, m *metrics.Metrics, log *slog.Logger) *esync.Engine {
	// loadConfig has checked what processPacing reads.
	pacing, _ := processPacing()
	return &esync.Engine{
		Store: st,
		Connect: func(ctx context.Context, job config.Job) (esync.Directory, error) {
			opts := directory.Options{Logger: log, UserAgent: "entraprov/" + version, Pacing: pacing}
			if m != nil {
				opts.Metrics = m.Graph(job.Name)
			}
			c, err := directory.New(ctx, job, opts)
			if err != nil {
				return nil, err
			}
			// Signing in first fails a tenant without consent at once
			// (recorded for `worker tenants`); the roles of a sign-in
			// that succeeds are recorded once the run has read what the
			// job needs (signedIn.RecordConsent).
			g, err := tenants.SignIn(ctx, c, st, job, store.ConsentByRun, log)
			if err != nil {
				return nil, err
			}
			return signedIn{Client: c, grant: g}, nil
		},
		Logger: log,
	}
}

// signedIn is a job's Graph client after its sign-in, which the run
// records against the permissions the job needs (esync.ConsentRecorder).
type signedIn struct {
	*directory.Client
	grant *tenants.Grant
}

var _ esync.ConsentRecorder = signedIn{}

func (c signedIn) RecordConsent(ctx context.Context, required []string) {
	c.grant.Record(ctx, required)
}

// runtimeDeps are the long-lived dependencies a Runner may use.
type runtimeDeps struct {
	Store   *store.Store
	Metrics *metrics.Metrics
	Log     *slog.Logger
}

func newRunCommand() *cobra.Command {
	var stopTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run every job on its schedule until stopped (the systemd service)",
		Long: `run starts the scheduler: each job runs at its cron schedule, a job never
overlaps itself, and several workers may share one database (each scheduled
occurrence runs once). It starts only when the configuration is valid and
the database schema is current, then tells systemd it is ready.

Signals: SIGTERM/SIGINT stop scheduling and interrupt the run in progress
(its in-flight batch finishes and it is recorded "interrupted"); SIGHUP
reloads the configuration (a broken file is refused and the running jobs
are kept).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDaemon(cmd, stopTimeout)
		},
	}
	cmd.Flags().DurationVar(&stopTimeout, "stop-timeout", 45*time.Second,
		"on SIGTERM, how long the run in progress gets to wind down; keep it below the unit's TimeoutStopSec")
	return cmd
}

func runDaemon(cmd *cobra.Command, stopTimeout time.Duration) error {
	// From the start: SIGHUP's default action would kill a worker still
	// starting up; a reload asked for then is served once ready.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	// Everything that can be wrong is checked before READY=1: systemd then
	// reports a failed start instead of a service that fails at 02:00.
	// daemon.Run owns the store from here.
	var log *slog.Logger
	ctx, cfg, st, err := configStore(cmd, func(cfg *config.Config) {
		log = daemonLogger(cfg.Log, cmd.ErrOrStderr())
		slog.SetDefault(log)
		logConfigWarnings(log, cfg)
	})
	if err != nil {
		return err
	}
	err = daemon.Run(ctx, daemon.Options{
		Config: cfg,
		Reload: func() (*config.Config, error) {
			cfg, err := loadConfig(cmd)
			if err == nil {
				logConfigWarnings(log, cfg)
			}
			return cfg, err
		},
		Store: st,
		NewRunner: func(ctx context.Context, m *metrics.Metrics) (jobs.Runner, error) {
			return newJobRunner(ctx, runtimeDeps{Store: st, Metrics: m, Log: log})
		},
		Log:         log,
		StopTimeout: stopTimeout,
		Hangup:      hup,
	})
	var ce *daemon.ConfigError
	if errors.As(err, &ce) {
		return withExit(exitConfig, err)
	}
	return withExit(exitFail, err)
}

// daemonLogger follows config log: JSON for journald and files, text on a
// terminal ("auto" decides by w, normally stderr).
func daemonLogger(c config.Log, w io.Writer) *slog.Logger {
	return newLogger(c, w, !isTerminal(w))
}

// commandLogger is the logger of the commands people run (sync, plan,
// audit): text on stderr whether it is a terminal or a pipe, so that
// `worker plan | less` reads like the terminal; JSON only with
// log.format: json.
func commandLogger(c config.Log, w io.Writer) *slog.Logger {
	return newLogger(c, w, false)
}

// newLogger builds the handler log.format names; autoJSON is what "auto"
// (and unset) means for the caller.
func newLogger(c config.Log, w io.Writer, autoJSON bool) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	format := c.Format
	if format == "" || format == "auto" {
		format = "text"
		if autoJSON {
			format = "json"
		}
	}
	if format == "text" {
		opts.ReplaceAttr = textMaps
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// textMaps renders a map attribute as sorted k=v pairs ("create=3
// update=5") in text logs, which would otherwise print Go's map[...].
func textMaps(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() != slog.KindAny {
		return a
	}
	v := reflect.ValueOf(a.Value.Any())
	if v.Kind() != reflect.Map {
		return a
	}
	parts := make([]string, 0, v.Len())
	for it := v.MapRange(); it.Next(); {
		parts = append(parts, fmt.Sprintf("%v=%v", it.Key(), it.Value()))
	}
	slices.Sort(parts)
	return slog.String(a.Key, strings.Join(parts, " "))
}
