package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/store"
)

func init() {
	addCommand(newHistoryCommand)
	addCommand(newShowCommand)
}

func newHistoryCommand() *cobra.Command {
	var (
		job    string
		limit  int
		asJSON bool
		since  string
		format string
	)
	c := &cobra.Command{
		Use:   "history",
		Short: "List the last runs, newest first",
		Long: "Lists the last runs recorded in entraprov.sync_runs (the same as\n" +
			"SELECT * FROM entraprov.run_summary). `worker show RUN` lists a run's operations.\n\n" +
			"--since 7d lists every run started in the last 7 days (--limit still caps it when given);\n" +
			"--format csv|jsonl writes one record per run for auditors and SIEM ingestion: columns\n" +
			strings.Join(runExportColumns, ", ") + ".",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit <= 0 {
				return withExit(exitUsage, fmt.Errorf("--limit must be positive, got %d", limit))
			}
			if err := checkFormat(format, asJSON); err != nil {
				return err
			}
			var from time.Time
			if since != "" {
				age, err := config.ParseDuration(since)
				if err != nil || age <= 0 {
					return withExit(exitUsage, fmt.Errorf("--since %q: want a positive duration such as 24h or 7d", since))
				}
				from = time.Now().Add(-age)
			}
			return withCurrentStore(cmd, func(ctx context.Context, st *store.Store) error {
				if err := checkJobName(cmd, ctx, st, job); err != nil {
					return err
				}
				var runs []store.Run
				var err error
				if since != "" {
					n := limit
					if !cmd.Flags().Changed("limit") {
						n = 0 // the whole window
					}
					runs, err = st.ListRunsSince(ctx, job, from, n)
				} else {
					runs, err = st.ListRuns(ctx, job, limit)
				}
				if err != nil {
					return withExit(exitFail, err)
				}
				// A quarantined job comes first; on stderr with --json so
				// the JSON stays parseable.
				warn, err := quarantineLines(ctx, st, job)
				if err != nil {
					return withExit(exitFail, err)
				}
				qw := cmd.OutOrStdout()
				if asJSON || format != formatTable {
					qw = cmd.ErrOrStderr()
				}
				for _, l := range warn {
					fmt.Fprintln(qw, l)
				}
				if format != formatTable {
					return exportRuns(cmd.OutOrStdout(), format, runs)
				}
				return printHistory(cmd.OutOrStdout(), runs, job, asJSON, time.Now())
			})
		},
	}
	c.Flags().StringVar(&job, "job", "", "only runs of this job")
	c.Flags().IntVar(&limit, "limit", 20, "number of runs to list")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	c.Flags().StringVar(&since, "since", "", "only runs started within this long ago (e.g. 24h, 7d); all of them unless --limit is given")
	c.Flags().StringVar(&format, "format", formatTable, "output format: table, csv or jsonl (one run a record)")
	c.AddCommand(newPruneCommand())
	return c
}

