package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/entraprov/entraprov/internal/store"
)

func init() { addCommand(newMigrateCommand) }

func newMigrateCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "migrate",
		Short: "Create or upgrade the entraprov schema in PostgreSQL",
		Long: "The database comes from --database-url, else the --config file's database.url\n" +
			"(overridden by ENTRAPROV_DATABASE_URL, then DATABASE_URL), else those variables.\n" +
			"Migrations are embedded in the binary and applied under an advisory lock, so two\n" +
			"workers starting at once cannot both migrate. A database migrated by a newer worker\n" +
			"is refused: upgrade the binary instead.",
		Args: cobra.NoArgs,
	}
	c.AddCommand(&cobra.Command{
		Use:   "up",
		Short: "Apply pending migrations (idempotent: nothing to do when up to date)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, func(ctx context.Context, st *store.Store) error {
				return migrateUp(ctx, cmd.OutOrStdout(), st)
			})
		},
	})
	c.AddCommand(&cobra.Command{
		Use:   "status",
		Short: "Show the schema version and pending migrations (exit 1 unless up to date)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, func(ctx context.Context, st *store.Store) error {
				return migrateStatus(ctx, cmd.OutOrStdout(), st)
			})
		},
	})
	return c
}

func migrateUp(ctx context.Context, w io.Writer, st *store.Store) error {
	applied, err := st.Migrate(ctx)
	if err != nil {
		return withExit(exitFail, err)
	}
	cur, _, err := st.SchemaVersion(ctx)
	if err != nil {
		return withExit(exitFail, err)
	}
	if applied == 0 {
		_, err = fmt.Fprintf(w, "nothing to do: schema already at version %d\n", cur)
		return err
	}
	_, err = fmt.Fprintf(w, "applied %d %s: schema now at version %d\n", applied, countNoun(applied, "migration", "migrations"), cur)
	return err
}

func migrateStatus(ctx context.Context, w io.Writer, st *store.Store) error {
	cur, latest, err := st.SchemaVersion(ctx)
	if err != nil {
		return withExit(exitFail, err)
	}
	names, err := store.MigrationNames()
	if err != nil {
		return withExit(exitFail, err)
	}
	fmt.Fprintf(w, "schema version %d, this worker knows %d\n", cur, latest)
	for i, name := range names {
		mark := "pending"
		if i < cur {
			mark = "applied"
		}
		fmt.Fprintf(w, "  %-8s %s\n", mark, name)
	}
	switch err := st.CheckSchema(ctx); {
	case err == nil:
		_, err = fmt.Fprintln(w, "up to date")
		return err
	case errors.Is(err, store.ErrSchemaOutdated):
		fmt.Fprintf(w, "%d %s pending: run `worker migrate up`\n", latest-cur, countNoun(latest-cur, "migration", "migrations"))
		return withExit(exitFail, errors.New("schema not up to date"))
	default:
		return withExit(exitFail, err)
	}
}

func countNoun(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
