package review

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/egret-proxy/egret/allowlists"
)

// A diff replays the decisions of a log through another policy (`egret
// diff`): the same Decide the proxy runs, on each distinct destination the
// log holds, so a tightened policy shows which logged allows it would deny
// before it is deployed.

// IdentityFunc gives the identity a logged decision is replayed as in the
// new policy, from the identity name and products the line logged.
type IdentityFunc func(identity string, products []string) (allowlists.Identity, error)

// Differ gathers the distinct decisions of logs; memory grows with the
// distinct (identity, products, destination, outcome) keys, not the lines.
type Differ struct {
	parser  lineParser
	stats   Stats
	entries map[diffKey]*diffEntry
}

type diffKey struct {
	identity, products string // products joined with ","
	host               string
	port               int
	path               string
	allowed            bool   // logged decision: allow, or deny/would-deny
	before             string // the rule that allowed, or the deny reason
}

type diffEntry struct {
	count       int
	first, last time.Time
}

// maxDiffKeys bounds the distinct keys a diff holds (a few hundred bytes
// each), as maxDestinations does for a review.
const maxDiffKeys = 200_000

// NewDiffer returns an empty Differ.
func NewDiffer() *Differ { return &Differ{entries: map[diffKey]*diffEntry{}} }

// Read streams one log, plain or gzip, into the differ.
func (d *Differ) Read(name string, r io.Reader) error { return readLog(name, r, d) }

// Stats returns the counts so far.
func (d *Differ) Stats() Stats { return d.stats }

func (d *Differ) malformed(name string, line int, why string) { d.stats.malformed(name, line, why) }

func (d *Differ) addLine(name string, lineNo int, line []byte) {
	d.stats.Lines++
	r, err := d.parser.parse(line)
	if err != nil {
		d.malformed(name, lineNo, err.Error())
		return
	}
	if string(r.msg) != "decision" {
		return // close lines repeat their decision line
	}
	k := diffKey{identity: string(r.identity), host: string(r.host), port: r.port, path: string(r.path)}
	switch string(r.decision) {
	case "allow":
		k.allowed, k.before = true, string(r.rule)
	case "deny", "would-deny":
		k.before = string(r.reason)
	default:
		d.malformed(name, lineNo, fmt.Sprintf("decision %q is not allow, deny or would-deny", r.decision))
		return
	}
	names := make([]string, len(r.products))
	for i, p := range r.products {
		names[i] = string(p)
	}
	k.products = strings.Join(names, ",")
	d.stats.Decisions++
	if k.allowed {
		d.stats.Allows++
	} else {
		d.stats.Denies++
	}
	e := d.entries[k]
	if e == nil {
		if len(d.entries) >= maxDiffKeys {
			d.stats.Untracked++ // said on standard error; the diff is then incomplete
			return
		}
		e = &diffEntry{first: r.time}
		d.entries[k] = e
	}
	e.count++
	if r.time.Before(e.first) {
		e.first = r.time
	}
	if r.time.After(e.last) {
		e.last = r.time
	}
}

// DiffRow is one destination whose decision the new policy changes.
type DiffRow struct {
	Identity string    `json:"identity"`
	Products []string  `json:"products"`
	Host     string    `json:"host"`
	Port     int       `json:"port"`
	Path     string    `json:"path,omitempty"`
	Count    int       `json:"count"`
	First    time.Time `json:"first"`
	Last     time.Time `json:"last"`
	// Before is the rule that allowed it, or the reason it was denied.
	Before string `json:"before"`
	// After is the new policy's rule (its pattern or CIDR, as the log's
	// rule field), or its deny reason.
	After string `json:"after"`
}

// Destination is the row's host:port and path, or "host (DNS)" for a DNS
// door line.
func (row DiffRow) Destination() string {
	if row.Port == 0 {
		return row.Host + " (DNS)"
	}
	return fmt.Sprintf("%s:%d%s", row.Host, row.Port, row.Path)
}

// DiffReport is what the new policy changes in the log.
type DiffReport struct {
	// NowDenied are logged allows the new policy denies: what the change
	// would break.
	NowDenied []DiffRow `json:"now_denied"`
	// NowAllowed are logged denies (and would-denies) it allows.
	NowAllowed []DiffRow `json:"now_allowed"`
	// Unchanged counts decision lines the new policy decides the same way;
	// NotReplayed, denies whose reason is not the policy's (auth,
	// private-address, bad-request, …), which no policy change alters.
	Unchanged   DiffCounts `json:"unchanged"`
	NotReplayed int        `json:"not_replayed"`
}

