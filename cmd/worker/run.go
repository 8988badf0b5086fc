package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"reflect"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	sdd "github.com/coreos/go-systemd/v22/daemon"
	"github.com/spf13/cobra"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/jobs"
	"github.com/entraprov/entraprov/internal/metrics"
	"github.com/entraprov/entraprov/internal/store"
	esync "github.com/entraprov/entraprov/internal/sync"
	"github.com/entraprov/entraprov/internal/webhook"
)

func init() { addCommand(newRunCommand) }

// newJobRunner builds what the scheduler calls for each occurrence: the
// reconcile engine adapted to jobs.Runner (tests substitute their own).
var newJobRunner = engineJobRunner

// engineJobRunner wires the reconcile engine for the scheduler.
func engineJobRunner(_ context.Context, rt runtimeDeps) (jobs.Runner, error) {
	return engineRunner{newEngine(rt.Store, rt.Metrics, rt.Log)}, nil
}

// newEngine builds the reconcile engine the way every command runs it: the
// store, and per job a Graph client (reporting live to m when m is set).
func newEngine(st *store.Store, m *metrics.Metrics, log *slog.Logger) *esync.Engine {
	return &esync.Engine{
		Store: st,
		Connect: func(ctx context.Context, job config.Job) (esync.Directory, error) {
			opts := directory.Options{Logger: log, UserAgent: "entraprov/" + version}
			if m != nil {
				opts.Metrics = m.Graph(job.Name)
			}
			return directory.New(ctx, job, opts)
		},
		Logger: log,
	}
}

// engineRunner adapts esync.Engine to jobs.Runner: scheduled runs apply,
// and a run that lost its occurrence to another worker (the engine answers
// "skipped" without recording a row) becomes jobs.ErrTaken.
type engineRunner struct{ e *esync.Engine }

