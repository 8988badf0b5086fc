package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/entraprov/entraprov/internal/audit"
	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/store"
)

func init() { addCommand(newAuditCommand) }

func newAuditCommand() *cobra.Command {
	var jobName string
	var asJSON, unmanaged bool
	cmd := &cobra.Command{
		Use:   "audit [--job NAME]",
		Short: "Read-only: compare the directory (read live) with the job's desired state",
		Long: `audit reads every user of the tenant live from Graph (not the worker's mirror)
and the job's source and links, and reports for the users the job manages:
missing, extra (left the source but still enabled, or past delete_after),
drifted attributes, disabled but wanted enabled, links to objects that no
longer exist, manager and recorded group differences, and source rows that
cannot be provisioned. With --include-unmanaged, unlinked directory users
matching a desired row by UPN or employeeId are reported too.

Nothing is written to the directory or the database, and no run is recorded.

Exit status: 0 when there is no finding, 1 when there is one (or the audit
could not be made), 2 on bad flags, 78 on a configuration error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAudit(cmd, jobName, asJSON, audit.Options{IncludeUnmanaged: unmanaged})
		},
	}
	cmd.Flags().StringVar(&jobName, "job", "", "the job to audit (its name in the configuration; optional when it has one job)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	cmd.Flags().BoolVar(&unmanaged, "include-unmanaged", false, "also report unlinked directory users that match desired rows")
	return cmd
}

func runAudit(cmd *cobra.Command, jobName string, asJSON bool, opts audit.Options) error {
	ctx, cfg, st, err := configStore(cmd, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	job, err := findConfigJob(ctx, cfg, st, jobName)
	if err != nil {
		return err
	}
	if err := st.CheckSource(ctx, job.Source); err != nil {
		return withExit(exitFail, fmt.Errorf("job %s: %w", job.Name, err))
	}
	log := commandLogger(cfg.Log, cmd.ErrOrStderr())
	dir, err := directory.New(ctx, job, directory.Options{Logger: log, UserAgent: "entraprov/" + version})
	if err != nil {
		return withExit(exitFail, fmt.Errorf("job %s: %w", job.Name, err))
	}
	rep, err := audit.Run(ctx, st, dir, job, opts)
	if err != nil {
		return withExit(exitFail, err)
	}
	w := cmd.OutOrStdout()
	if asJSON {
		err = writeJSON(w, rep)
	} else {
		err = printAudit(w, rep)
	}
	if err != nil {
		return err
	}
	if !rep.Clean() {
		return withExit(exitFail, fmt.Errorf("audit of job %s: %d finding(s): %s", job.Name, len(rep.Findings), formatCounts(rep.Counts)))
	}
	return nil
}

func printAudit(w io.Writer, rep audit.Report) error {
	fmt.Fprintf(w, "job %s: %d source/link rows, %d directory users, %d finding(s)", rep.Job, rep.Rows, rep.DirectoryUsers, len(rep.Findings))
	if len(rep.Findings) > 0 {
		fmt.Fprintf(w, " (%s)", formatCounts(rep.Counts))
	}
	fmt.Fprintln(w)
	if rep.Clean() {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tEXTERNAL ID\tUPN\tOBJECT ID\tDETAIL")
	for _, f := range rep.Findings {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", f.Kind, f.ExternalID, orDash(f.UPN), orDash(f.ObjectID), store.FirstLine(f.Detail, 120))
	}
	return tw.Flush()
}