// DiffCounts are lines by their (unchanged) decision.
type DiffCounts struct {
	Allow int `json:"allow"`
	Deny  int `json:"deny"`
}

// Breaks reports whether the new policy denies something the log shows
// allowed: `egret diff` exits 1 then.
func (r *DiffReport) Breaks() bool { return len(r.NowDenied) > 0 }

// policyReason reports whether a deny with this reason came from the policy
// (Decide), so that another policy could decide it otherwise.
func policyReason(reason string) bool {
	return reason == "no-rule" || reason == "path" || reason == "deny-entry" || reason == "no-sni"
}

// Build replays every distinct logged decision through p.
func (d *Differ) Build(p *allowlists.Policy, identity IdentityFunc) (*DiffReport, error) {
	rep := &DiffReport{NowDenied: []DiffRow{}, NowAllowed: []DiffRow{}}
	for k, e := range d.entries {
		if !k.allowed && !policyReason(k.before) {
			rep.NotReplayed += e.count
			continue
		}
		var products []string
		if k.products != "" {
			products = strings.Split(k.products, ",")
		}
		id, err := identity(k.identity, products)
		if err != nil {
			return nil, err
		}
		allow, after := replay(p, id, k)
		row := DiffRow{Identity: k.identity, Products: id.Products, Host: k.host, Port: k.port, Path: k.path,
			Count: e.count, First: e.first, Last: e.last, Before: k.before, After: after}
		switch {
		case k.allowed && !allow:
			rep.NowDenied = append(rep.NowDenied, row)
		case !k.allowed && allow:
			rep.NowAllowed = append(rep.NowAllowed, row)
		case allow:
			rep.Unchanged.Allow += e.count
		default:
			rep.Unchanged.Deny += e.count
		}
	}
	for _, rows := range [][]DiffRow{rep.NowDenied, rep.NowAllowed} {
		slices.SortFunc(rows, func(a, b DiffRow) int {
			return cmpRows(a, b)
		})
	}
	return rep, nil
}

func cmpRows(a, b DiffRow) int {
	if c := strings.Compare(a.Identity, b.Identity); c != 0 {
		return c
	}
	if c := strings.Compare(a.Host, b.Host); c != 0 {
		return c
	}
	if a.Port != b.Port {
		return a.Port - b.Port
	}
	return strings.Compare(a.Path, b.Path)
}

// replay decides k's destination under p and returns the verdict and the
// rule pattern that allows (as the log's rule field) or the deny reason.
func replay(p *allowlists.Policy, id allowlists.Identity, k diffKey) (bool, string) {
	v := decideLogged(p, id, k.host, k.port, k.path)
	switch {
	case !v.Allow:
		return false, v.Reason.String()
	case v.Rule != nil:
		return true, v.Rule.Pattern()
	}
	return true, allowlists.ReasonRule.String()
}

// WriteJSON writes the report as one indented JSON document.
func (r *DiffReport) WriteJSON(w io.Writer) error { return writeJSON(w, r) }

// WriteTable writes the report for a terminal.
func (r *DiffReport) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	section := func(title string, rows []DiffRow, before, after string) {
		fmt.Fprintf(tw, "%s: %d\n", title, len(rows))
		if len(rows) == 0 {
			fmt.Fprintln(tw)
			return
		}
		fmt.Fprintf(tw, "IDENTITY\tPRODUCTS\tDESTINATION\tCOUNT\tFIRST\tLAST\t%s\t%s\n", before, after)
		for _, row := range rows {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", row.Identity, strings.Join(row.Products, ","), row.Destination(),
				row.Count, stamp(row.First), stamp(row.Last), row.Before, row.After)
		}
		fmt.Fprintln(tw)
	}
	section("allowed before, denied now", r.NowDenied, "ALLOWED BY", "DENIED NOW")
	section("denied before, allowed now", r.NowAllowed, "DENIED FOR", "ALLOWED BY")
	fmt.Fprintf(tw, "unchanged: %d allowed, %d denied; not replayed (denies no policy decides): %d\n",
		r.Unchanged.Allow, r.Unchanged.Deny, r.NotReplayed)
	return tw.Flush()
}