func (r engineRunner) Run(ctx context.Context, job config.Job, occ jobs.Occurrence) (store.Run, error) {
	opts := esync.RunOptions{Trigger: occ.Trigger, Mode: esync.ModeApply}
	if !occ.ScheduledFor.IsZero() {
		at := occ.ScheduledFor
		opts.ScheduledFor = &at
	}
	run, err := r.e.Run(ctx, job, opts)
	if err == nil && run.Status == store.RunSkipped && run.ID == 0 {
		return run, fmt.Errorf("job %s: %s: %w", job.Name, run.ErrorSummary, jobs.ErrTaken)
	}
	return run, err
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

// workerd is the running daemon: its configuration, scheduler and the
// latest result of each job (for the systemd status line).
type workerd struct {
	cmd   *cobra.Command
	log   *slog.Logger
	st    *store.Store
	m     *metrics.Metrics
	qg    quarantineGauge
	hooks *hookState
	sched *jobs.Scheduler

	mu      sync.Mutex
	cfg     *config.Config
	last    map[string]jobs.Result
	running map[string]time.Time
}

func runDaemon(cmd *cobra.Command, stopTimeout time.Duration) error {
	ctx := cmd.Context()
	// From the start: SIGHUP's default action would kill a worker still
	// starting up; a reload asked for then is served once ready.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	cfg, err := loadConfig(cmd)
	if err != nil {
		return err
	}
	log := daemonLogger(cfg.Log, cmd.ErrOrStderr())
	slog.SetDefault(log)
	logConfigWarnings(log, cfg)

	// Everything that can be wrong is checked before READY=1: systemd then
	// reports a failed start instead of a service that fails at 02:00.
	dsn, err := cfg.Database.ConnString(ctx)
	if err != nil {
		return withExit(exitConfig, err)
	}
	st, err := store.Open(ctx, dsn, store.WithMaxConns(cfg.Database.MaxConns))
	if err != nil {
		return withExit(exitFail, err)
	}
	if err := st.CheckSchema(ctx); err != nil {
		// The store's message names `worker migrate up` for pending migrations.
		st.Close()
		return withExit(exitFail, err)
	}
	if n, err := st.MarkInterrupted(ctx, ""); err != nil {
		log.Warn("could not close runs left by a stopped worker", "err", err)
	} else if n > 0 {
		log.Warn("closed runs left running by a worker that stopped without finishing them", "runs", n, "status", store.RunInterrupted)
	}

	m := metrics.New()
	runner, err := newJobRunner(ctx, runtimeDeps{Store: st, Metrics: m, Log: log})
	if err != nil {
		st.Close()
		return withExit(exitFail, err)
	}

	d := &workerd{cmd: cmd, log: log, st: st, m: m, cfg: cfg, qg: newQuarantineGauge(m),
		hooks: &hookState{unwell: map[string]bool{}, sender: &webhook.Sender{Log: log}},
		last:  map[string]jobs.Result{}, running: map[string]time.Time{}}
	d.qg.init(ctx, st, cfg)
	d.sched = jobs.New(jobs.Options{
		Runner: runner, History: st, Logger: log,
		OnStart: d.onStart, OnResult: d.onResult,
		// The policy is read at start; a reload keeps it.
		Quarantine: st, Policy: jobs.PolicyFrom(cfg.Quarantine),
	})

	var msrv *metrics.Server
	if addr := cfg.Metrics.Listen; addr != "" {
		msrv, err = metrics.Listen(addr, m, map[string]metrics.Check{
			"scheduler": d.sched.Alive,
			"database":  func(ctx context.Context) error { return st.Pool().Ping(ctx) },
		}, log)
		if err != nil {
			st.Close()
			if errors.Is(err, syscall.EPERM) {
				// What the shipped unit's SocketBindDeny=any answers for
				// any other port.
				err = fmt.Errorf("%w; under systemd, the unit must allow this port: SocketBindAllow=tcp:PORT (the shipped unit allows tcp:9464, the default metrics.listen)", err)
			}
			return withExit(exitFail, err)
		}
		msrv.Serve()
		log.Info("serving /metrics and /healthz", "addr", msrv.Addr())
		if host, _, err := net.SplitHostPort(msrv.Addr()); err == nil {
			if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
				log.Warn("metrics are served beyond this machine: they reveal job names and volumes; prefer a loopback address or a firewall", "addr", msrv.Addr())
			}
		}
	}

	if err := d.sched.Start(ctx, cfg.Jobs); err != nil {
		if msrv != nil {
			_ = msrv.Shutdown(context.Background())
		}
		st.Close()
		return withExit(exitConfig, err)
	}
	d.publishNext()

	d.notify(sdd.SdNotifyReady, "STATUS="+d.status())
	log.Info("worker ready", "jobs", len(cfg.Jobs), "pid", os.Getpid())

	wdCtx, stopWatchdog := context.WithCancel(context.WithoutCancel(ctx))
	wdDone := make(chan struct{})
	go func() {
		defer close(wdDone)
		d.watchdog(wdCtx)
	}()
	pruneDone := make(chan struct{})
	go func() {
		defer close(pruneDone)
		// Read at start; a reload keeps it.
		retentionLoop(wdCtx, st, cfg.History.Retention.Duration, 10*time.Minute, 24*time.Hour, log)
	}()

loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-hup:
			d.reload(ctx)
		}
	}

	d.notify(sdd.SdNotifyStopping, "STATUS=stopping: "+strings.Join(d.sched.Running(), ", "))
	log.Info("stopping", "running", d.sched.Running(), "stop_timeout", stopTimeout)
	stopCtx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	stopErr := d.sched.Stop(stopCtx)
	if stopErr != nil {
		// A run that did not wind down still holds its job lock, so the
		// next start's MarkInterrupted would not see it: record it now.
		log.Error("runs did not stop in time; recording them interrupted", "err", stopErr)
		ictx, icancel := context.WithTimeout(context.Background(), 5*time.Second)
		n, err := st.InterruptOwnRuns(ictx, fmt.Sprintf("interrupted: the worker stopped and the run did not wind down within %s", stopTimeout))
		icancel()
		if err != nil {
			log.Error("could not record interrupted runs", "err", err)
		} else {
			log.Warn("runs recorded interrupted", "runs", n)
		}
	}
	stopWatchdog()
	<-wdDone
	<-pruneDone
	if msrv != nil {
		sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = msrv.Shutdown(sctx)
		scancel()
	}
	if stopErr == nil {
		// pgxpool.Close waits for every connection: only when no run is stuck.
		st.Close()
	}
	log.Info("worker stopped")
	return nil
}

// reload re-reads the configuration on SIGHUP. A configuration that does
// not load or validate is refused as a whole: the running jobs stay.
func (d *workerd) reload(ctx context.Context) {
	d.notify(sdd.SdNotifyReloading, sdd.SdNotifyMonotonicUsec())
	defer func() { d.notify(sdd.SdNotifyReady, "STATUS="+d.status()) }()
	d.log.Info("SIGHUP: reloading the configuration")
	cfg, err := loadConfig(d.cmd)
	if err != nil {
		d.log.Error("reload refused: the new configuration is invalid; keeping the running jobs", "err", err)
		return
	}
	logConfigWarnings(d.log, cfg)
	diff, err := d.sched.Reload(ctx, cfg.Jobs)
	if err != nil {
		d.log.Error("reload refused; keeping the running jobs", "err", err)
		return
	}
	d.mu.Lock()
	old := d.cfg
	d.cfg = cfg
	d.mu.Unlock()
	for _, name := range diff.Removed {
		d.m.ForgetJob(name)
	}
	d.publishNext()
	var restart []string
	if !reflect.DeepEqual(old.Database, cfg.Database) {
		restart = append(restart, "database")
	}
	if old.Metrics != cfg.Metrics {
		restart = append(restart, "metrics")
	}
	if old.Log != cfg.Log {
		restart = append(restart, "log")
	}
	if len(restart) > 0 {
		d.log.Warn("these settings changed and take effect at the next restart", "sections", restart)
	}
	if diff.Empty() {
		d.log.Info("reload: jobs unchanged", "jobs", diff.Unchanged)
	}
}