func newShowCommand() *cobra.Command {
	var (
		status string
		asJSON bool
		stuck  bool
		job    string
		nRuns  int
		format string
	)
	c := &cobra.Command{
		Use:   "show RUN_ID | show --stuck [--job X] [--runs N]",
		Short: "Show one run and its per-user operations",
		Long: "Prints the run's header (status, counts, Graph traffic, error) and its operations\n" +
			"in order: user, action, status, HTTP status, Graph error code and message, request id.\n" +
			"For one user's history across runs: SELECT * FROM entraprov.user_history WHERE external_id = '…'.\n\n" +
			"With --stuck, lists instead the users whose operations failed with the same HTTP status and\n" +
			"Graph error code in each of the job's last N apply runs (--runs, default 3): the last failure,\n" +
			"how many runs in a row it failed, since when, and the request id to quote to Microsoft.\n" +
			"A user the job backs off (jobs[].user_backoff) is listed once it failed N times in a row\n" +
			"the same way, with its next attempt; `worker sync --job X --retry-stuck` tries it now.\n\n" +
			"--format csv|jsonl writes one record per operation (the run's id, job, tenant and mode on each)\n" +
			"for auditors and SIEM ingestion: columns " + strings.Join(opExportColumns, ", ") + ".",
		Args: func(cmd *cobra.Command, args []string) error {
			if stuck {
				return cobra.NoArgs(cmd, args)
			}
			return cobra.ExactArgs(1)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format, asJSON); err != nil {
				return err
			}
			if stuck && format != formatTable {
				return withExit(exitUsage, errors.New("--format goes with a RUN_ID, not --stuck"))
			}
			if stuck {
				if nRuns < 1 || nRuns > store.StuckWindow {
					return withExit(exitUsage, fmt.Errorf("--runs must be between 1 and %d, got %d", store.StuckWindow, nRuns))
				}
				return withCurrentStore(cmd, func(ctx context.Context, st *store.Store) error {
					if err := checkJobName(cmd, ctx, st, job); err != nil {
						return err
					}
					users, err := st.StuckUsers(ctx, job, nRuns)
					if err != nil {
						return withExit(exitFail, err)
					}
					return printStuck(cmd.OutOrStdout(), users, job, nRuns, asJSON, time.Now())
				})
			}
			if job != "" || cmd.Flags().Changed("runs") {
				return withExit(exitUsage, errors.New("--job and --runs go with --stuck"))
			}
			id, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil || id <= 0 {
				return withExit(exitUsage, fmt.Errorf("RUN_ID must be a run number (see `worker history`), got %q", args[0]))
			}
			if status != "" && !slices.Contains(opStatuses, status) {
				return withExit(exitUsage, fmt.Errorf("--status %q: want one of %s", status, strings.Join(opStatuses, ", ")))
			}
			return withCurrentStore(cmd, func(ctx context.Context, st *store.Store) error {
				run, err := st.GetRun(ctx, id)
				if errors.Is(err, store.ErrNotFound) {
					return withExit(exitFail, fmt.Errorf("run %d not found (see `worker history`)", id))
				}
				if err != nil {
					return withExit(exitFail, err)
				}
				ops, err := st.ListOperations(ctx, id, store.OpStatus(status))
				if err != nil {
					return withExit(exitFail, err)
				}
				if format != formatTable {
					return exportOperations(cmd.OutOrStdout(), format, run, ops)
				}
				return printRun(cmd.OutOrStdout(), run, ops, status, asJSON, time.Now())
			})
		},
	}
	c.Flags().StringVar(&status, "status", "", "only operations with this status ("+strings.Join(opStatuses, ", ")+")")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of tables")
	c.Flags().BoolVar(&stuck, "stuck", false, "list users failing the same way in each of the last --runs apply runs")
	c.Flags().StringVar(&job, "job", "", "with --stuck: only this job")
	c.Flags().StringVar(&format, "format", formatTable, "output format: table, csv or jsonl (one operation a record)")
	c.Flags().IntVar(&nRuns, "runs", 3, "with --stuck: how many last apply runs a user must have failed")
	return c
}

// stuckJSON is the stable JSON shape of a stuck user.
type stuckJSON struct {
	Job        string    `json:"job"`
	ExternalID string    `json:"external_id"`
	Action     string    `json:"action"`
	HTTPStatus int       `json:"http_status,omitempty"`
	ErrorCode  string    `json:"error_code,omitempty"`
	Message    string    `json:"message,omitempty"`
	Runs       int       `json:"consecutive_failed_runs"`
	FirstAt    time.Time `json:"first_failure_at"`
	LastAt     time.Time `json:"last_failure_at"`
	RunID      int64     `json:"last_run_id"`
	RequestID  string    `json:"request_id,omitempty"`
	// From the user's back-off, when the engine leaves it alone for now.
	Failures      int        `json:"identical_failures,omitempty"`
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
}

