package review

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"text/tabwriter"
)

// WriteJSON writes the report as one indented JSON document.
func (r *Report) WriteJSON(w io.Writer) error { return writeJSON(w, r) }

// writeJSON writes v as one indented JSON document (review and diff).
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// WriteTable writes the report for a terminal: a summary line, then per
// product its denied destinations with the suggested rules, the denies no
// rule can fix, the rules that allowed nothing and the wildcards that
// allowed only a few names.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	s := r.Stats
	fmt.Fprintf(tw, "period %s .. %s: %d lines, %d decisions (%d allow, %d deny), %d outside period or products, %d malformed\n",
		stamp(r.From), stamp(r.To), s.Lines, s.Decisions, s.Allows, s.Denies, s.Skipped, s.Malformed)
	if s.Untracked > 0 {
		fmt.Fprintf(tw, "%d lines past the limit of distinct destinations or rules were counted but not itemised\n", s.Untracked)
	}
	for _, p := range r.Products {
		writeProduct(tw, p)
	}
	return tw.Flush()
}

func writeProduct(w io.Writer, p ProductReport) {
	fmt.Fprintf(w, "\nproduct %s\n", productLabel(p.Name))
	if !p.Known && p.Name != "" {
		fmt.Fprintln(w, "  not in the loaded allowlists (pass --allowlists DIR to review its rules)")
	}
	if len(p.Denied) > 0 {
		fmt.Fprintf(w, "  denied destinations (%d)\n", len(p.Denied))
		fmt.Fprintln(w, "    COUNT\tFIRST\tLAST\tDESTINATION\tSUGGESTED RULE")
		for _, d := range p.Denied {
			fmt.Fprintf(w, "    %d\t%s\t%s\t%s\t%s\n", d.Count, stamp(d.First), stamp(d.Last), d.Target(), suggestionText(d))
		}
	}
	if len(p.Unfixable) > 0 {
		fmt.Fprintf(w, "  denies no allow rule fixes (%d)\n", len(p.Unfixable))
		fmt.Fprintln(w, "    COUNT\tFIRST\tLAST\tDESTINATION\tREASON")
		for _, d := range p.Unfixable {
			fmt.Fprintf(w, "    %d\t%s\t%s\t%s\t%s\n", d.Count, stamp(d.First), stamp(d.Last), d.Target(), d.Reason)
		}
	}
	if len(p.Suggested) > 0 {
		fmt.Fprintf(w, "  suggested rules (%d; --format yaml writes them as an allowlist file)\n", len(p.Suggested))
		for _, s := range p.Suggested {
			fmt.Fprintf(w, "    %s\tdenied %s\t%s\n", s.Text(), times(s.Count), strings.Join(s.Names, ", "))
		}
	}
	if len(p.Unused) > 0 {
		fmt.Fprintf(w, "  rules that allowed nothing in the period (%d; candidates to remove)\n", len(p.Unused))
		for _, u := range p.Unused {
			fmt.Fprintf(w, "    %s\t%s:%d\n", u.Rule, u.File, u.Line)
		}
	}
	if len(p.Narrow) > 0 {
		fmt.Fprintf(w, "  wildcards that allowed %d names or fewer (candidates to narrow)\n", fewNames)
		for _, n := range p.Narrow {
			fmt.Fprintf(w, "    %s\t%s:%d\t%d allows: %s\n", n.Rule, n.File, n.Line, n.Allows, strings.Join(n.Names, ", "))
		}
	}
	if len(p.Denied)+len(p.Unfixable) == 0 {
		fmt.Fprintln(w, "  nothing denied")
	}
}

func suggestionText(d Denied) string {
	switch {
	case d.AllowedBy != "":
		return "(allowed now by " + d.AllowedBy + ")"
	case d.Rule == "":
		return "(none: not a valid rule)"
	}
	return d.Rule
}

// Text returns the rule as check prints rules: pattern:ports paths.
func (s Suggestion) Text() string {
	ports := make([]string, len(s.Ports))
	for i, p := range s.Ports {
		ports[i] = strconv.Itoa(p)
	}
	return strings.TrimSpace(s.Pattern() + ":" + strings.Join(ports, ",") + " " + strings.Join(s.Paths, " "))
}

func productLabel(name string) string { return cmp.Or(name, "(no product)") }

func hostPort(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }
