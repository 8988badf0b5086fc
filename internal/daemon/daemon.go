package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"reflect"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	sdd "github.com/coreos/go-systemd/v22/daemon"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/jobs"
	"github.com/entraprov/entraprov/internal/metrics"
	"github.com/entraprov/entraprov/internal/store"
	"github.com/entraprov/entraprov/internal/tenants"
	"github.com/entraprov/entraprov/internal/webhook"
)

// Options is what the daemon runs with; every field but Hangup is required.
type Options struct {
	// Config is the loaded and validated configuration at start.
	Config *config.Config
	// Reload loads the configuration again for a reload (and logs its
	// warnings); an error refuses the reload.
	Reload func() (*config.Config, error)
	// Store is open with a current schema. Run closes it, except when runs
	// did not wind down at stop (pgxpool.Close would wait for them).
	Store *store.Store
	// NewRunner builds what the scheduler calls for each occurrence,
	// reporting to m.
	NewRunner func(ctx context.Context, m *metrics.Metrics) (jobs.Runner, error)
	Log       *slog.Logger
	// StopTimeout is how long the run in progress gets to wind down once
	// ctx ends.
	StopTimeout time.Duration
	// Hangup delivers SIGHUP: each receive reloads the configuration.
	Hangup <-chan os.Signal

	// credentialTick, when set (tests), replaces the credentialRefresh
	// ticker: each receive reads every credential's expiry again.
	credentialTick <-chan time.Time
}

// ConfigError is a start-up failure the configuration must fix (a job the
// scheduler refuses), as opposed to one of the environment.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// workerd is the running daemon: its configuration, scheduler and the
// latest result of each job (for the systemd status line).
type workerd struct {
	reloadConfig func() (*config.Config, error)
	log          *slog.Logger
	st           *store.Store
	m            *metrics.Metrics
	hooks        *hookState
	sched        *jobs.Scheduler
	creds        *credentialWatch
	// credJobs hands the credential loop each list of jobs apply installs
	// (the latest only: one slot, replaced by Run's loop, its one sender).
	credJobs chan []config.Job

	// startMaxJobs is max_concurrent_jobs at start: the database pool was
	// sized for it, so a reload may lower the cap but not raise it beyond.
	startMaxJobs int

	// Owned by Run's loop (start, SIGHUP, tenants refresh), not by mu:
	// jobs are what the scheduler runs, cfg's jobs with its templates
	// expanded over their tenants relations (internal/tenants);
	// tenantProblems are the tenants rows last refused, so a refresh logs
	// a refused row once, not every minute.
	jobs           []config.Job
	tenantProblems string

	mu      sync.Mutex
	cfg     *config.Config
	last    map[string]jobs.Result
	running map[string]time.Time
}

// Run starts the scheduler, tells systemd the worker is ready, and serves
// until ctx ends; then it stops scheduling, gives the run in progress
// o.StopTimeout and returns. An error means the worker did not start.
func Run(ctx context.Context, o Options) error {
	cfg, st, log := o.Config, o.Store, o.Log
	if n, err := st.MarkInterrupted(ctx, ""); err != nil {
		log.Warn("could not close runs left by a stopped worker", "err", err)
	} else if n > 0 {
		log.Warn("closed runs left running by a worker that stopped without finishing them", "runs", n, "status", store.RunInterrupted)
	}

	m := metrics.New()
	runner, err := o.NewRunner(ctx, m)
	if err != nil {
		st.Close()
		return err
	}

	d := &workerd{reloadConfig: o.Reload, log: log, st: st, m: m, cfg: cfg, startMaxJobs: cfg.MaxConcurrentJobs,
		hooks:    &hookState{unwell: map[string]bool{}, sender: &webhook.Sender{Log: log}},
		credJobs: make(chan []config.Job, 1),
		last:     map[string]jobs.Result{}, running: map[string]time.Time{}}
	// Template jobs become one job per tenants row before anything reads
	// the jobs: a tenants relation that cannot be read stops the start.
	jobList, err := d.expand(ctx, cfg)
	if err != nil {
		st.Close()
		var ve *config.ValidationError
		if errors.As(err, &ve) {
			return &ConfigError{err}
		}
		return err
	}
	d.jobs = jobList
	publishQuarantine(ctx, m, st, jobList)
	d.creds = newCredentialWatch(m, log, jobList)
	d.creds.certificates(ctx, jobList)
	d.sched = jobs.New(jobs.Options{
		Runner: runner, History: st, Logger: log,
		OnStart: d.onStart, OnResult: d.onResult,
		// The policy is read at start; a reload keeps it.
		Quarantine: st, Policy: jobs.PolicyFrom(cfg.Quarantine),
		MaxConcurrent: cfg.MaxConcurrentJobs, OnQueued: m.SetQueued,
	})

	msrv, err := d.serveMetrics(cfg.Metrics.Listen)
	if err != nil {
		st.Close()
		return err
	}

	if err := d.sched.Start(ctx, jobList); err != nil {
		if msrv != nil {
			_ = msrv.Shutdown(context.Background())
		}
		st.Close()
		return &ConfigError{err}
	}
	d.publishNext()

	d.notify(sdd.SdNotifyReady, "STATUS="+d.status())
	log.Info("worker ready", "jobs", len(jobList), "pid", os.Getpid())

	credTick := o.credentialTick
	if credTick == nil {
		t := time.NewTicker(credentialRefresh)
		defer t.Stop()
		credTick = t.C
	}
	stopBackground := d.background(ctx, runner, cfg, jobList, credTick)

	// Tenants rows change without a reload: a customer added is an INSERT.
	refresh := time.NewTicker(refreshEvery(cfg))
	defer refresh.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-o.Hangup:
			if r := d.reload(ctx); r > 0 {
				refresh.Reset(r)
			}
		case <-refresh.C:
			d.refreshTenants(ctx)
		}
	}

	stopErr := d.stop(o.StopTimeout)
	stopBackground()
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

// background starts what runs beside the scheduler: the systemd watchdog,
// the credential loop (the client secrets' end dates at start, on reload,
// and with the certificates every credTick), and the retention loop (its
// retention read at start; a reload keeps it). The returned func stops them
// and waits until each has returned.
func (d *workerd) background(ctx context.Context, runner jobs.Runner, cfg *config.Config, jobList []config.Job, credTick <-chan time.Time) (stop func()) {
	bctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		d.watchdog(bctx)
	}()
	go func() {
		defer wg.Done()
		r, _ := runner.(secretExpiryReader)
		d.creds.loop(bctx, r, jobList, credTick, d.credJobs)
	}()
	go func() {
		defer wg.Done()
		retentionLoop(bctx, d.st, cfg.History.Retention.Duration, 10*time.Minute, 24*time.Hour, d.log)
	}()
	return func() {
		cancel()
		wg.Wait()
	}
}

// serveMetrics serves /metrics and /healthz on addr ("": not at all).
func (d *workerd) serveMetrics(addr string) (*metrics.Server, error) {
	if addr == "" {
		return nil, nil
	}
	st, log := d.st, d.log
	msrv, err := metrics.Listen(addr, d.m, map[string]metrics.Check{
		"scheduler": d.sched.Alive,
		"database":  func(ctx context.Context) error { return st.Pool().Ping(ctx) },
	}, log)
	if err != nil {
		if errors.Is(err, syscall.EPERM) {
			// What the shipped unit's SocketBindDeny=any answers for
			// any other port.
			err = fmt.Errorf("%w; under systemd, the unit must allow this port: SocketBindAllow=tcp:PORT (the shipped unit allows tcp:9464, the default metrics.listen)", err)
		}
		return nil, err
	}
	msrv.Serve()
	log.Info("serving /metrics and /healthz", "addr", msrv.Addr())
	if host, _, err := net.SplitHostPort(msrv.Addr()); err == nil {
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			log.Warn("metrics are served beyond this machine: they reveal job names and volumes; prefer a loopback address or a firewall", "addr", msrv.Addr())
		}
	}
	return msrv, nil
}

// stop stops scheduling and waits up to timeout for the run in progress.
// An error means runs did not wind down; they are recorded interrupted.
func (d *workerd) stop(timeout time.Duration) error {
	d.notify(sdd.SdNotifyStopping, "STATUS=stopping: "+strings.Join(d.sched.Running(), ", "))
	d.log.Info("stopping", "running", d.sched.Running(), "stop_timeout", timeout)
	stopCtx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	stopErr := d.sched.Stop(stopCtx)
	if stopErr != nil {
		// A run that did not wind down still holds its job lock, so the
		// next start's MarkInterrupted would not see it: record it now.
		d.log.Error("runs did not stop in time; recording them interrupted", "err", stopErr)
		ictx, icancel := context.WithTimeout(context.Background(), 5*time.Second)
		n, err := d.st.InterruptOwnRuns(ictx, fmt.Sprintf("interrupted: the worker stopped and the run did not wind down within %s", timeout))
		icancel()
		if err != nil {
			d.log.Error("could not record interrupted runs", "err", err)
		} else {
			d.log.Warn("runs recorded interrupted", "runs", n)
		}
	}
	return stopErr
}

// publishQuarantine publishes the quarantine state of the configured jobs
// at start (entraprov_job_quarantined); each run's decision updates it.
func publishQuarantine(ctx context.Context, m *metrics.Metrics, st *store.Store, jobList []config.Job) {
	for _, j := range jobList {
		js, err := st.GetJobState(ctx, j.Name)
		if err == nil {
			m.SetQuarantined(j.Name, js.QuarantinedUntil != nil)
		}
	}
}

// expandTimeout bounds one read of the tenants relations.
const expandTimeout = 30 * time.Second

