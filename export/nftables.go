package export

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/egret-proxy/egret/allowlists"
)

// SetName is the nftables set (and ipset) that holds the addresses of a
// rule that names hosts, for one address family (4 or 6): the product
// with '-' as '_', the rule's kind and number, and the family, e.g.
// dt_cloud_connector_n3_v4. ipset takes at most 31 characters, so a
// product whose name would not fit has each of its words cut to four
// letters (cisc_clou_pack_stor_n2_v4). The DNS door adds its answers to
// the set of this name; this is the one place the name is made.
func SetName(id allowlists.ID, family int) string {
	suffix := fmt.Sprintf("_%c%d_v%d", id.Kind, id.N, family)
	product := strings.ReplaceAll(id.Product, "-", "_")
	if len(product)+len(suffix) > maxSetName {
		words := strings.Split(product, "_")
		for i, w := range words {
			if len(w) > 4 {
				words[i] = w[:4]
			}
		}
		product = strings.Join(words, "_")
	}
	return product + suffix
}

// maxSetName is ipset's limit (IPSET_MAXNAMELEN 32, with the NUL).
const maxSetName = 31

// WriteNftables writes one complete table (inet family) for a host or a
// segment gateway, loadable with `nft -f`. Loading it replaces an earlier
// load of the same table. The table:
//
//   - accepts replies (ct state established,related), loopback and IPv6
//     neighbour discovery, without which no IPv6 packet leaves;
//   - lets egret's uid out on the proxy rules' TCP ports and to DNS: proxy
//     traffic reaches the internet only through egret;
//   - accepts each network rule: protocol, ports, and the far end as an
//     address range or as the named sets (one per family) of a rule that
//     names hosts, which --resolve pins fill now and the DNS door fills
//     with what it answers;
//   - counts, logs (prefix "<name> drop ") and drops everything else.
//
// Egress rules hook output and forward, ingress rules input (and forward
// towards Segment when set).
func WriteNftables(w io.Writer, rs *Ruleset) ([]Skip, error) {
	ew := &errWriter{w: w}
	rs.header(ew, "#", "nftables")
	name := rs.Name
	ew.printf("# Loading this file replaces the table %s; the addresses the DNS door added go with it.\n", name)
	ew.printf("table inet %s\ndelete table inet %s\n\n", name, name)
	ew.printf("table inet %s {\n", name)

	var skips []Skip
	var egress, ingress []string
	for i := range rs.Entries {
		e := &rs.Entries[i]
		lines, sets, skip := nftRule(e)
		for _, s := range sets {
			ew.printf("%s", s)
		}
		if skip != "" {
			skips = append(skips, Skip{ID: e.ID, Reason: skip})
		}
		block := nftBlock(e, lines, skip)
		if e.Direction == "ingress" {
			ingress = append(ingress, block)
		} else {
			egress = append(egress, block)
		}
	}

	ew.printf("\tchain egress {\n")
	ew.printf("\t\tct state established,related accept\n\t\tct state invalid drop\n")
	ew.printf("\t\toifname \"lo\" accept\n")
	ew.printf("\t\ticmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit } accept comment \"IPv6 neighbour discovery\"\n")
	ew.printf("\t\tmeta skuid %d meta l4proto { tcp, udp } th dport 53 accept comment \"egret's own resolver\"\n", rs.EgretUID)
	if ports := rs.ProxyPorts(); len(ports) > 0 {
		ew.printf("\t\t# The proxy rules' ports: through egret (uid %d) only. The redirect sends every other\n", rs.EgretUID)
		ew.printf("\t\t# process's connection to egret, which decides each by name.\n")
		ew.printf("\t\tmeta skuid %d tcp dport %s accept comment \"proxy rules, through egret\"\n", rs.EgretUID, nftPortSet(ports))
	}
	for _, b := range egress {
		ew.printf("%s", b)
	}
	ew.printf("\t\tcounter log prefix \"%s drop \" drop\n\t}\n\n", name)

	hasIngress := rs.Direction != Egress
	if hasIngress {
		ew.printf("\tchain ingress {\n")
		ew.printf("\t\tct state established,related accept\n\t\tct state invalid drop\n")
		ew.printf("\t\tiifname \"lo\" accept\n")
		ew.printf("\t\ticmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert } accept comment \"IPv6 neighbour discovery\"\n")
		for _, b := range ingress {
			ew.printf("%s", b)
		}
		ew.printf("\t\tcounter log prefix \"%s drop in \" drop\n\t}\n\n", name)
	}

	ew.printf("\tchain output {\n\t\ttype filter hook output priority filter; policy accept;\n\t\tjump egress\n\t}\n")
	ew.printf("\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n")
	switch {
	case rs.Segment == "":
		ew.printf("\t\tjump egress\n")
	default:
		ew.printf("\t\tiifname %s jump egress\n", strconv.Quote(rs.Segment))
		if hasIngress {
			ew.printf("\t\toifname %s jump ingress\n", strconv.Quote(rs.Segment))
		}
	}
	ew.printf("\t}\n")
	if hasIngress {
		ew.printf("\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t\tjump ingress\n\t}\n")
	}
	ew.printf("}\n")
	if ew.err == nil {
		ew.err = rs.WriteOmitted(w, "#")
	}
	return skips, ew.err
}

