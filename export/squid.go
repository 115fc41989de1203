package export

import (
	"fmt"
	"hash/fnv"
	"io"
	"net/netip"
	"regexp"
	"strings"
)

// squidACLNameMax is the longest ACL name Squid 5.7 can use: it defines
// one of 63 characters, then finds no such ACL where a rule names it
// ("ACL not found", FATAL); at 64 the acl line itself is FATAL.
const squidACLNameMax = 62

// WriteSquid writes the proxy rules as Squid `acl` and `http_access` lines,
// for a Squid that proxies CONNECT and plain HTTP without SSL bumping
// (Debian's GnuTLS build and the OpenSSL one alike). The fragment stands
// alone in a bare squid.conf: it defines every ACL it uses, its own
// CONNECT method among them, and ends with `http_access deny all`.
//
// It keeps egret's meaning where Squid's differs:
//
//   - `*.example.com` is a dstdom_regex for one or more labels in front,
//     never the apex (Squid's own `.example.com` matches the apex too);
//     other patterns are regular expressions with egret's meaning, exact
//     names are dstdomain;
//   - names never match IP-literal requests (-n: no reverse lookups),
//     as egret never matches a host rule by PTR;
//   - each rule allows its own ports only;
//   - a host whose rules have paths is allowed for CONNECT (the path is
//     unknown, as egret logs "paths":"unenforced") and for plain HTTP only
//     under a prefix, at a segment boundary, and never for a path that
//     egret's cleaning would take elsewhere or refuses (see squidUnsafePath);
//   - a cidr rule is dst, matched against the addresses Squid resolves
//     for the name, as egret serve matches the address it resolved.
//
// Network rules are the packet filter's (nftables, iptables): a summary
// and one comment each, and no Skip, since no proxy could carry them and
// the packet-filter formats do. A proxy rule whose destination is an
// unset variable, or whose range Squid cannot match as egret does, is a
// comment and a Skip.
func WriteSquid(w io.Writer, rs *Ruleset) ([]Skip, error) {
	return writeSquid(w, rs, false)
}

// WriteSquidSSLBump writes what WriteSquid does, plus `ssl_bump` rules for
// an intercepting `https_port … intercept ssl-bump name=<name>_tls`: peek
// at the ClientHello, splice (no decryption) when its SNI is a name a rule
// allows on the connection's port, terminate otherwise. It needs Squid's
// OpenSSL build (Debian's squid-openssl): the GnuTLS build refuses
// ssl::server_name and at_step.
func WriteSquidSSLBump(w io.Writer, rs *Ruleset) ([]Skip, error) {
	return writeSquid(w, rs, true)
}

func writeSquid(w io.Writer, rs *Ruleset, bump bool) ([]Skip, error) {
	ew := &errWriter{w: w}
	format := "squid"
	if bump {
		format = "squid-sslbump"
	}
	rs.header(ew, "#", format)
	n := rs.Name
	ew.printf("# Include it in squid.conf (`include /etc/squid/conf.d/egret.conf`) after your own http_access\n")
	ew.printf("# rules for the clients; it ends with `http_access deny all`.\n")
	if bump {
		ew.printf("# For transparent TLS, the port must be named %s_tls:\n", n)
		ew.printf("#   https_port 3130 intercept ssl-bump name=%s_tls tls-cert=/etc/squid/bump.pem generate-host-certificates=off\n", n)
	}
	ew.printf("\nacl %s_connect method CONNECT\n", n)
	if squidHasPaths(rs) {
		ew.printf("# Paths that egret's cleaning would take out of a prefix (a .. segment), or that it refuses\n")
		ew.printf("# (a backslash, a malformed escape): never allowed by a rule with paths.\n")
		ew.printf("acl %s_path_unsafe urlpath_regex -i %s\n", n, strings.Join(squidUnsafePath, " "))
	}

	var skips []Skip
	var splices []string
	var network []*Entry
	for i := range rs.Entries {
		e := &rs.Entries[i]
		if !e.Proxy {
			network = append(network, e)
			continue
		}
		ew.printf("\n# %s\n", oneLine(e.Describe()))
		splice, skip := squidRule(ew, n, e, bump)
		if skip != "" {
			ew.printf("# not expressed: %s\n", skip)
			skips = append(skips, Skip{ID: e.ID, Reason: skip})
			continue
		}
		if splice != "" {
			splices = append(splices, splice)
		}
	}
	if bump {
		ew.printf("\n# Intercepted TLS: the fake CONNECT is let through to ssl_bump, which decides by SNI.\n")
		ew.printf("acl %s_tls myportname %s_tls\n", n, n)
		ew.printf("http_access allow %s_tls %s_connect\n", n, n)
		ew.printf("acl %s_step1 at_step SslBump1\n", n)
		ew.printf("ssl_bump peek %s_step1\n", n)
		for _, s := range splices {
			ew.printf("%s\n", s)
		}
		ew.printf("ssl_bump terminate all\n")
	}
	ew.printf("\n# Whatever no rule above allows.\nhttp_access deny all\n")
	if len(network) > 0 {
		ew.printf("\n# Network rules: for the packet filter (egret export --format nftables or iptables), not Squid:\n")
		for _, e := range network {
			ew.printf("#   %s\n", oneLine(e.Describe()))
		}
	}
	if ew.err == nil {
		ew.err = rs.WriteOmitted(w, "#")
	}
	return skips, ew.err
}

