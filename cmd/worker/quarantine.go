package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/entraprov/entraprov/internal/jobs"
	"github.com/entraprov/entraprov/internal/store"
)

func init() { addCommand(newQuarantineCommand) }

func newQuarantineCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "quarantine",
		Short: "List quarantined jobs, or release one",
		Args:  cobra.NoArgs,
		Long: "A job whose last quarantine.after_failures runs failed is quarantined: its\n" +
			"scheduled occurrences are skipped (recorded with the reason) while a wait that\n" +
			"doubles from the schedule's interval up to quarantine.max_backoff passes. A run\n" +
			"that succeeds ends it, and so do `worker sync --job NAME` and\n" +
			"`worker quarantine release NAME`.",
	}
	c.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the quarantined jobs with the reason and when they run next",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withCurrentStore(cmd, func(ctx context.Context, st *store.Store) error {
				q, err := st.ListQuarantined(ctx)
				if err != nil {
					return withExit(exitFail, err)
				}
				return printQuarantined(cmd.OutOrStdout(), q)
			})
		},
	})
	c.AddCommand(&cobra.Command{
		Use:   "release JOB",
		Short: "End a job's quarantine: its next scheduled occurrence runs",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			job := args[0]
			return withCurrentStore(cmd, func(ctx context.Context, st *store.Store) error {
				if err := checkJobName(cmd, ctx, st, job); err != nil {
					return err
				}
				was, err := st.ReleaseQuarantine(ctx, job)
				if err != nil {
					return withExit(exitFail, err)
				}
				w := cmd.OutOrStdout()
				if was.QuarantinedUntil == nil {
					_, err = fmt.Fprintf(w, "job %s was not quarantined; its failure count starts again from 0\n", job)
					return err
				}
				_, err = fmt.Fprintf(w, "job %s released from quarantine (%s); its next scheduled occurrence runs\n",
					job, was.QuarantineReason)
				return err
			})
		},
	})
	return c
}

func printQuarantined(w io.Writer, q []store.JobState) error {
	if len(q) == 0 {
		_, err := fmt.Fprintln(w, "no job is quarantined")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tFAILED RUNS\tNEXT RUN NOT BEFORE\tREASON")
	for _, st := range q {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", st.Job, st.ConsecutiveFailures, fmtTime(*st.QuarantinedUntil),
			store.FirstLine(st.QuarantineReason, 100))
	}
	return tw.Flush()
}

// quarantineLine is the one-line warning `worker history` and `worker check`
// print first for a quarantined job.
func quarantineLine(st store.JobState) string {
	return fmt.Sprintf("QUARANTINED: job %s — %s; scheduled runs wait until %s; `worker sync --job %s` or `worker quarantine release %s` ends it",
		st.Job, store.FirstLine(st.QuarantineReason, 200), fmtTime(*st.QuarantinedUntil), st.Job, st.Job)
}

// quarantineLines returns the warning lines for job ("" : every job).
func quarantineLines(ctx context.Context, st *store.Store, job string) ([]string, error) {
	var q []store.JobState
	if job != "" {
		js, err := st.GetJobState(ctx, job)
		if err != nil {
			return nil, err
		}
		if js.QuarantinedUntil != nil {
			q = append(q, js)
		}
	} else {
		var err error
		if q, err = st.ListQuarantined(ctx); err != nil {
			return nil, err
		}
	}
	lines := make([]string, 0, len(q))
	for _, js := range q {
		lines = append(lines, quarantineLine(js))
	}
	return lines, nil
}

// releaseForManualRun ends job's quarantine before a manual apply run
// (jobs.BeforeManualRun) and returns the note to print, if any.
func releaseForManualRun(ctx context.Context, st *store.Store, job string) (string, error) {
	was, err := jobs.BeforeManualRun(ctx, st, job)
	if err != nil {
		return "", err
	}
	if was.QuarantinedUntil == nil {
		return "", nil
	}
	return fmt.Sprintf("job %s released from quarantine for this manual run (%s)", job, store.FirstLine(was.QuarantineReason, 200)), nil
}

// checkQuarantine adds a warning for a quarantined job to the check report
// (the checks that follow usually show why its runs fail).
func checkQuarantine(ctx context.Context, job string, st *store.Store, rep *checkReport) {
	js, err := st.GetJobState(ctx, job)
	if err != nil {
		rep.add(checkItem{Name: "quarantine", Job: job, Status: checkWarn, Detail: err.Error()})
		return
	}
	if js.QuarantinedUntil == nil {
		return
	}
	rep.Quarantined = append(rep.Quarantined, quarantineLine(js))
	rep.add(checkItem{Name: "quarantine", Job: job, Status: checkWarn,
		Detail: fmt.Sprintf("quarantined: %s; scheduled runs wait until %s", js.QuarantineReason, fmtTime(*js.QuarantinedUntil)),
		Advice: fmt.Sprintf("fix the cause the checks below show, then `worker sync --job %s` or `worker quarantine release %s`", job, job)})
}