// expand returns cfg's jobs with its templates expanded over their tenants
// relations, logging the rows refused when they changed since last time.
func (d *workerd) expand(ctx context.Context, cfg *config.Config) ([]config.Job, error) {
	if !tenants.HasTemplates(cfg) {
		return cfg.Jobs, nil
	}
	ectx, cancel := context.WithTimeout(ctx, expandTimeout)
	defer cancel()
	exp, err := tenants.Expand(ectx, d.st, cfg)
	if err != nil {
		return nil, err
	}
	problems := exp.Problems()
	if joined := strings.Join(problems, "\n"); joined != d.tenantProblems {
		d.tenantProblems = joined
		for _, p := range problems {
			d.log.Warn("tenants row refused: its tenant does not run until the row is fixed", "problem", p)
		}
	}
	return exp.Jobs, nil
}

// refreshTenants reads the tenants relations again and hands the scheduler
// the jobs they now give (the same path as a reload): a new or enabled row
// is scheduled, a deleted or disabled one stops (a run in progress
// finishes). A relation that cannot be read keeps the running jobs.
func (d *workerd) refreshTenants(ctx context.Context) {
	d.mu.Lock()
	cfg := d.cfg
	d.mu.Unlock()
	if !tenants.HasTemplates(cfg) {
		return
	}
	jobList, err := d.expand(ctx, cfg)
	if err != nil {
		d.log.Error("could not read the tenants; keeping the running jobs", "err", err)
		return
	}
	if reflect.DeepEqual(jobList, d.jobs) {
		return
	}
	d.apply(ctx, jobList)
}

// apply hands the scheduler a new list of jobs; false when it refused it.
func (d *workerd) apply(ctx context.Context, jobList []config.Job) (jobs.Diff, bool) {
	diff, err := d.sched.Reload(ctx, jobList)
	if err != nil {
		d.log.Error("reload refused; keeping the running jobs", "err", err)
		return diff, false
	}
	d.jobs = jobList
	// Before ForgetJob: a secret read still in progress must not publish
	// a removed job's series again.
	d.creds.setJobs(jobList)
	for _, name := range diff.Removed {
		d.m.ForgetJob(name)
	}
	// A reload may point a job at a renewed certificate, or follow a
	// secret just added to the app registration; a new tenant's job needs
	// its series.
	d.creds.certificates(ctx, jobList)
	select {
	case <-d.credJobs: // not read yet: replaced by the newer list
	default:
	}
	d.credJobs <- jobList
	d.publishNext()
	return diff, true
}

// reload re-reads the configuration on SIGHUP, and the tenants relations
// of its templates. A configuration that does not load or validate, or a
// tenants relation that cannot be read, is refused as a whole: the running
// jobs stay. It returns the new tenants refresh interval (0: refused).
func (d *workerd) reload(ctx context.Context) time.Duration {
	d.notify(sdd.SdNotifyReloading, sdd.SdNotifyMonotonicUsec())
	defer func() { d.notify(sdd.SdNotifyReady, "STATUS="+d.status()) }()
	d.log.Info("SIGHUP: reloading the configuration")
	cfg, err := d.reloadConfig()
	if err != nil {
		d.log.Error("reload refused: the new configuration is invalid; keeping the running jobs", "err", err)
		return 0
	}
	jobList, err := d.expand(ctx, cfg)
	if err != nil {
		d.log.Error("reload refused: the tenants of a template job cannot be read; keeping the running jobs", "err", err)
		return 0
	}
	diff, ok := d.apply(ctx, jobList)
	if !ok {
		return 0
	}
	d.mu.Lock()
	old := d.cfg
	d.cfg = cfg
	d.mu.Unlock()
	d.reloadMaxConcurrent(old.MaxConcurrentJobs, cfg.MaxConcurrentJobs)
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
	return refreshEvery(cfg)
}

// refreshEvery is cfg's tenants.refresh; a Config built in code without
// one gets the default (a ticker cannot tick every 0s).
func refreshEvery(cfg *config.Config) time.Duration {
	if r := cfg.Tenants.Refresh.Duration; r > 0 {
		return r
	}
	return config.Default().Tenants.Refresh.Duration
}

// reloadMaxConcurrent applies a reloaded max_concurrent_jobs. Up to the
// value at start it applies at once; above it, only after a restart: the
// database pool was sized at start, and more runs than it serves could all
// wait for a connection another run holds.
func (d *workerd) reloadMaxConcurrent(old, n int) {
	if n == old {
		return
	}
	if n > d.startMaxJobs {
		d.log.Warn("max_concurrent_jobs above its value at start takes effect at the next restart (the database pool is sized at start)",
			"max_concurrent_jobs", n, "applied", d.startMaxJobs)
		n = d.startMaxJobs
	}
	d.sched.SetMaxConcurrent(n)
	d.log.Info("max_concurrent_jobs applied", "max_concurrent_jobs", n)
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
		d.m.ObserveQueueWait(res.Queued)
	default:
		d.m.ObserveQueueWait(res.Queued)
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
		d.m.SetQuarantined(res.Job, res.Quarantine.Until != nil)
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
	if n := d.sched.Queued(); n > 0 {
		parts = append(parts, fmt.Sprintf("%d queued (max_concurrent_jobs)", n))
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
