package export

import (
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Limits of the kernel and the tools, checked with iptables 1.8.9 and
// ipset 7.17.
const (
	iptChainMax     = 28 // characters of a chain name
	iptLogPrefixMax = 29 // characters of a LOG prefix
	iptCommentMax   = 255
	multiportMax    = 15 // ports in one -m multiport match; a range counts as 2
	ipsetNameMax    = 31 // characters of a set name
)

// WriteIptables writes the IPv4 filter table for iptables-restore; see
// writeIptables for what it holds. WriteIp6tables writes the IPv6 one, and
// WriteIpset the sets both match.
func WriteIptables(w io.Writer, rs *Ruleset) ([]Skip, error) { return writeIptables(w, rs, 4) }

// WriteIp6tables writes the IPv6 filter table for ip6tables-restore.
func WriteIp6tables(w io.Writer, rs *Ruleset) ([]Skip, error) { return writeIptables(w, rs, 6) }

// iptChains are the chains an export adds to the filter table.
type iptChains struct {
	host    string // the host's own output: egret's uid, then egress; jumped from OUTPUT only (owner match)
	egress  string // the network rules, ending in LOG and DROP; from OUTPUT (via host) and FORWARD
	ingress string // ingress rules; from INPUT (and FORWARD towards Segment)
}

func iptChainNames(name string) (iptChains, error) {
	up := strings.ToUpper(name)
	c := iptChains{host: up + "-HOST", egress: up + "-EGRESS", ingress: up + "-INGRESS"}
	if len(c.ingress) > iptChainMax {
		return c, fmt.Errorf("name %q: iptables chain %s is longer than %d characters", name, c.ingress, iptChainMax)
	}
	if name == "" || strings.Trim(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") != "" {
		return c, fmt.Errorf("name %q: use letters, digits and '_' for iptables chains", name)
	}
	return c, nil
}

// validIfname reports whether s is a name Linux takes for an interface.
func validIfname(s string) bool {
	return s != "" && len(s) < 16 && s != "." && s != ".." && !strings.ContainsAny(s, "/: \t\n\r\"'")
}

// writeIptables writes a complete filter table for one family, with the
// same meaning as the nftables export: replies, loopback and (IPv6)
// neighbour discovery accepted; egret's uid let out to DNS and on the
// proxy rules' ports; each network rule of this family accepted by
// protocol, ports and far end (a range, or the ipset of a rule that names
// hosts); everything else logged and dropped.
//
// It is a whole table because iptables-restore cannot add a jump to a
// built-in chain once and only once: loaded without --noflush it replaces
// every rule of the filter table, so loading it again leaves one copy.
// The nat table (egret's redirect) is not touched.
func writeIptables(w io.Writer, rs *Ruleset, family int) ([]Skip, error) {
	chains, err := iptChainNames(rs.Name)
	if err != nil {
		return nil, err
	}
	if rs.Segment != "" && !validIfname(rs.Segment) {
		return nil, fmt.Errorf("segment %q is not an interface name", rs.Segment)
	}
	format, tool := "iptables", "iptables-restore"
	if family == 6 {
		format, tool = "ip6tables", "ip6tables-restore"
	}
	ew := &errWriter{w: w}
	rs.header(ew, "#", format)
	ew.printf("# A complete filter table: `%s FILE` (without --noflush) replaces every rule of the\n", tool)
	ew.printf("# filter table, other tools' included, so loading it again leaves one copy. With --noflush\n")
	ew.printf("# the jumps from the built-in chains would be added again at each load. The nat table\n")
	ew.printf("# (egret's redirect) is not touched. Load the ipset export first: the rules match its sets.\n")
	ew.printf("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n")
	hasIngress := rs.Direction != Egress
	ew.printf(":%s - [0:0]\n:%s - [0:0]\n", chains.host, chains.egress)
	if hasIngress {
		ew.printf(":%s - [0:0]\n", chains.ingress)
	}

	var skips []Skip
	var egress, ingress strings.Builder
	for i := range rs.Entries {
		e := &rs.Entries[i]
		chain, block := chains.egress, &egress
		if e.Direction == "ingress" {
			chain, block = chains.ingress, &ingress
		}
		rules, note, skip := iptRule(e, family, chain)
		if skip != "" {
			skips = append(skips, Skip{ID: e.ID, Reason: skip})
			note = "not expressed: " + skip
		}
		iptBlock(block, e, note, rules)
	}

	iptHostChain(ew, rs, chains, family)
	iptPrelude(ew, chains.egress, family, "egress")
	ew.printf("%s", egress.String())
	iptDrop(ew, chains.egress, rs.Name+" drop ")
	if hasIngress {
		iptPrelude(ew, chains.ingress, family, "ingress")
		ew.printf("%s", ingress.String())
		iptDrop(ew, chains.ingress, rs.Name+" drop in ")
	}
	iptJumps(ew, rs, chains, hasIngress)
	ew.printf("COMMIT\n")
	if ew.err == nil {
		ew.err = rs.WriteOmitted(w, "#")
	}
	return skips, ew.err
}

// iptHostChain lets egret itself out: the owner match is valid only in
// OUTPUT, so these rules have a chain that only OUTPUT jumps to, which
// goes on to the egress rules.
func iptHostChain(ew *errWriter, rs *Ruleset, c iptChains, family int) {
	h := c.host
	ew.printf("-A %s -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n", h)
	ew.printf("-A %s -m conntrack --ctstate INVALID -j DROP\n", h)
	ew.printf("-A %s -o lo -j ACCEPT\n", h)
	owner := fmt.Sprintf("-m owner --uid-owner %d", rs.EgretUID)
	for _, proto := range []string{"udp", "tcp"} {
		ew.printf("-A %s -p %s --dport 53 %s -m comment --comment \"egret's own resolver\" -j ACCEPT\n", h, proto, owner)
	}
	if ports := rs.ProxyPorts(); len(ports) > 0 {
		ew.printf("# The proxy rules' ports: through egret (uid %d) only. The redirect sends every other\n", rs.EgretUID)
		ew.printf("# process's connection to egret, which decides each by name.\n")
		var ranges []portSpan
		for _, p := range ports {
			ranges = append(ranges, portSpan{p, p})
		}
		for _, m := range iptPortMatches("tcp", ranges) {
			ew.printf("-A %s %s %s -m comment --comment \"proxy rules, through egret\" -j ACCEPT\n", h, m, owner)
		}
	}
	ew.printf("-A %s -j %s\n", h, c.egress)
}

// iptPrelude is the start of the egress and ingress chains: replies,
// loopback, and the neighbour discovery no IPv6 packet leaves without.
func iptPrelude(ew *errWriter, chain string, family int, dir string) {
	ew.printf("-A %s -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n", chain)
	ew.printf("-A %s -m conntrack --ctstate INVALID -j DROP\n", chain)
	nd := []int{135, 136, 133} // neighbour solicitation and advertisement, router solicitation
	if dir == "ingress" {
		ew.printf("-A %s -i lo -j ACCEPT\n", chain)
		nd = []int{135, 136, 134} // ... and router advertisement
	}
	if family == 6 {
		for _, typ := range nd {
			ew.printf("-A %s -p ipv6-icmp -m icmp6 --icmpv6-type %d -m comment --comment \"IPv6 neighbour discovery\" -j ACCEPT\n", chain, typ)
		}
	}
}

func iptDrop(ew *errWriter, chain, prefix string) {
	ew.printf("-A %s -j LOG --log-prefix %s\n", chain, iptQuote(truncate(prefix, iptLogPrefixMax)))
	ew.printf("-A %s -j DROP\n", chain)
}

// iptJumps sends the built-in chains' traffic to the export's chains, as
// the nftables export hooks output, forward and input.
func iptJumps(ew *errWriter, rs *Ruleset, c iptChains, hasIngress bool) {
	ew.printf("-A OUTPUT -j %s\n", c.host)
	if rs.Segment == "" {
		ew.printf("-A FORWARD -j %s\n", c.egress)
	} else {
		ew.printf("-A FORWARD -i %s -j %s\n", rs.Segment, c.egress)
		if hasIngress {
			ew.printf("-A FORWARD -o %s -j %s\n", rs.Segment, c.ingress)
		}
	}
	if hasIngress {
		ew.printf("-A INPUT -j %s\n", c.ingress)
	}
}

// iptBlock is an entry's comment lines and rules. iptables-restore takes
// comments only at the start of a line.
func iptBlock(b *strings.Builder, e *Entry, note string, rules []string) {
	fmt.Fprintf(b, "# %s\n", oneLine(e.Describe()))
	if note != "" {
		fmt.Fprintf(b, "#   %s\n", oneLine(note))
	}
	for _, r := range rules {
		fmt.Fprintf(b, "%s\n", r)
	}
}

// iptRule returns an entry's rules for one family, a note for a rule
// this family's file leaves to the other's, or why it has none.
func iptRule(e *Entry, family int, chain string) (rules []string, note, skip string) {
	if e.Proxy {
		// egret decides proxy rules; the host chain lets it out on their ports.
		return nil, "", ""
	}
	if e.Unset != "" {
		return nil, "", fmt.Sprintf("destination ${%s} has no value; set it with --var %s=ADDRESS", e.Unset, e.Unset)
	}
	dir, flag := "dst", "-d"
	if e.Direction == "ingress" {
		dir, flag = "src", "-s"
	}
	var peer string
	switch e.Kind() {
	case "cidr":
		if e.CIDR.Addr().Is4() != (family == 4) {
			if family == 4 {
				return nil, "an IPv6 range: in the ip6tables export", ""
			}
			return nil, "an IPv4 range: in the iptables export", ""
		}
		peer = fmt.Sprintf(" %s %s", flag, e.CIDR.Masked())
	case "any-host":
	default:
		set, reason := ipsetName(e, family)
		if reason != "" {
			return nil, "", reason
		}
		peer = fmt.Sprintf(" -m set --match-set %s %s", set, dir)
	}
	comment := " -m comment --comment " + iptQuote(truncate(e.ID.String(), iptCommentMax))
	for _, m := range iptProtoMatches(e, family) {
		rules = append(rules, fmt.Sprintf("-A %s %s%s%s -j ACCEPT", chain, m, peer, comment))
	}
	return rules, "", ""
}

// iptProtoMatches is the protocol and port matches of an entry: one for
// ICMP or up to 15 ports, more when multiport needs splitting.
func iptProtoMatches(e *Entry, family int) []string {
	if e.Protocol == "icmp" {
		if family == 6 {
			return []string{"-p ipv6-icmp"}
		}
		return []string{"-p icmp"}
	}
	spans := make([]portSpan, len(e.Ports))
	for i, p := range e.Ports {
		spans[i] = portSpan{p.Lo, p.Hi}
	}
	return iptPortMatches(e.Protocol, spans)
}

type portSpan struct{ lo, hi uint16 }

func (s portSpan) String() string {
	if s.lo == s.hi {
		return strconv.Itoa(int(s.lo))
	}
	return fmt.Sprintf("%d:%d", s.lo, s.hi)
}

// iptPortMatches writes the ports as --dport for one port or range, and
// as -m multiport --dports lists of at most 15 ports (a range counts as
// 2) otherwise, one match per list.
func iptPortMatches(proto string, spans []portSpan) []string {
	var out []string
	for _, group := range multiportGroups(spans) {
		if len(group) == 1 {
			out = append(out, fmt.Sprintf("-p %s --dport %s", proto, group[0]))
			continue
		}
		list := make([]string, len(group))
		for i, s := range group {
			list[i] = s.String()
		}
		out = append(out, fmt.Sprintf("-p %s -m multiport --dports %s", proto, strings.Join(list, ",")))
	}
	return out
}

// multiportGroups splits spans, in order, into groups that one multiport
// match takes.
func multiportGroups(spans []portSpan) [][]portSpan {
	var groups [][]portSpan
	var cur []portSpan
	weight := 0
	for _, s := range spans {
		w := 1
		if s.lo != s.hi {
			w = 2
		}
		if weight+w > multiportMax {
			groups, cur, weight = append(groups, cur), nil, 0
		}
		cur, weight = append(cur, s), weight+w
	}
	if len(cur) > 0 {
		groups = append(groups, cur)
	}
	return groups
}

// iptQuote quotes s for iptables-restore, which has no escape for a
// quote inside quotes that every version reads alike.
func iptQuote(s string) string {
	return `"` + strings.NewReplacer(`"`, "'", `\`, "/").Replace(oneLine(s)) + `"`
}

// ipsetName is the set of a rule that names hosts, shared with the
// nftables export and the DNS door, or why ipset cannot have it.
func ipsetName(e *Entry, family int) (name, skip string) {
	name = SetName(e.ID, family)
	if len(name) > ipsetNameMax {
		return "", fmt.Sprintf("its set %s (the name nftables and the DNS door use) is longer than the %d characters ipset allows", name, ipsetNameMax)
	}
	return name, ""
}

// WriteIpset writes `ipset restore` input for the sets the iptables and
// ip6tables exports match: for each rule that names hosts, a hash:ip set
// per family, named as the nftables sets are, holding the --resolve pins.
//
// The sets are created with timeout 0: they take per-element timeouts,
// which the DNS door gives the addresses it answers (the answer's TTL),
// and an element added without one, as the pins are, never expires.
// Loading the file again empties each set and adds the pins, as loading
// the nftables table does: the door's addresses come back as it answers.
// Sets of rules no longer exported stay until `ipset destroy`.
func WriteIpset(w io.Writer, rs *Ruleset) ([]Skip, error) {
	ew := &errWriter{w: w}
	rs.header(ew, "#", "ipset")
	ew.printf("# `ipset restore < FILE` before loading the iptables and ip6tables exports, which match these sets.\n")
	ew.printf("# timeout 0: the DNS door adds addresses with the answer's TTL; the pins (--resolve) never expire.\n")
	ew.printf("# Loading it again empties each set and adds the pins; the door's addresses come back as it answers.\n")
	var skips []Skip
	for i := range rs.Entries {
		e := &rs.Entries[i]
		if e.Proxy || e.Kind() != "host" {
			continue
		}
		ew.printf("# %s\n", oneLine(e.Describe()))
		if _, reason := ipsetName(e, 4); reason != "" {
			skips = append(skips, Skip{ID: e.ID, Reason: reason})
			ew.printf("#   not expressed: %s\n", reason)
			continue
		}
		for _, family := range []int{4, 6} {
			ipsetSet(ew, e, family)
		}
	}
	if ew.err == nil {
		ew.err = rs.WriteOmitted(w, "#")
	}
	return skips, ew.err
}

func ipsetSet(ew *errWriter, e *Entry, family int) {
	name, inet := SetName(e.ID, family), "inet"
	if family == 6 {
		inet = "inet6"
	}
	ew.printf("create %s hash:ip family %s timeout 0 -exist\nflush %s\n", name, inet, name)
	for _, a := range e.Pinned {
		if a.Is4() == (family == 4) {
			ew.printf("add %s %s -exist\n", name, a)
		}
	}
}
