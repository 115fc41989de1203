package main

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/egret-proxy/egret/export"
	"github.com/spf13/cobra"
)

func newExportCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use: "export --product NAME... --format " + strings.Join(export.FormatNames(), "|") +
			" [--var K=V]... [--allowlists DIR] [--resolve HOST=IP]... [--direction egress|ingress|both] [--option NAME]... [--strict]",
		Short: "write products' rules for nftables, iptables/ipset, Squid, NetworkPolicy or JSON on standard output",
		Long: "export writes every rule of the products (network rules and proxy rules) for an enforcement point.\n" +
			"A rule the format cannot express is written as a comment with the reason; --strict makes that exit 1.",
		Args: cobra.NoArgs,
		RunE: runExport,
	}
	fs := cmd.Flags()
	fs.StringArray("product", nil, "product to export (repeatable)")
	fs.String("format", "", "output format: "+strings.Join(export.FormatNames(), ", "))
	fs.String("direction", "egress", "network rules to export: egress, ingress or both")
	fs.StringArray("resolve", nil, "pin HOST to IP: the address goes into the sets of the rules that name HOST (repeatable)")
	fs.StringArray("option", nil, "include the rows of a document's alternative rule set, e.g. basic (NetApp's open-all outbound rules; repeatable)")
	fs.Bool("strict", false, "exit 1 when a rule cannot be expressed in the format")
	fs.String("name", "egret", "nftables table, and prefix of iptables chains, Squid ACLs and the NetworkPolicy name")
	fs.Int("egret-uid", 65532, "uid egret runs as: only it may use the proxy rules' ports (nftables, iptables)")
	fs.String("segment", "", "gateway interface towards the guarded segment: forwarded traffic from it is egress (nftables, iptables)")
	addPolicyFlags(fs)
	return cmd
}

func runExport(cmd *cobra.Command, _ []string) error {
	v, err := newViper(cmd)
	if err != nil {
		return err
	}
	products := v.GetStringSlice("product")
	if len(products) == 0 {
		return usageError("export needs --product NAME; `egret products` lists them")
	}
	format := v.GetString("format")
	write, ok := export.Formats[format]
	if !ok {
		return usageError("--format %q: use one of %s", format, strings.Join(export.FormatNames(), ", "))
	}
	dir, err := export.ParseDirection(v.GetString("direction"))
	if err != nil {
		return usageError("--%v", err)
	}
	name := v.GetString("name")
	if !exportNameRE(name) {
		return usageError("--name %q: letters, digits and '_', starting with a letter, at most 20 characters", name)
	}
	pins, err := parsePins(v.GetStringSlice("resolve"))
	if err != nil {
		return err
	}
	policy, err := loadPolicy(cmd, v)
	if err != nil {
		return err
	}
	rs, err := export.Build(policy, products, export.Options{
		Direction: dir, Pins: pinLists(pins), Name: name, EgretUID: v.GetInt("egret-uid"),
		Segment: v.GetString("segment"), Version: version, Options: v.GetStringSlice("option"),
	})
	if err != nil {
		return usageError("%v", err)
	}
	skips, err := write(cmd.OutOrStdout(), rs)
	if err != nil {
		return &exitError{code: 2, err: fmt.Errorf("writing the export: %w", err)}
	}
	for _, s := range skips {
		fmt.Fprintf(cmd.ErrOrStderr(), "egret: %s: not expressed in %s: %s\n", s.ID, format, s.Reason)
	}
	if len(skips) > 0 && v.GetBool("strict") {
		fmt.Fprintf(cmd.ErrOrStderr(), "egret: %d rules not expressed in %s (--strict)\n", len(skips), format)
		return &exitError{code: 1}
	}
	return nil
}

// exportNameRE accepts names every format can carry: an nftables table, an
// iptables chain prefix (chains are at most 28 characters), an ipset and a
// Squid ACL name.
func exportNameRE(s string) bool {
	if s == "" || len(s) > 20 || !(s[0] >= 'a' && s[0] <= 'z' || s[0] >= 'A' && s[0] <= 'Z') {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func pinLists(pins map[string]netip.Addr) map[string][]netip.Addr {
	out := make(map[string][]netip.Addr, len(pins))
	for name, a := range pins {
		out[name] = []netip.Addr{a}
	}
	return out
}