func printStuck(w io.Writer, users []store.StuckUser, job string, n int, asJSON bool, now time.Time) error {
	if asJSON {
		out := make([]stuckJSON, 0, len(users))
		for _, u := range users {
			out = append(out, stuckJSON{Job: u.Job, ExternalID: u.ExternalID, Action: u.Action, HTTPStatus: u.HTTPStatus,
				ErrorCode: u.ErrorCode, Message: u.Message, Runs: u.Runs, FirstAt: u.FirstAt, LastAt: u.LastAt,
				RunID: u.RunID, RequestID: u.RequestID, Failures: u.Failures, NextAttemptAt: u.NextAttemptAt})
		}
		return writeJSON(w, out)
	}
	if len(users) == 0 {
		scope := "any job"
		if job != "" {
			scope = "job " + job
		}
		_, err := fmt.Fprintf(w, "no user of %s failed the same way in each of its last %d apply runs\n", scope, n)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	// ERROR last and uncut, as in printRunOperations.
	fmt.Fprintln(tw, "JOB\tEXTERNAL_ID\tACTION\tHTTP\tRUNS\tFIRST_FAILED\tLAST_FAILED\tLAST_RUN\tREQUEST_ID\tNEXT_ATTEMPT\tERROR")
	for _, u := range users {
		http := orDash(httpStatus(u.HTTPStatus))
		msg := errorText(u.ErrorCode, u.Message)
		runs := strconv.Itoa(u.Runs)
		if u.Runs >= store.StuckWindow {
			runs += "+"
		}
		// NEXT_ATTEMPT: "-" when the user is not backed off (tried at every
		// run), "next run" when its back-off is due.
		next := "-"
		if u.NextAttemptAt != nil {
			next = "next run"
			if u.NextAttemptAt.After(now) {
				next = fmtTime(*u.NextAttemptAt)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", u.Job, u.ExternalID, u.Action, http,
			runs, fmtTime(u.FirstAt), fmtTime(u.LastAt), u.RunID, orDash(u.RequestID), next, orDash(flatLine(msg)))
	}
	return tw.Flush()
}

// opStatuses are the values --status takes.
var opStatuses = func() []string {
	s := make([]string, len(store.OpStatuses))
	for i, st := range store.OpStatuses {
		s[i] = string(st)
	}
	return s
}()

// runJSON is the stable JSON shape of a run (snake_case like the columns).
type runJSON struct {
	ID              int64          `json:"id"`
	Job             string         `json:"job"`
	TenantID        string         `json:"tenant_id,omitempty"`
	Trigger         string         `json:"trigger"`
	Mode            string         `json:"mode"`
	Status          string         `json:"status"`
	ScheduledFor    *time.Time     `json:"scheduled_for,omitempty"`
	StartedAt       time.Time      `json:"started_at"`
	FinishedAt      *time.Time     `json:"finished_at,omitempty"`
	DurationSeconds *float64       `json:"duration_seconds,omitempty"`
	Counts          map[string]int `json:"counts"`
	Requests        int            `json:"requests"`
	Batches         int            `json:"batches"`
	Throttled       int            `json:"throttled"`
	Retried         int            `json:"retried"`
	Error           string         `json:"error,omitempty"`
	Host            string         `json:"host,omitempty"`
	PID             int            `json:"pid,omitempty"`
}

type opJSON struct {
	Seq        int64          `json:"seq"`
	ExternalID string         `json:"external_id"`
	ObjectID   string         `json:"object_id,omitempty"`
	Action     string         `json:"action"`
	Status     string         `json:"status"`
	Changes    map[string]any `json:"changes,omitempty"`
	HTTPStatus int            `json:"http_status,omitempty"`
	ErrorCode  string         `json:"error_code,omitempty"`
	Message    string         `json:"message,omitempty"`
	RequestID  string         `json:"request_id,omitempty"`
	Attempts   int            `json:"attempts"`
	LatencyMS  int            `json:"latency_ms,omitempty"`
	At         time.Time      `json:"at"`
}

func toRunJSON(r store.Run) runJSON {
	j := runJSON{ID: r.ID, Job: r.Job, TenantID: r.TenantID, Trigger: r.Trigger, Mode: r.Mode, Status: string(r.Status),
		ScheduledFor: r.ScheduledFor, StartedAt: r.StartedAt, FinishedAt: r.FinishedAt, Counts: r.Counts.Map(),
		Requests: r.Stats.Requests, Batches: r.Stats.Batches, Throttled: r.Stats.Throttled, Retried: r.Stats.Retried,
		Error: r.ErrorSummary, Host: r.Host, PID: r.PID}
	if j.Counts == nil {
		j.Counts = map[string]int{}
	}
	if r.FinishedAt != nil {
		d := r.FinishedAt.Sub(r.StartedAt).Seconds()
		j.DurationSeconds = &d
	}
	return j
}

func printHistory(w io.Writer, runs []store.Run, job string, asJSON bool, now time.Time) error {
	if asJSON {
		out := make([]runJSON, 0, len(runs))
		for _, r := range runs {
			out = append(out, toRunJSON(r))
		}
		return writeJSON(w, out)
	}
	if len(runs) == 0 {
		if job != "" {
			_, err := fmt.Fprintf(w, "no runs yet for job %s\n", job)
			return err
		}
		_, err := fmt.Fprintln(w, "no runs yet")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	// ERROR last and uncut: the failure is read here.
	fmt.Fprintln(tw, "RUN\tJOB\tMODE\tTRIGGER\tSTATUS\tSTARTED\tDURATION\tCOUNTS\tREQUESTS\tTHROTTLED\tERROR")
	for _, r := range runs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n",
			r.ID, r.Job, r.Mode, r.Trigger, r.Status, fmtTime(r.StartedAt), fmtDuration(r, now),
			orDash(formatCounts(r.Counts.Map())), r.Stats.Requests, r.Stats.Throttled, orDash(flatLine(r.ErrorSummary)))
	}
	return tw.Flush()
}

func printRun(w io.Writer, r store.Run, ops []store.Operation, status string, asJSON bool, now time.Time) error {
	if asJSON {
		out := struct {
			Run        runJSON  `json:"run"`
			Operations []opJSON `json:"operations"`
		}{Run: toRunJSON(r), Operations: make([]opJSON, 0, len(ops))}
		for _, o := range ops {
			out.Operations = append(out.Operations, opJSON{Seq: o.Seq, ExternalID: o.ExternalID, ObjectID: o.ObjectID,
				Action: o.Action, Status: string(o.Status), Changes: o.Changes, HTTPStatus: o.HTTPStatus, ErrorCode: o.ErrorCode,
				Message: o.Message, RequestID: o.RequestID, Attempts: o.Attempts, LatencyMS: o.LatencyMS, At: o.At})
		}
		return writeJSON(w, out)
	}
	if err := printRunHeader(w, r, now); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if len(ops) == 0 {
		msg := "no operations"
		if status != "" {
			msg = "no " + status + " operations"
		}
		_, err := fmt.Fprintln(w, msg)
		return err
	}
	return printRunOperations(w, ops)
}

// printRunHeader is the run's summary, one field a line: what `worker
// show` prints above the operations and `worker sync` after a run.
func printRunHeader(w io.Writer, r store.Run, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "run\t%d\n", r.ID)
	fmt.Fprintf(tw, "job\t%s\n", r.Job)
	if r.TenantID != "" {
		fmt.Fprintf(tw, "tenant\t%s\n", r.TenantID)
	}
	fmt.Fprintf(tw, "mode\t%s (%s)\n", r.Mode, r.Trigger)
	fmt.Fprintf(tw, "status\t%s\n", r.Status)
	if r.ScheduledFor != nil {
		fmt.Fprintf(tw, "scheduled for\t%s\n", fmtTime(*r.ScheduledFor))
	}
	fmt.Fprintf(tw, "started\t%s\n", fmtTime(r.StartedAt))
	if r.FinishedAt != nil {
		fmt.Fprintf(tw, "finished\t%s\n", fmtTime(*r.FinishedAt))
	}
	fmt.Fprintf(tw, "duration\t%s\n", fmtDuration(r, now))
	fmt.Fprintf(tw, "counts\t%s\n", orDash(formatCounts(r.Counts.Map())))
	if id := r.Counts.ApprovedRun; id != 0 {
		fmt.Fprintf(tw, "approval\tapplied the reviewed plan of run %d (--approve)\n", id)
	}
	if r.Counts.AllowDeletes != 0 {
		fmt.Fprintf(tw, "approval\t--allow-deletes: disable and delete bounds lifted without a reviewed plan\n")
	}
	fmt.Fprintf(tw, "graph\t%d requests, %d batches, %d throttled, %d retried\n",
		r.Stats.Requests, r.Stats.Batches, r.Stats.Throttled, r.Stats.Retried)
	if r.Host != "" {
		fmt.Fprintf(tw, "worker\t%s pid %d\n", r.Host, r.PID)
	}
	if r.ErrorSummary != "" {
		fmt.Fprintf(tw, "error\t%s\n", r.ErrorSummary)
	}
	return tw.Flush()
}

