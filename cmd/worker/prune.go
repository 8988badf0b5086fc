package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/store"
)

// newPruneCommand is `worker history prune`, added under `worker history`.
func newPruneCommand() *cobra.Command {
	var (
		olderThan string
		chunk     int
		yes       bool
	)
	c := &cobra.Command{
		Use:   "prune --older-than 400d",
		Short: "Delete runs (and their operations) older than a retention period",
		Long: "Deletes the runs that started before now minus --older-than, and their operations,\n" +
			"in chunks of --chunk operation rows, each its own short transaction: a run in\n" +
			"progress is not blocked, and an interrupted prune can simply be run again.\n" +
			"Runs still running are never deleted. Prints what it deleted.\n\n" +
			"--older-than is at least 1d, as history.retention. On a terminal it asks before\n" +
			"deleting; otherwise (scripts, timers) --yes is required.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			age, err := config.ParseDuration(olderThan)
			if err != nil || age <= 0 {
				return withExit(exitUsage, fmt.Errorf("--older-than %q: want a positive duration such as 400d or 90d12h", olderThan))
			}
			if age < config.MinRetention {
				return withExit(exitUsage, fmt.Errorf("--older-than %s is shorter than 1d (the floor of history.retention); want e.g. 400d or 90d", olderThan))
			}
			if chunk <= 0 {
				return withExit(exitUsage, fmt.Errorf("--chunk must be positive, got %d", chunk))
			}
			cutoff := time.Now().Add(-age)
			if !yes {
				if !isTerminal(cmd.InOrStdin()) {
					return withExit(exitUsage, errors.New("stdin is not a terminal: pass --yes to delete without asking"))
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "delete the runs that started before %s, and their operations? [y/N] ", fmtTime(cutoff))
				answer, _ := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
					return withExit(exitFail, errors.New("not confirmed: nothing was deleted"))
				}
			}
			return withCurrentStore(cmd, func(ctx context.Context, st *store.Store) error {
				started := time.Now()
				res, err := st.PruneHistory(ctx, cutoff, chunk, nil)
				// Report what was deleted even when interrupted: it is gone.
				fmt.Fprintf(cmd.OutOrStdout(), "pruned %d %s and %d %s started before %s (%d chunks, %s)\n",
					res.Runs, countNoun(int(res.Runs), "run", "runs"),
					res.Operations, countNoun(int(res.Operations), "operation", "operations"),
					fmtTime(cutoff), res.Chunks, time.Since(started).Round(time.Millisecond))
				if err != nil {
					return withExit(exitFail, err)
				}
				return nil
			})
		},
	}
	c.Flags().StringVar(&olderThan, "older-than", "", "retention period: delete runs that started longer ago (e.g. 400d)")
	c.Flags().IntVar(&chunk, "chunk", 50_000, "operation rows deleted per transaction")
	c.Flags().BoolVarP(&yes, "yes", "y", false, "delete without asking (required when stdin is not a terminal)")
	_ = c.MarkFlagRequired("older-than")
	return c
}