func (d *workerd) onStart(job string, occ jobs.Occurrence) {
	d.m.SetRunning(job, true)
	d.mu.Lock()
	d.running[job] = time.Now()
	d.mu.Unlock()
	d.notify("STATUS=" + d.status())
}

func (d *workerd) onResult(res jobs.Result) {
	run := res.Run
	switch {
	case res.Skipped:
		d.m.ObserveSkipped(res.Job)
	case errors.Is(res.Err, jobs.ErrTaken):
		// Another worker ran it; it counts there.
	default:
		if run.Job == "" {
			run.Job = res.Job
		}
		if run.Status == "" || run.Status == store.RunRunning {
			// The runner failed before or without finishing its row.
			run.Status = store.RunFailed
		}
		d.m.ObserveRun(run)
	}
	d.m.SetNextRun(res.Job, res.Next)
	if res.Quarantine != nil {
		d.qg.set(res.Job, res.Quarantine.Until != nil)
	}
	d.sendWebhook(res)
	d.mu.Lock()
	if !res.Skipped {
		d.m.SetRunning(res.Job, false)
		delete(d.running, res.Job)
	}
	if !errors.Is(res.Err, jobs.ErrTaken) {
		res.Run = run
		d.last[res.Job] = res
	}
	d.mu.Unlock()
	d.notify("STATUS=" + d.status())
}

func (d *workerd) publishNext() {
	for _, j := range d.sched.Status() {
		d.m.SetNextRun(j.Name, j.Next)
	}
}

// status is the one-line STATUS= shown by `systemctl status`: what runs,
// what is next, and the last result.
func (d *workerd) status() string {
	var parts []string
	d.mu.Lock()
	var running []string
	for job := range d.running {
		running = append(running, job)
	}
	var last *jobs.Result
	for _, r := range d.last {
		if last == nil || finishedAt(r).After(finishedAt(*last)) {
			r := r
			last = &r
		}
	}
	d.mu.Unlock()
	sort.Strings(running)
	if len(running) > 0 {
		parts = append(parts, "running "+strings.Join(running, ", "))
	}
	if st := d.sched.Status(); len(st) > 0 {
		parts = append(parts, fmt.Sprintf("next %s at %s", st[0].Name, st[0].Next.Format("2006-01-02 15:04:05 MST")))
	}
	if last != nil {
		s := fmt.Sprintf("last %s", last.Job)
		if last.Run.ID != 0 {
			s += fmt.Sprintf(" run %d", last.Run.ID)
		}
		s += " " + string(last.Run.Status)
		if last.Err != nil && last.Run.Status == store.RunFailed && last.Run.ErrorSummary == "" {
			s += " (" + truncate(last.Err.Error(), 80) + ")"
		}
		parts = append(parts, s+" at "+finishedAt(*last).Format("15:04:05"))
	}
	if len(parts) == 0 {
		return "idle: no jobs configured"
	}
	return strings.Join(parts, "; ")
}

func finishedAt(r jobs.Result) time.Time {
	if r.Run.FinishedAt != nil {
		return *r.Run.FinishedAt
	}
	return r.Occurrence.ScheduledFor
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// watchdog pings systemd at half of WatchdogSec while the scheduler loop
// answers, so a wedged worker is restarted; during shutdown it keeps
// pinging (TimeoutStopSec bounds the stop, not the watchdog).
func (d *workerd) watchdog(ctx context.Context) {
	interval, err := sdd.SdWatchdogEnabled(false)
	if err != nil {
		d.log.Warn("watchdog settings unreadable; not pinging", "err", err)
		return
	}
	if interval <= 0 {
		return
	}
	tick := time.NewTicker(interval / 2)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		actx, cancel := context.WithTimeout(ctx, interval/4)
		err := d.sched.Alive(actx)
		cancel()
		if err != nil && !errors.Is(err, jobs.ErrStopping) {
			d.log.Error("scheduler not answering; withholding the watchdog ping", "err", err)
			continue
		}
		d.notify(sdd.SdNotifyWatchdog)
	}
}

// notify sends sd_notify states (no-op outside systemd).
func (d *workerd) notify(states ...string) {
	var b []string
	for _, s := range states {
		if s = strings.TrimRight(s, "\n"); s != "" {
			b = append(b, s)
		}
	}
	if _, err := sdd.SdNotify(false, strings.Join(b, "\n")); err != nil {
		d.log.Debug("sd_notify failed", "err", err)
	}
}

// daemonLogger follows config log: JSON for journald and files, text on a
// terminal ("auto" decides by w, normally stderr).
func daemonLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	format := c.Format
	if format == "" || format == "auto" {
		format = "json"
		if isTerminal(w) {
			format = "text"
		}
	}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
