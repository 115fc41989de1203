// Command egret is a transparent egress allowlist proxy: it lets workloads
// reach exactly the endpoints their vendors document, and denies, logs and
// traces everything else.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// exitError carries an exit code out of a command: check's 1 for a deny,
// 2 for usage and configuration errors.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageError marks a mistake in the command line or configuration (exit 2).
func usageError(format string, args ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, args...)}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.code != 1 {
			fmt.Fprintln(stderr, "egret:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "egret:", err)
	return 2 // cobra's own errors are usage errors: unknown flag, missing argument
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "egret",
		Short:         "egret is a transparent egress allowlist proxy",
		Long:          "egret lets workloads reach exactly the endpoints their vendors document, and denies, logs and traces everything else.",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().String("config", "", "configuration file (YAML)")
	root.AddCommand(newServeCmd(), newCheckCmd(), newProductsCmd(), newLintCmd(), newReviewCmd(), newDiffCmd(), newCertsCmd(), newExportCmd())
	return root
}
