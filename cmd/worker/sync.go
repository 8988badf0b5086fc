package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	gosync "sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/jobs"
	"github.com/entraprov/entraprov/internal/store"
	esync "github.com/entraprov/entraprov/internal/sync"
)

func init() { addCommand(newSyncCommand) }

func newSyncCommand() *cobra.Command {
	var jobName string
	var allowDeletes, retryStuck bool
	var approve int64
	var tf traceFlags
	cmd := &cobra.Command{
		Use:   "sync [--job NAME]",
		Short: "Run one job now and apply its changes to the directory",
		Long: `sync runs one job once, now, exactly as the schedule would (recorded with
trigger "manual"): refresh the directory mirror, plan every user, check the
change budget, apply, and record the run and its operations.

A run whose plan is over the job's change_budget (disables, deletes, group
removals, attribute clears, UPN renames, manager removals) is blocked: its
plan is stored and nothing is written. Review it with ` + "`worker show RUN`" + `,
then approve it with --approve RUN: the new run applies it only if its own
plan holds no destructive change the reviewed one did not (otherwise it is
blocked in turn, listing what changed). While applying, a run never sends
more of a kind than its bound allows, whatever the source returns then.
--allow-deletes lifts the disable and delete bounds without a reviewed plan;
it is kept for scripts, logged as a warning and recorded on the run.

A user whose write failed the same way several runs in a row is backed off
(jobs[].user_backoff): runs record it as skipped until its next attempt, or
until its source row changes. ` + "`worker show --stuck`" + ` lists them; --retry-stuck
tries them all in this run.

Exit status: 0 when the run succeeded or was partial (some users failed:
see ` + "`worker show RUN --status failed`" + `), 1 when it failed, was blocked or
interrupted, 2 on bad flags, 78 on a configuration error.` + onDemandHelp + ` Its exit
status is 1 when the user's change failed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if tf.user != "" {
				if approve != 0 || allowDeletes {
					return withExit(exitUsage, fmt.Errorf("--user: a one-user run is never held by the change budget; drop --approve and --allow-deletes"))
				}
				return runUser(cmd, jobName, tf, esync.ModeApply)
			}
			if tf.asJSON {
				return withExit(exitUsage, fmt.Errorf("--json: only with --user (see worker show RUN --json for a run)"))
			}
			if approve < 0 {
				return withExit(exitUsage, fmt.Errorf("--approve %d: want the id of a blocked run (worker history --job %s)", approve, jobName))
			}
			run, err := runOnce(cmd, jobName, esync.RunOptions{Trigger: esync.TriggerManual, Mode: esync.ModeApply,
				AllowDeletes: allowDeletes, Approve: approve, RetryStuck: retryStuck}, nil)
			if err != nil {
				return err
			}
			// The summary only: the run's operations are `worker show`'s
			// (printRun here ended with a misleading "no operations").
			out := cmd.OutOrStdout()
			if err := printRunHeader(out, run, time.Now()); err != nil {
				return err
			}
			if run.Counts.ByStatus[store.OpFailed] > 0 {
				fmt.Fprintf(out, "\nfailed operations: worker show %d --status failed\n", run.ID)
			}
			switch run.Status {
			case store.RunSucceeded, store.RunPartial:
				return nil
			case store.RunBlocked:
				return withExit(exitFail, fmt.Errorf("run %d blocked: %s", run.ID, run.ErrorSummary))
			default:
				return withExit(exitFail, fmt.Errorf("run %d %s: %s", run.ID, run.Status, run.ErrorSummary))
			}
		},
	}
	cmd.Flags().StringVar(&jobName, "job", "", "the job to run (its name in the configuration; optional when it has one job)")
	cmd.Flags().Int64Var(&approve, "approve", 0,
		"apply the reviewed plan of this blocked run of the job (refused if the plan has grown since)")
	cmd.Flags().BoolVar(&allowDeletes, "allow-deletes", false,
		"lift the change budget's disable and delete bounds for this run, unreviewed (logged, recorded; prefer --approve)")
	cmd.Flags().BoolVar(&retryStuck, "retry-stuck", false,
		"try the users backed off after repeated identical failures now, instead of at their next attempt")
	tf.register(cmd)
	return cmd
}

// runOnce loads the configuration, opens the database and runs one job
// through the engine, showing progress on stderr; after (may be nil) reads
// more while the database is open. The returned run is final; err is set
// only when no run could be made (configuration, database, another worker
// holding the job), not for a run that failed.
func runOnce(cmd *cobra.Command, jobName string, opts esync.RunOptions,
	after func(context.Context, *store.Store, store.Run) error) (store.Run, error) {
	stderr := cmd.ErrOrStderr()
	var log *slog.Logger
	ctx, cfg, st, err := configStore(cmd, func(cfg *config.Config) {
		log = commandLogger(cfg.Log, stderr)
		logConfigWarnings(log, cfg)
	})
	if err != nil {
		return store.Run{}, err
	}
	defer st.Close()
	job, err := findConfigJob(ctx, cfg, st, jobName)
	if err != nil {
		return store.Run{}, err
	}

	if opts.Approve != 0 {
		// A wrong run id is the operator's typo: say so without recording a
		// failed run (which would count towards quarantine).
		ar, err := st.GetRun(ctx, opts.Approve)
		if err == nil {
			err = esync.CheckApprovable(ar, job.Name)
		}
		if err != nil {
			return store.Run{}, withExit(exitUsage, fmt.Errorf("--approve: %w", err))
		}
	}
	eng := newEngine(st, nil, log)
	// A one-user run neither lifts the job's quarantine nor counts
	// towards it: it says nothing about the job's health.
	judged := opts.Mode == esync.ModeApply && opts.User == ""
	if judged {
		note, err := releaseForManualRun(ctx, st, job.Name)
		if err != nil {
			return store.Run{}, withExit(exitFail, err)
		}
		if note != "" {
			fmt.Fprintln(stderr, note)
		}
	}
	p := newProgress(stderr, log, job.Name)
	eng.Progress = p.update
	run, err := eng.Run(ctx, job, opts)
	p.done()
	if run.ID == 0 && run.Status == "" {
		return run, withExit(exitFail, err)
	}
	if judged && run.Status != store.RunSkipped {
		d, qerr := jobs.AfterManualRun(context.WithoutCancel(ctx), st, jobs.PolicyFrom(cfg.Quarantine), job, run)
		if qerr != nil {
			log.Warn("quarantine check failed", "err", qerr)
		} else if d.Until != nil {
			fmt.Fprintf(stderr, "job %s is quarantined: %s; scheduled runs wait until %s\n", job.Name, d.Reason, fmtTime(*d.Until))
		}
	}
	if run.Status == store.RunSkipped {
		return run, withExit(exitFail, fmt.Errorf("job %s: %s; nothing was done", job.Name, run.ErrorSummary))
	}
	if after != nil {
		if err := after(ctx, st, run); err != nil {
			return run, withExit(exitFail, err)
		}
	}
	return run, nil
}

// findJob returns the named job, or the only one when name is empty and
// the configuration has one job. An unknown or missing name is a usage
// error (2) that lists the configured jobs.
func findJob(cfg *config.Config, name string) (config.Job, error) {
	var names []string
	for _, j := range cfg.Jobs {
		if j.Name == name {
			return j, nil
		}
		names = append(names, j.Name)
	}
	if name == "" {
		if len(cfg.Jobs) == 1 {
			return cfg.Jobs[0], nil
		}
		return config.Job{}, withExit(exitUsage, fmt.Errorf("--job is required: the configuration has %d jobs (%s)", len(names), strings.Join(names, ", ")))
	}
	for _, j := range cfg.Jobs {
		if j.Template == name {
			// The name an ISV's operator knows from the file is the
			// template's; its jobs are its tenants'.
			return config.Job{}, withExit(exitUsage, fmt.Errorf("%q is a template, not a job: name one of its tenants' jobs, %s@<name> (jobs: %s)", name, name, strings.Join(names, ", ")))
		}
	}
	return config.Job{}, withExit(exitUsage, fmt.Errorf("no job %q in the configuration (jobs: %s)", name, strings.Join(names, ", ")))
}

// progress shows how a run advances: a rewritten line on a terminal, a log
// line every few seconds otherwise (journald, files, CI).
type progress struct {
	w      io.Writer
	log    *slog.Logger
	job    string
	tty    bool
	every  time.Duration
	mu     gosync.Mutex
	last   time.Time
	shown  bool
	latest esync.Progress
}

func newProgress(w io.Writer, log *slog.Logger, job string) *progress {
	return &progress{w: w, log: log, job: job, tty: isTerminal(w) && os.Getenv("TERM") != "dumb", every: 5 * time.Second}
}

func (p *progress) update(pr esync.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.latest = pr
	now := time.Now()
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", progressLine(pr))
		p.shown = true
		return
	}
	if now.Sub(p.last) < p.every && !(pr.Final && pr.Done == pr.Planned) {
		return
	}
	p.last = now
	rate, eta := rateETA(pr)
	p.log.Info("progress", "job", p.job, "run_id", pr.RunID, "pass", pr.Pass, "done", pr.Done, "total", pr.Planned,
		"total_known", pr.Final, "rate_per_s", fmt.Sprintf("%.1f", rate), "eta", eta, "failed", pr.Failed, "rows", pr.Rows)
}

func (p *progress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && p.shown {
		fmt.Fprintln(p.w)
	}
}

// progressLine is "pass 1: 1200/5000 ops  34.5/s  ETA 1m52s  3 failed".
func progressLine(pr esync.Progress) string {
	total := fmt.Sprintf("%d", pr.Planned)
	if !pr.Final {
		total += "+" // still planning: more may come
	}
	rate, eta := rateETA(pr)
	return fmt.Sprintf("pass %d: %d/%s ops  %.1f/s  ETA %s  %d failed  (%d users read)",
		pr.Pass, pr.Done, total, rate, eta, pr.Failed, pr.Rows)
}

func rateETA(pr esync.Progress) (float64, string) {
	secs := pr.Elapsed.Seconds()
	if secs <= 0 || pr.Done == 0 {
		return 0, "?"
	}
	rate := float64(pr.Done) / secs
	if !pr.Final {
		return rate, "?"
	}
	left := time.Duration(float64(pr.Planned-pr.Done) / rate * float64(time.Second))
	return rate, left.Round(time.Second).String()
}
