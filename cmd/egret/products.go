package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/egret-proxy/egret/allowlists"
	"github.com/spf13/cobra"
)

func newProductsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "products",
		Short: "list products: name, proxy and network rule counts, seed document, title",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := newViper(cmd)
			if err != nil {
				return err
			}
			cat, err := allowlists.LoadCatalog(v.GetStringSlice("allowlists")...)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PRODUCT\tPROXY\tNETWORK\tSOURCE\tTITLE")
			for _, name := range cat.Names() {
				p := cat.Product(name)
				fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\n", p.Name, p.ProxyRules(), p.NetworkRules(), p.Source, p.Title)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringArray("allowlists", nil, "directory of extra allowlist files (repeatable)")
	return cmd
}
