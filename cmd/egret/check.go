package main

import (
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/egret-proxy/egret/allowlists"
	"github.com/spf13/cobra"
)

func newCheckCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "check --product NAME [--var K=V]... [--allowlists DIR] [--resolve HOST=IP]... DEST",
		Short: "decide a destination (host[:port] or URL) for a product; exit 0 allowed, 1 denied, 2 error",
		Args:  cobra.ExactArgs(1),
		RunE:  runCheck,
	}
	cmd.Flags().StringArray("product", nil, "product whose allowlist decides (repeatable)")
	cmd.Flags().StringArray("resolve", nil, "pin HOST to IP so that cidr rules can match it (repeatable)")
	addPolicyFlags(cmd.Flags())
	return cmd
}

func runCheck(cmd *cobra.Command, args []string) error {
	v, err := newViper(cmd)
	if err != nil {
		return err
	}
	products := v.GetStringSlice("product")
	if len(products) == 0 {
		return usageError("check needs --product NAME; `egret products` lists them")
	}
	pins, err := parsePins(v.GetStringSlice("resolve"))
	if err != nil {
		return err
	}
	policy, err := loadPolicy(cmd, v)
	if err != nil {
		return err
	}
	id, err := policy.Identity("check", products...)
	if err != nil {
		return usageError("%v", err)
	}
	out := cmd.OutOrStdout()
	verdict, dest, err := decideTarget(policy, id, args[0], pins)
	if err != nil {
		fmt.Fprintf(out, "deny %s\n  reason:   %s\n  detail:   %v\n", args[0], allowlists.ReasonBadHost, err)
		return &exitError{code: 1}
	}
	printVerdict(out, verdict, dest, products)
	printInactive(out, policy, products)
	if !verdict.Allow {
		return &exitError{code: 1}
	}
	return nil
}

// decideTarget parses and normalises a destination as a person writes it,
// applies a --resolve pin, and decides it.
func decideTarget(p *allowlists.Policy, id allowlists.Identity, target string, pins map[string]netip.Addr) (allowlists.Verdict, allowlists.Dest, error) {
	host, port, path, err := allowlists.ParseTarget(target)
	if err != nil {
		return allowlists.Verdict{}, allowlists.Dest{}, err
	}
	d, err := allowlists.NewDest(host, port, path)
	if err != nil {
		return allowlists.Verdict{}, allowlists.Dest{}, err
	}
	if addr, ok := pins[d.Host]; ok {
		d = d.WithAddr(addr)
	}
	return p.Decide(id, d), d, nil
}

func printVerdict(w io.Writer, v allowlists.Verdict, d allowlists.Dest, products []string) {
	word := "deny"
	if v.Allow {
		word = "allow"
	}
	target := d.String()
	if d.Path != "" {
		target += " " + d.Path
	}
	fmt.Fprintf(w, "%s %s\n", word, target)
	fmt.Fprintf(w, "  reason:   %s\n", v.Reason)
	fmt.Fprintf(w, "  products: %s\n", strings.Join(products, ", "))
	if d.Addr.IsValid() && !d.IsIP() {
		fmt.Fprintf(w, "  address:  %s (pinned)\n", d.Addr)
	}
	if r := v.Rule; r != nil {
		if r.Product != "" {
			fmt.Fprintf(w, "  product:  %s\n", r.Product)
		}
		fmt.Fprintf(w, "  rule:     %s\n", r)
		if r.File != "" {
			fmt.Fprintf(w, "  file:     %s:%d\n", r.File, r.Line)
		}
		fmt.Fprintf(w, "  source:   %s\n", r.Source)
		fmt.Fprintf(w, "  purpose:  %s\n", r.Purpose)
		if r.Broad != "" {
			fmt.Fprintf(w, "  broad:    %s\n", r.Broad)
		}
	}
	if v.PathsUnenforced {
		fmt.Fprintf(w, "  paths:    unenforced (a tunnel does not show its path; the rule allows %s)\n", strings.Join(v.Rule.Paths, ", "))
	}
}

func printInactive(w io.Writer, p *allowlists.Policy, products []string) {
	for _, in := range p.Inactive() {
		for _, prod := range products {
			if in.Product == prod {
				fmt.Fprintf(w, "  %s\n", in)
			}
		}
	}
}