// printRunOperations is the operations table of printRun. ERROR holds
// only failures, in full and last, so a wide message never pushes the
// other columns about or gets cut where it is read; what the engine notes
// on other operations (a rehire, a backed-off user) is in NOTE.
func printRunOperations(w io.Writer, ops []store.Operation) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tEXTERNAL_ID\tACTION\tSTATUS\tHTTP\tOBJECT_ID\tCHANGES\tREQUEST_ID\tNOTE\tERROR")
	for _, o := range ops {
		http := orDash(httpStatus(o.HTTPStatus))
		msg := errorText(o.ErrorCode, o.Message)
		note, failure := msg, ""
		if o.Status == store.OpFailed || o.Status == store.OpInterrupted {
			note, failure = "", msg
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", o.Seq, o.ExternalID, o.Action, o.Status, http,
			orDash(o.ObjectID), orDash(fmtChanges(o.Changes)), orDash(o.RequestID),
			orDash(store.FirstLine(note, 60)), orDash(flatLine(failure)))
	}
	return tw.Flush()
}

// fmtChanges is the CHANGES cell: every changed attribute with from → to
// (`jobTitle: "Clerk" → "Lead"`), or its value where history records no
// old one (a create, a group, a manager); a secret never (exportChanges).
func fmtChanges(c map[string]any) string {
	c = exportChanges(c)
	parts := make([]string, 0, len(c))
	for _, k := range slices.Sorted(maps.Keys(c)) {
		v := c[k]
		if m, ok := v.(map[string]any); ok {
			if _, from := m["from"]; from {
				parts = append(parts, k+": "+fmtChange(v))
				continue
			}
			if _, to := m["to"]; to {
				parts = append(parts, k+": "+fmtChange(v))
				continue
			}
		}
		parts = append(parts, k+": "+fmtValue(v))
	}
	return strings.Join(parts, "; ")
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// formatCounts renders {"update":5,"create":3} as "create=3 update=5".
func formatCounts(c map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(c)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, c[k]))
	}
	return strings.Join(parts, " ")
}

func fmtTime(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05 MST") }

// fmtDuration is the run's length, or its age so far while it runs.
func fmtDuration(r store.Run, now time.Time) string {
	if r.FinishedAt == nil {
		return "running " + now.Sub(r.StartedAt).Round(time.Second).String()
	}
	d := r.FinishedAt.Sub(r.StartedAt)
	if d < 10*time.Second {
		return d.Round(10 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// flatLine keeps a table row on one line without losing any of s: its
// lines joined with " / ", nothing cut (for the last column, where a
// failure is read).
func flatLine(s string) string {
	var parts []string
	for l := range strings.Lines(s) {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, " / ")
}

// errorText is an operation's error as the tables show it: "code:
// message", or whichever of the two there is.
func errorText(code, message string) string {
	if message == "" {
		return code
	}
	return strings.TrimPrefix(code+": "+message, ": ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