// squidRule writes one proxy rule's ACLs and http_access lines and
// returns its ssl_bump splice line (bump only), or why the rule has none.
func squidRule(ew *errWriter, n string, e *Entry, bump bool) (splice, skip string) {
	id := squidID(n, e)
	dst := ""
	switch e.Kind() {
	case "unset":
		return "", fmt.Sprintf("destination ${%s} has no value; set it with --var %s=NAME", e.Unset, e.Unset)
	case "cidr":
		ranges := squidCIDR(e.CIDR)
		if len(ranges) == 0 {
			return "", fmt.Sprintf("%s is IPv4-mapped IPv6: egret reads such an address as IPv4, so the range matches nothing it dials, and Squid would match IPv4 addresses with it", e.CIDR)
		}
		ew.printf("acl %s dst %s\n", id, strings.Join(ranges, " "))
		dst = " " + id
	case "host":
		if e.IsExactName() {
			ew.printf("acl %s dstdomain -n %s\n", id, e.Host)
		} else {
			ew.printf("acl %s dstdom_regex -n -i %s\n", id, e.Regexp())
		}
		dst = " " + id
	}
	ew.printf("acl %s_port port %s\n", id, squidPorts(e))
	if len(e.Paths) == 0 {
		ew.printf("http_access allow%s %s_port\n", dst, id)
	} else {
		ew.printf("acl %s_path urlpath_regex %s\n", id, squidPathRegexps(e.Paths))
		ew.printf("http_access allow %s_connect%s %s_port\n", n, dst, id)
		ew.printf("http_access allow !%s_connect%s %s_port %s_path !%s_path_unsafe\n", n, dst, id, id, n)
	}
	if bump {
		splice = squidSplice(ew, e, id)
	}
	return splice, ""
}

// squidSplice declares the SNI ACL of a rule and returns its splice line.
// A cidr rule has no name to compare: Squid checks the connection's
// address with dst, as it does for the CONNECT.
func squidSplice(ew *errWriter, e *Entry, id string) string {
	switch e.Kind() {
	case "cidr":
		return fmt.Sprintf("ssl_bump splice %s %s_port", id, id)
	case "any-host":
		return fmt.Sprintf("ssl_bump splice %s_port", id)
	}
	if e.IsExactName() {
		ew.printf("acl %s_sni ssl::server_name %s\n", id, e.Host)
	} else {
		ew.printf("acl %s_sni ssl::server_name_regex -i %s\n", id, e.Regexp())
	}
	return fmt.Sprintf("ssl_bump splice %s_sni %s_port", id, id)
}

// squidMappedV4 is where IPv6 holds IPv4 addresses (::ffff:a.b.c.d). Squid
// keeps IPv4 addresses in this form, so a dst range over it matches IPv4
// names too; egret unmaps, and an IPv6 range never matches IPv4.
var squidMappedV4 = netip.MustParsePrefix("::ffff:0:0/96")

