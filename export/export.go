// Package export writes a product's rules for the enforcement points
// operators already run: an nftables table, iptables with ipset, Squid
// ACLs, Kubernetes NetworkPolicy, JSON. Every format reads the same
// Ruleset, built from the compiled policy the proxy decides with, so a
// row means the same thing at every layer.
//
// A format that cannot express a rule writes it as a comment with the
// reason and reports it (Skip); nothing is dropped silently. The package
// does no I/O beyond the writer it is given.
package export

import (
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"

	"github.com/egret-proxy/egret/allowlists"
)

// Direction selects which network rules are exported.
type Direction string

// The directions --direction takes.
const (
	Egress  Direction = "egress"
	Ingress Direction = "ingress"
	Both    Direction = "both"
)

// ParseDirection reads a --direction value.
func ParseDirection(s string) (Direction, error) {
	switch d := Direction(s); d {
	case Egress, Ingress, Both:
		return d, nil
	}
	return "", fmt.Errorf("direction %q: use egress, ingress or both", s)
}

// Includes reports whether rules of the given direction are exported.
func (d Direction) Includes(ruleDirection string) bool {
	return d == Both || string(d) == ruleDirection
}

// Options are what a deployment adds to the rules.
type Options struct {
	Direction Direction
	// Pins are --resolve addresses by normalised name. A rule that names
	// hosts gets the pinned addresses of the names it matches, so a set is
	// filled at export time.
	Pins map[string][]netip.Addr
	// Name is the nftables table, and the prefix of iptables chains, ipset
	// sets and Squid ACLs. Default "egret".
	Name string
	// EgretUID is the uid egret runs as: in the host's output path only
	// egret may use the proxy rules' ports (the redirect sends everyone
	// else to it). Default 65532, the image's and the unit's.
	EgretUID int
	// Segment is the interface towards the guarded segment on a gateway:
	// forwarded traffic from it is egress, to it ingress. Empty: every
	// forwarded packet is egress (a host, or a gateway with one segment).
	Segment string
	// Version is written in the header of every output.
	Version string
	// Options are the document alternatives to include (network rules
	// marked `option:`); rows of the others are Omitted.
	Options []string
}

// Ruleset is the rules of some products, variables substituted, in
// document order: what every format writes.
type Ruleset struct {
	Products []string
	Entries  []Entry
	// Omitted are rows no format writes as a rule, each with why: a
	// document alternative not chosen, or an "outbound internet" row
	// whose every port is a proxy port and so egret's to decide.
	Omitted []Omitted
	Options
}

// Omitted is a row left out of every format on purpose, and why.
type Omitted struct {
	Entry
	Reason string
}

// Entry is one row of a document as an enforcement point sees it: a proxy
// rule (TCP to a name, pattern or CIDR, through egret) or a network rule.
type Entry struct {
	ID        allowlists.ID
	Product   string
	Source    string // the seed document
	Purpose   string
	File      string
	Line      int
	Proxy     bool   // a proxy rule: TCP that goes through egret
	Protocol  string // tcp, udp or icmp
	Direction string // egress or ingress
	Ports     []allowlists.PortRange
	Host      string       // a name or pattern ("" for a CIDR or an unset variable)
	CIDR      netip.Prefix // valid for an address or range
	Paths     []string     // URL path prefixes of a proxy rule
	Broad     string       // why a proxy rule is deliberately over-broad
	Unset     string       // the variable that stands for the whole destination, without a value
	// Pinned are the --resolve addresses of the names Host matches.
	Pinned []netip.Addr
	// ViaEgret are proxy ports taken out of an "outbound internet" row's
	// Ports: egret decides them (see leaveProxyPortsToEgret).
	ViaEgret []uint16

	rule *allowlists.Rule
}

// Skip is a rule a format could not express, and why.
type Skip struct {
	ID     allowlists.ID
	Reason string
}

func (s Skip) String() string { return s.ID.String() + ": " + s.Reason }

