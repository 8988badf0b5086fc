package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func init() {
	addCommand(func() *cobra.Command {
		return &cobra.Command{
			Use:   "version",
			Short: "Print the worker version",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				_, err := fmt.Fprint(cmd.OutOrStdout(), versionLine())
				return err
			},
		}
	})
}

// versionLine is what `worker version` and `worker --version` print.
func versionLine() string {
	return fmt.Sprintf("entraprov worker %s (%s)\n", version, runtime.Version())
}