// squidCIDR writes a range as dst ACL values, with egret's meaning. Squid
// refuses 0.0.0.0/0 (it wants "all", which would take IPv6 too): the
// whole of IPv4 is written as its two halves. An IPv6 range that holds
// ::ffff:0:0/96 (::/0 does) is written without it; one inside it has no
// values (nil).
func squidCIDR(p netip.Prefix) []string {
	p = p.Masked()
	switch {
	case p.Addr().Is4() && p.Bits() == 0:
		return []string{"0.0.0.0/1", "128.0.0.0/1"}
	case p.Addr().Is4():
		return []string{p.String()}
	case squidMappedV4.Contains(p.Addr()) && p.Bits() >= squidMappedV4.Bits():
		return nil
	case !p.Contains(squidMappedV4.Addr()):
		return []string{p.String()}
	}
	// p holds the mapped block: the siblings along the path from p down
	// to ::ffff:0:0/96 cover p without it.
	var out []string
	m := squidMappedV4.Addr().As16()
	for bit := p.Bits(); bit < squidMappedV4.Bits(); bit++ {
		sib := m
		sib[bit/8] ^= 0x80 >> (bit % 8)
		out = append(out, netip.PrefixFrom(netip.AddrFrom16(sib), bit+1).Masked().String())
	}
	return out
}

// squidID is the ACL name of an entry: the prefix and the rule's ID, with
// only the characters an ACL name may hold. With the longest suffix the
// format adds ("_port", "_path"), it fits Squid's 62 characters: a
// product name too long for that is cut and given a hash of the whole,
// so that two products never share an ACL (Squid would merge them).
func squidID(prefix string, e *Entry) string {
	product := strings.NewReplacer("-", "_", "/", "_").Replace(e.ID.Product)
	rule := fmt.Sprintf("_%c%d", e.ID.Kind, e.ID.N)
	room := squidACLNameMax - len("_port") - len(prefix) - 1 - len(rule)
	if len(product) > room {
		h := fnv.New32a()
		h.Write([]byte(e.ID.Product))
		hash := fmt.Sprintf("_%08x", h.Sum32())
		product = product[:max(room-len(hash), 0)] + hash
	}
	return prefix + "_" + product + rule
}

func squidPorts(e *Entry) string {
	s := make([]string, len(e.Ports))
	for i, p := range e.Ports {
		s[i] = p.String()
	}
	return strings.Join(s, " ")
}

// squidPathRegexps matches each prefix at a segment boundary, as egret
// does: /maven2 matches /maven2 and /maven2/x, not /maven2x; a prefix
// ending in '/' matches whatever follows it.
//
// Squid matches urlpath_regex against the path and query with escapes
// decoded (it logs and forwards them raw): an escaped '?' looks like the
// start of a query, so only '/' ends a prefix here, and a query right
// after the prefix itself (/maven2?q), which egret allows, is refused.
func squidPathRegexps(paths []string) string {
	s := make([]string, len(paths))
	for i, p := range paths {
		if strings.HasSuffix(p, "/") {
			s[i] = "^" + regexp.QuoteMeta(p)
		} else {
			s[i] = "^" + regexp.QuoteMeta(p) + `(/|$)`
		}
	}
	return strings.Join(s, " ")
}

// squidUnsafePath are the paths, as Squid matches them (escapes decoded,
// query included, without case), that a rule with paths never allows,
// where Squid's prefix match and egret's on the cleaned path
// (allowlists.CleanPath) could part:
//
//   - a ".." segment, plain or escaped, which cleaning removes with the
//     segment before it (anywhere: a decoded %3F cannot be told from a
//     query);
//   - a '\' (or %5C), which servers disagree about and egret refuses
//     escaped;
//   - a '%' not followed by two hex digits: a malformed escape, which
//     egret refuses (an escaped one, "%25zz", is caught too, which egret
//     allows).
//
// An escaped '/' (%2F), which egret refuses, reaches the ACLs as '/': it
// is allowed when the decoded path lies under a prefix, so it cannot take
// the request out of one. A "." segment cannot either, and an escaped
// unreserved character at worst makes Squid refuse a path egret allows.
var squidUnsafePath = []string{
	`/\.\.([/?]|$)`,
	`\\`,
	`%([^0-9a-f]|.[^0-9a-f]|.?$)`,
}

// squidHasPaths reports whether a proxy rule to export has paths.
func squidHasPaths(rs *Ruleset) bool {
	for i := range rs.Entries {
		if e := &rs.Entries[i]; e.Proxy && e.Unset == "" && len(e.Paths) > 0 {
			return true
		}
	}
	return false
}