// nftBlock is an entry's comment lines and rules, indented for a chain.
func nftBlock(e *Entry, lines []string, skip string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\t\t# %s\n", oneLine(e.Describe()))
	if skip != "" {
		fmt.Fprintf(&b, "\t\t# not expressed: %s\n", skip)
	}
	for _, l := range lines {
		fmt.Fprintf(&b, "\t\t%s\n", l)
	}
	return b.String()
}

// nftRule returns the rules and the set declarations for one entry, or
// why it has none.
func nftRule(e *Entry) (rules, sets []string, skip string) {
	if e.Proxy {
		// Proxy rules are egret's to decide: the table only lets egret out
		// on their ports (see WriteNftables). Nothing to skip.
		return nil, nil, ""
	}
	if e.Unset != "" {
		return nil, nil, fmt.Sprintf("destination ${%s} has no value; set it with --var %s=ADDRESS", e.Unset, e.Unset)
	}
	peer := "daddr"
	if e.Direction == "ingress" {
		peer = "saddr"
	}
	comment := fmt.Sprintf("comment %s", strconv.Quote(e.ID.String()))
	match4, match6 := nftProto(e, 4), nftProto(e, 6)
	switch e.Kind() {
	case "cidr":
		if e.CIDR.Addr().Is4() {
			return []string{fmt.Sprintf("ip %s %s %s accept %s", peer, e.CIDR, match4, comment)}, nil, ""
		}
		return []string{fmt.Sprintf("ip6 %s %s %s accept %s", peer, e.CIDR, match6, comment)}, nil, ""
	case "any-host":
		return []string{fmt.Sprintf("%s accept %s", strings.TrimSpace(match4), comment),
			fmt.Sprintf("%s accept %s", strings.TrimSpace(match6), comment)}, nil, ""
	}
	v4, v6 := SetName(e.ID, 4), SetName(e.ID, 6)
	sets = []string{nftSet(v4, "ipv4_addr", e, 4), nftSet(v6, "ipv6_addr", e, 6)}
	rules = []string{
		fmt.Sprintf("ip %s @%s %s accept %s", peer, v4, match4, comment),
		fmt.Sprintf("ip6 %s @%s %s accept %s", peer, v6, match6, comment),
	}
	return rules, sets, ""
}

// nftProto matches the entry's protocol and ports for one family.
func nftProto(e *Entry, family int) string {
	if e.Protocol == "icmp" {
		if family == 6 {
			return "meta l4proto ipv6-icmp"
		}
		return "meta l4proto icmp"
	}
	ports := make([]string, len(e.Ports))
	for i, p := range e.Ports {
		ports[i] = p.String()
	}
	if len(ports) == 1 {
		return fmt.Sprintf("%s dport %s", e.Protocol, ports[0])
	}
	return fmt.Sprintf("%s dport { %s }", e.Protocol, strings.Join(ports, ", "))
}

func nftSet(name, typ string, e *Entry, family int) string {
	var b strings.Builder
	if family == 4 {
		fmt.Fprintf(&b, "\t# %s\n", oneLine(e.Describe()))
	}
	fmt.Fprintf(&b, "\tset %s {\n\t\ttype %s\n\t\tflags timeout\n", name, typ)
	fmt.Fprintf(&b, "\t\tcomment %s\n", strconv.Quote(truncate(e.Host, 120)))
	var elems []string
	for _, a := range e.Pinned {
		if (family == 4) == a.Is4() {
			elems = append(elems, a.String())
		}
	}
	if len(elems) > 0 {
		fmt.Fprintf(&b, "\t\telements = { %s }\n", strings.Join(elems, ", "))
	}
	b.WriteString("\t}\n")
	return b.String()
}

func nftPortSet(ports []uint16) string {
	if len(ports) == 1 {
		return strconv.Itoa(int(ports[0]))
	}
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.Itoa(int(p))
	}
	return "{ " + strings.Join(s, ", ") + " }"
}

// oneLine keeps a comment on its line.
func oneLine(s string) string {
	return strings.NewReplacer("\n", " ", "\r", " ").Replace(s)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
