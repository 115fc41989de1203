package main

import (
	"fmt"

	"github.com/egret-proxy/egret/allowlists"
	"github.com/egret-proxy/egret/review"
	"github.com/spf13/cobra"
	"github.com/spf13/viper"
)

func newDiffCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "diff [--config NEW.yaml] [--allowlists DIR]... LOG...",
		Short: "Replay a decision log through a changed policy and show what it would change",
		Long: `diff replays every decision line of the logs (plain or gzip, "-" for
standard input) through the policy of --config, --allowlists, --var and the
embedded allowlists, with the same decision function the proxy runs, and
shows the destinations whose decision changes: allows that would become
denies (with the rule that allowed them), and denies that would become allows
(with the new rule). Denies that no policy decides (auth, private-address,
bad-request, …) are counted, not replayed.

Each line is replayed as its identity: with --config, a client of that name
gets the file's products for it and any other identity the file's default
products (product:), as serve would; without --config, the products the line
logged.

Exit status: 0 when nothing the log shows allowed would be denied, 1 when
something would (so the command can gate a change in CI), 2 on a usage or
read error.`,
		Args: cobra.MinimumNArgs(1),
		RunE: runDiff,
	}
	cmd.Flags().String("format", "table", "output format: table, json or html (one self-contained page)")
	addPolicyFlags(cmd.Flags())
	return cmd
}

func runDiff(cmd *cobra.Command, args []string) error {
	v, err := newViper(cmd)
	if err != nil {
		return err
	}
	format := v.GetString("format")
	if format != "table" && format != "json" && format != "html" {
		return usageError("--format %q: use table, json or html", format)
	}
	policy, err := loadPolicy(cmd, v)
	if err != nil {
		return err
	}
	identity, err := diffIdentities(v, policy)
	if err != nil {
		return err
	}
	d := review.NewDiffer()
	for _, name := range args {
		if err := readLog(d, name, cmd.InOrStdin()); err != nil {
			return err
		}
	}
	reportMalformed(cmd.ErrOrStderr(), d.Stats())
	if n := d.Stats().Untracked; n > 0 {
		fmt.Fprintf(cmd.ErrOrStderr(), "egret: diff: %d decision lines past the cap on distinct destinations were not replayed\n", n)
	}
	rep, err := d.Build(policy, identity)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	w := cmd.OutOrStdout()
	switch format {
	case "json":
		err = rep.WriteJSON(w)
	case "html":
		err = rep.WriteHTML(w)
	default:
		err = rep.WriteTable(w)
	}
	if err != nil {
		return err
	}
	if rep.Breaks() {
		return &exitError{code: 1, err: fmt.Errorf("diff: %d destinations the log shows allowed would be denied", len(rep.NowDenied))}
	}
	return nil
}

// diffIdentities maps a logged identity to the identity the new policy
// gives it: with a configuration file, its clients' products by name and
// its default products for any other identity; without one, the products
// the line logged.
func diffIdentities(v *viper.Viper, p *allowlists.Policy) (review.IdentityFunc, error) {
	if v.GetString("config") == "" {
		return func(name string, logged []string) (allowlists.Identity, error) {
			return p.Identity(name, logged...)
		}, nil
	}
	byName := map[string][]string{}
	list, _ := v.Get("clients").([]any)
	for i, e := range list {
		m, ok := e.(map[string]any)
		if !ok {
			return nil, usageError("config %s: clients[%d] is not a mapping", v.GetString("config"), i)
		}
		name, _ := m["name"].(string)
		var products []string
		ps, _ := m["products"].([]any)
		for _, prod := range ps {
			products = append(products, fmt.Sprint(prod))
		}
		byName[name] = products
	}
	def := v.GetStringSlice("product")
	return func(name string, _ []string) (allowlists.Identity, error) {
		if products, ok := byName[name]; ok && name != "" {
			return p.Identity(name, products...)
		}
		return p.Identity(name, def...)
	}, nil
}
