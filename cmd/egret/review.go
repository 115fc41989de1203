package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/egret-proxy/egret/review"
	"github.com/spf13/cobra"
)

func newReviewCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "review [--format table|json|yaml|html] [--since WHEN] [--until WHEN] [--product NAME]... LOG...",
		Short: "review decision logs (plain or gzip; - for standard input): denies, suggested rules, unused and broad rules",
		Long: `review reads decision logs and shows, per product: the denied destinations
with counts and first/last time and a suggested rule for each, the denies no
rule can fix, the rules that allowed nothing, and the wildcards that allowed
only a few names. A deny is listed under each of the client's products.

--format yaml writes the suggested rules as an allowlist file to add with
--allowlists; an allowlist file holds one product, so when several products
have suggestions, use --out DIR (one file per product) or --product.

WHEN is an RFC 3339 time (2026-11-21T09:00:00Z), a date (2026-11-21, UTC
midnight) or a duration meaning that long before now (24h, 90m).`,
		Args: cobra.MinimumNArgs(1),
		RunE: runReview,
	}
	fs := cmd.Flags()
	fs.String("format", "table", "output format: table, json, yaml (an allowlist patch) or html (one self-contained page)")
	fs.String("since", "", "count lines at or after WHEN")
	fs.String("until", "", "count lines before WHEN")
	fs.StringArray("product", nil, "review only this product (repeatable)")
	fs.String("out", "", "with --format yaml: write one file per product, review-<product>.yaml, into this directory")
	addPolicyFlags(fs)
	return cmd
}

func runReview(cmd *cobra.Command, args []string) error {
	v, err := newViper(cmd)
	if err != nil {
		return err
	}
	format, out := v.GetString("format"), v.GetString("out")
	switch format {
	case "table", "json", "yaml", "html":
	default:
		return usageError("--format %q: use table, json, yaml or html", format)
	}
	if out != "" && format != "yaml" {
		return usageError("--out is for --format yaml")
	}
	// --product is read from the command line only: the configuration's
	// product key is serve's default identity, not a review filter.
	products, _ := cmd.Flags().GetStringArray("product")
	filter, err := reviewFilter(v.GetString("since"), v.GetString("until"), products, time.Now())
	if err != nil {
		return err
	}
	policy, err := loadPolicy(cmd, v)
	if err != nil {
		return err
	}
	agg := review.NewAggregator(filter)
	for _, name := range args {
		if err := readLog(agg, name, cmd.InOrStdin()); err != nil {
			return err
		}
	}
	reportMalformed(cmd.ErrOrStderr(), agg.Stats())
	report := agg.Build(policy)
	w := cmd.OutOrStdout()
	switch format {
	case "json":
		return report.WriteJSON(w)
	case "html":
		return report.WriteHTML(w)
	case "yaml":
		return writePatches(cmd, report, out)
	}
	return report.WriteTable(w)
}

// reviewFilter parses --since, --until and --product.
func reviewFilter(since, until string, products []string, now time.Time) (review.Filter, error) {
	f := review.Filter{Products: products}
	var err error
	if f.Since, err = parseWhen("--since", since, now); err != nil {
		return f, err
	}
	if f.Until, err = parseWhen("--until", until, now); err != nil {
		return f, err
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return f, usageError("--since %s is not before --until %s", since, until)
	}
	return f, nil
}

// parseWhen reads an RFC 3339 time, a date (UTC midnight), or a duration
// meaning that long before now. "" is the zero time (no bound).
func parseWhen(flag, s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, usageError("%s %q: give an RFC 3339 time (2026-11-21T09:00:00Z), a date (2026-11-21) or a duration before now (24h)", flag, s)
}

// logReader takes a decision log: a review's aggregator or a diff's differ.
type logReader interface {
	Read(name string, r io.Reader) error
}

// readLog streams one log ("-" is standard input) into agg.
func readLog(agg logReader, name string, stdin io.Reader) error {
	if name == "-" {
		return wrapReadError(agg.Read("standard input", stdin))
	}
	f, err := os.Open(name)
	if err != nil {
		return usageError("%v", err)
	}
	defer f.Close()
	return wrapReadError(agg.Read(name, f))
}

func wrapReadError(err error) error {
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	return nil
}

// reportMalformed says on standard error how many lines were skipped, and
// where the first few are.
func reportMalformed(w io.Writer, s review.Stats) {
	if s.Malformed == 0 {
		return
	}
	for _, at := range s.MalformedAt {
		fmt.Fprintf(w, "egret: review: %s\n", at)
	}
	fmt.Fprintf(w, "egret: review: skipped %d malformed lines\n", s.Malformed)
}

// writePatches writes the suggested rules as allowlist files: to standard
// output when they are for one product, else one file per product in dir.
func writePatches(cmd *cobra.Command, r *review.Report, dir string) error {
	patches, unpatched, err := r.Patches()
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	for _, why := range unpatched {
		fmt.Fprintf(cmd.ErrOrStderr(), "egret: review: left out of the patch: %s\n", why)
	}
	if len(patches) == 0 {
		fmt.Fprintln(cmd.ErrOrStderr(), "egret: review: no rule to suggest; nothing written")
		return nil
	}
	if dir == "" {
		if len(patches) > 1 {
			names := make([]string, len(patches))
			for i, p := range patches {
				names[i] = p.Product
			}
			return usageError("review: %d products have suggestions (%s) and an allowlist file holds one: write one file per product with --out DIR, or pick one with --product",
				len(patches), strings.Join(names, ", "))
		}
		_, err := cmd.OutOrStdout().Write(patches[0].Data)
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return usageError("--out: %v", err)
	}
	for _, p := range patches {
		path := filepath.Join(dir, "review-"+p.Product+".yaml")
		if err := os.WriteFile(path, p.Data, 0o644); err != nil {
			return &exitError{code: 2, err: err}
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "egret: review: wrote %s\n", path)
	}
	return nil
}