// Build gathers the products' rules from the compiled policy. Network
// rules of a direction the options leave out are not entries; proxy rules
// are egress and always are.
func Build(p *allowlists.Policy, products []string, o Options) (*Ruleset, error) {
	if o.Direction == "" {
		o.Direction = Egress
	}
	if o.Name == "" {
		o.Name = "egret"
	}
	if o.EgretUID == 0 {
		o.EgretUID = 65532
	}
	rs := &Ruleset{Products: products, Options: o}
	for _, prod := range products {
		if p.Catalog().Product(prod) == nil {
			return nil, fmt.Errorf("unknown product %q; `egret products` lists them", prod)
		}
		for _, pr := range p.AllRules(prod) {
			rs.Entries = append(rs.Entries, proxyEntry(pr, o))
		}
		for _, nr := range p.NetworkRules(prod) {
			if !o.Direction.Includes(nr.Direction) {
				continue
			}
			e := networkEntry(nr, o)
			if nr.Option != "" && !contains(o.Options, nr.Option) {
				rs.Omitted = append(rs.Omitted, Omitted{e, fmt.Sprintf(
					"a row of the document's %q rule set, an alternative to the rigid rules; --option %s includes it", nr.Option, nr.Option)})
				continue
			}
			rs.Entries = append(rs.Entries, e)
		}
	}
	rs.leaveProxyPortsToEgret()
	return rs, nil
}

// leaveProxyPortsToEgret takes the proxy rules' ports out of egress TCP
// rows to the whole internet (0.0.0.0/0, ::/0, any host). Where a document
// lists names for HTTPS and also opens "outbound internet" on 443, the
// names are what egret enforces; a packet filter that accepted the row
// would let every process past egret on those ports. A row left with no
// ports is Omitted, saying so.
func (rs *Ruleset) leaveProxyPortsToEgret() {
	proxyPorts := rs.ProxyPorts()
	if len(proxyPorts) == 0 {
		return
	}
	kept := rs.Entries[:0]
	for _, e := range rs.Entries {
		if e.Proxy || e.Protocol != "tcp" || e.Direction != "egress" || !e.toWholeInternet() {
			kept = append(kept, e)
			continue
		}
		rest := subtractPorts(e.Ports, proxyPorts)
		if len(rest) == 0 {
			rs.Omitted = append(rs.Omitted, Omitted{e, fmt.Sprintf(
				"outbound internet on the proxy rules' ports (%s): egret decides these by name", e.PortList())})
			continue
		}
		if len(rest) != len(e.Ports) || rest[0] != e.Ports[0] {
			e.ViaEgret = proxyPortsIn(e.Ports, proxyPorts)
		}
		e.Ports = rest
		kept = append(kept, e)
	}
	rs.Entries = kept
}

func (e *Entry) toWholeInternet() bool {
	switch e.Kind() {
	case "any-host":
		return true
	case "cidr":
		return e.CIDR.Bits() == 0
	}
	return false
}

// subtractPorts returns the ranges with the given ports taken out.
func subtractPorts(ranges []allowlists.PortRange, ports []uint16) []allowlists.PortRange {
	out := append([]allowlists.PortRange(nil), ranges...)
	for _, p := range ports {
		var next []allowlists.PortRange
		for _, r := range out {
			switch {
			case p < r.Lo || p > r.Hi:
				next = append(next, r)
			default:
				if r.Lo < p {
					next = append(next, allowlists.PortRange{Lo: r.Lo, Hi: p - 1})
				}
				if p < r.Hi {
					next = append(next, allowlists.PortRange{Lo: p + 1, Hi: r.Hi})
				}
			}
		}
		out = next
	}
	return out
}

