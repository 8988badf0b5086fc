// Command worker is the entraprov batch worker: it reconciles Microsoft
// Entra ID users with desired users kept in PostgreSQL.
//
// main only wires things together: each subcommand lives in its own file and
// registers itself with addCommand from an init function.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit codes (sysexits-style where one fits).
const (
	exitOK     = 0
	exitFail   = 1  // a run or check failed
	exitUsage  = 2  // bad flags or arguments
	exitConfig = 78 // EX_CONFIG: the configuration is invalid
)

// exitError carries an exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// withExit marks err with the process exit code it should produce.
func withExit(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: code, err: err}
}

// globalFlags are shared by every subcommand.
type globalFlags struct {
	configPath  string
	databaseURL string
}

var (
	globals  globalFlags
	commands []func() *cobra.Command
)

// addCommand registers a subcommand constructor; called from init functions.
func addCommand(f func() *cobra.Command) { commands = append(commands, f) }

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "worker",
		Short:         "Keep Microsoft Entra ID users in line with desired users in PostgreSQL",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&globals.configPath, "config", os.Getenv("ENTRAPROV_CONFIG"),
		"configuration file (env ENTRAPROV_CONFIG)")
	root.PersistentFlags().StringVar(&globals.databaseURL, "database-url", "",
		"PostgreSQL URL; overrides the config file and ENTRAPROV_DATABASE_URL / DATABASE_URL")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return withExit(exitUsage, err) })
	// --version prints what `worker version` prints.
	root.Version = version
	root.SetVersionTemplate(versionLine())
	for _, f := range commands {
		root.AddCommand(f())
	}
	for _, c := range root.Commands() {
		markUsage(c)
	}
	return root
}

// markUsage makes every usage mistake cobra finds in c and its subcommands
// exit 2. cobra reports an unknown command, wrong arguments, a missing
// required flag and conflicting flags as plain errors, before RunE runs;
// wrapping RunE tells them apart from a command's own failures (see
// execute). A command group without RunE would print its help and exit 0
// for an unknown subcommand (`worker migrate down`): it gets a RunE that
// prints the help, and NoArgs, so an unknown subcommand is refused.
func markUsage(c *cobra.Command) {
	if !c.Runnable() && c.HasSubCommands() {
		c.Args = cobra.NoArgs
		c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	}
	if run := c.RunE; run != nil {
		c.RunE = func(cmd *cobra.Command, args []string) error {
			ranCommand = true
			return run(cmd, args)
		}
	}
	for _, sub := range c.Commands() {
		markUsage(sub)
	}
}

// ranCommand is set once a command's own RunE starts: an error returned
// before then is cobra's usage check.
var ranCommand bool

// execute runs root and marks cobra's usage errors with exitUsage.
func execute(ctx context.Context, root *cobra.Command) error {
	ranCommand = false
	cmd, err := root.ExecuteContextC(ctx)
	var ee *exitError
	if err != nil && !ranCommand && !errors.As(err, &ee) {
		if !strings.Contains(err.Error(), "--help") {
			err = fmt.Errorf("%w\nsee `%s --help`", err, cmd.CommandPath())
		}
		return withExit(exitUsage, err)
	}
	return err
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := execute(ctx, newRootCommand())
	stop()
	os.Exit(exitCode(err))
}

// exitCode prints err and maps it to the process exit code.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(os.Stderr, "worker:", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	// A command's own error not marked with a code (execute marks cobra's
	// usage errors): a failure.
	return exitFail
}
