package main

import (
	"bytes"
	"os"

	"github.com/egret-proxy/egret/internal/bench"
	"github.com/spf13/cobra"
)

func newTableCmd() *cobra.Command {
	var doc, conditions string
	cmd := &cobra.Command{
		Use:   "table REPORT.json...",
		Short: "compare run reports side by side; with --doc, replace the generated section of that Markdown file",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			reports, err := bench.ReadReports(args)
			if err != nil {
				return err
			}
			var section bytes.Buffer
			if err := bench.WriteTables(&section, reports, conditions); err != nil {
				return err
			}
			cmd.OutOrStdout().Write(section.Bytes())
			if doc == "" {
				return nil
			}
			old, err := os.ReadFile(doc)
			if err != nil {
				return err
			}
			updated, err := bench.ReplaceSection(string(old), section.String())
			if err != nil {
				return err
			}
			return os.WriteFile(doc, []byte(updated), 0o644)
		},
	}
	cmd.Flags().StringVar(&doc, "doc", "", "Markdown file whose bench-peers section is replaced (appended if it has none)")
	cmd.Flags().StringVar(&conditions, "conditions", "", "one line on the run's conditions, written into the section")
	return cmd
}