func proxyPortsIn(ranges []allowlists.PortRange, ports []uint16) []uint16 {
	var in []uint16
	for _, p := range ports {
		for _, r := range ranges {
			if r.Lo <= p && p <= r.Hi {
				in = append(in, p)
				break
			}
		}
	}
	return in
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func proxyEntry(pr allowlists.ProxyRuleEntry, o Options) Entry {
	e := Entry{
		ID: pr.ID, Product: pr.ID.Product, Purpose: pr.Spec.Purpose, File: pr.File, Line: pr.Spec.Line,
		Proxy: true, Protocol: "tcp", Direction: "egress", Paths: pr.Spec.Paths, Broad: pr.Spec.Broad,
		Unset: pr.Unset, Source: pr.Source,
	}
	for _, port := range pr.Ports {
		e.Ports = append(e.Ports, allowlists.PortRange{Lo: port, Hi: port})
	}
	if r := pr.Rule; r != nil {
		e.Host, e.CIDR, e.rule = r.Host, r.CIDR, r
		e.Pinned = pinned(r, o.Pins)
	}
	return e
}

func networkEntry(nr *allowlists.NetRule, o Options) Entry {
	e := Entry{
		ID: nr.ID, Product: nr.Product, Source: nr.Source, Purpose: nr.Purpose, File: nr.File, Line: nr.Line,
		Protocol: nr.Protocol, Direction: nr.Direction, Ports: nr.PortRanges,
		Host: nr.Host, CIDR: nr.CIDR, Unset: nr.Unset,
	}
	if nr.Active() {
		e.rule = &nr.Rule
		e.Pinned = pinned(&nr.Rule, o.Pins)
	}
	return e
}

// pinned lists the addresses of the pinned names the rule's pattern
// matches, sorted, each once.
func pinned(r *allowlists.Rule, pins map[string][]netip.Addr) []netip.Addr {
	if r.Host == "" || r.IsAnyHost() {
		return nil
	}
	seen := map[netip.Addr]bool{}
	var out []netip.Addr
	for name, addrs := range pins {
		if !r.MatchesName(name) {
			continue
		}
		for _, a := range addrs {
			if !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out
}

// Kind says what an entry's far end is, which decides how a format writes it.
func (e *Entry) Kind() string {
	switch {
	case e.Unset != "":
		return "unset"
	case e.CIDR.IsValid():
		return "cidr"
	case e.rule != nil && e.rule.IsAnyHost():
		return "any-host"
	default:
		return "host"
	}
}

// Regexp is the entry's host pattern as an anchored regular expression
// with egret's meaning ("" for none).
func (e *Entry) Regexp() string {
	if e.rule == nil || e.Host == "" {
		return ""
	}
	return e.rule.Regexp()
}

// IsExactName reports whether Host is one name, not a pattern.
func (e *Entry) IsExactName() bool {
	return e.Kind() == "host" && !e.rule.IsWildcard()
}

// Where is the far end as a person reads it: the pattern, the CIDR, or
// the unset variable.
func (e *Entry) Where() string {
	switch e.Kind() {
	case "unset":
		return "${" + e.Unset + "}"
	case "cidr":
		return e.CIDR.String()
	}
	return e.Host
}

// PortList is the ports as "80,443" or "18600-18699" ("" for icmp).
func (e *Entry) PortList() string {
	s := make([]string, len(e.Ports))
	for i, p := range e.Ports {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// Describe is the one-line provenance every format writes beside a rule:
// "netapp-cvo-aws/n12 udp 53 to ${dns_server} | 001_….txt | DNS (…)".
func (e *Entry) Describe() string {
	ports := e.PortList()
	if ports != "" {
		ports = " " + ports
	}
	dir := "to"
	if e.Direction == "ingress" {
		dir = "from"
	}
	kind := ""
	if e.Proxy {
		kind = " (proxy rule)"
	}
	if len(e.ViaEgret) > 0 {
		kind = fmt.Sprintf(" (ports %v left to egret)", e.ViaEgret)
	}
	return fmt.Sprintf("%s %s%s %s %s%s | %s | %s", e.ID, e.Protocol, ports, dir, e.Where(), kind, e.Source, e.Purpose)
}

// WriteOmitted writes the rows left out on purpose as comment lines
// starting with prefix: every format ends with them, so that no row of a
// document is missing from any output.
func (rs *Ruleset) WriteOmitted(w io.Writer, prefix string) error {
	ew := &errWriter{w: w}
	if len(rs.Omitted) > 0 {
		ew.printf("%s Rows left out on purpose:\n", prefix)
	}
	for i := range rs.Omitted {
		o := &rs.Omitted[i]
		ew.printf("%s   %s\n%s     left out: %s\n", prefix, oneLine(o.Describe()), prefix, o.Reason)
	}
	return ew.err
}

// ProxyPorts is every port of the active proxy rules, sorted: what egret
// itself must be let out on.
func (rs *Ruleset) ProxyPorts() []uint16 {
	seen := map[uint16]bool{}
	var ports []uint16
	for i := range rs.Entries {
		e := &rs.Entries[i]
		if !e.Proxy || e.Unset != "" {
			continue
		}
		for _, p := range e.Ports {
			if !seen[p.Lo] {
				seen[p.Lo] = true
				ports = append(ports, p.Lo)
			}
		}
	}
	sort.Slice(ports, func(i, j int) bool { return ports[i] < ports[j] })
	return ports
}

// errWriter keeps the first write error, so that a format can write line
// after line and check once.
type errWriter struct {
	w   io.Writer
	err error
}

func (ew *errWriter) printf(format string, args ...any) {
	if ew.err == nil {
		_, ew.err = fmt.Fprintf(ew.w, format, args...)
	}
}

// header is the first lines of every output, as comments starting with
// prefix.
func (rs *Ruleset) header(ew *errWriter, prefix, format string) {
	ew.printf("%s egret export --format %s --direction %s --product %s\n", prefix, format, rs.Direction, strings.Join(rs.Products, " --product "))
	ew.printf("%s written by egret %s from the embedded and given allowlists; every rule names its product, document and purpose.\n", prefix, rs.Version)
}
