package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/entraprov/entraprov/internal/store"
	esync "github.com/entraprov/entraprov/internal/sync"
)

func init() { addCommand(newPlanCommand) }

func newPlanCommand() *cobra.Command {
	var jobName string
	var limit int
	var tf traceFlags
	cmd := &cobra.Command{
		Use:   "plan [--job NAME]",
		Short: "Dry run: show and record what a sync would change, writing nothing to the directory",
		Long: `plan reads the directory (delta) and the job's source, decides what a sync would
do for every user, records it as a run with mode "plan" (operations with status
"planned", and "failed" for rows that would be refused, with the reason), and
prints the counts and the first --limit changes. Nothing is written to the
directory. See every planned operation with ` + "`worker show RUN`" + `.` + onDemandHelp + `
With plan, nothing is sent: the trace stops at the decision and the planned
history rows.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if tf.user != "" {
				return runUser(cmd, jobName, tf, esync.ModePlan)
			}
			if tf.asJSON {
				return withExit(exitUsage, fmt.Errorf("--json: only with --user (see worker show RUN --json for a run)"))
			}
			var ops []store.Operation
			more := 0
			run, err := runOnce(cmd, jobName, esync.RunOptions{Trigger: esync.TriggerManual, Mode: esync.ModePlan},
				func(ctx context.Context, st *store.Store, run store.Run) error {
					if limit <= 0 {
						return nil
					}
					all, err := st.ListOperations(ctx, run.ID, "")
					if err != nil {
						return err
					}
					if len(all) > limit {
						more, all = len(all)-limit, all[:limit]
					}
					ops = all
					return nil
				})
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if err := printRun(w, run, ops, "", false, time.Now()); err != nil {
				return err
			}
			if more > 0 {
				fmt.Fprintf(w, "… and %d more: worker show %d\n", more, run.ID)
			}
			if run.Status == store.RunFailed || run.Status == store.RunInterrupted {
				return withExit(exitFail, fmt.Errorf("plan run %d %s: %s", run.ID, run.Status, run.ErrorSummary))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&jobName, "job", "", "the job to plan (its name in the configuration; optional when it has one job)")
	cmd.Flags().IntVar(&limit, "limit", 20, "how many planned operations to print (0: none)")
	tf.register(cmd)
	return cmd
}
