package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/egret-proxy/egret/allowlists"
	"github.com/spf13/cobra"
)

func newLintCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lint [FILE|DIR]...",
		Short: "check allowlist files (the embedded ones when none are named); exit 1 on errors",
		RunE:  runLint,
	}
	cmd.Flags().StringArray("var", nil, "variable value K=V, to lint rules as configured (repeatable)")
	return cmd
}

func runLint(cmd *cobra.Command, args []string) error {
	v, err := newViper(cmd)
	if err != nil {
		return err
	}
	s, err := policySettings(v)
	if err != nil {
		return err
	}
	embeddedFiles, err := allowlists.EmbeddedFiles()
	if err != nil {
		return &exitError{code: 2, err: fmt.Errorf("embedded allowlists: %w", err)}
	}
	base, targets := []*allowlists.File(nil), embeddedFiles
	var findings []allowlists.Finding
	if len(args) > 0 {
		base, targets = embeddedFiles, nil
		paths, err := expandPaths(args)
		if err != nil {
			return usageError("%v", err)
		}
		for _, p := range paths {
			f, err := allowlists.ReadFile(p)
			if err != nil {
				findings = append(findings, allowlists.FindingsFromError(err)...)
				continue
			}
			targets = append(targets, f)
		}
	}
	findings = append(findings, allowlists.Lint(base, targets, s.Vars)...)
	counts := map[allowlists.Severity]int{}
	for _, f := range findings {
		fmt.Fprintln(cmd.OutOrStdout(), f)
		counts[f.Severity]++
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%d files: %d errors, %d warnings, %d inactive rules\n",
		len(targets), counts[allowlists.SevError], counts[allowlists.SevWarning], counts[allowlists.SevInactive])
	if counts[allowlists.SevError] > 0 {
		return &exitError{code: 1}
	}
	return nil
}

// expandPaths turns directories into the *.yaml and *.yml files in them.
func expandPaths(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			out = append(out, a)
			continue
		}
		for _, pat := range []string{"*.yaml", "*.yml"} {
			m, _ := filepath.Glob(filepath.Join(a, pat))
			out = append(out, m...)
		}
	}
	return out, nil
}
