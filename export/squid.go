package export

import (
	"fmt"
	"io"
	"regexp"
	"strings"
)

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
//     other patterns are regular expressions with egret's meaning;
//   - names never match IP-literal requests (-n: no reverse lookups),
//     as egret never matches a host rule by PTR;
//   - each rule allows its own ports only;
//   - a host whose rules have paths is allowed for CONNECT (the path is
//     unknown, as egret logs "paths":"unenforced") and for plain HTTP only
//     under a prefix, at a segment boundary.
//
// Network rules are the packet filter's (nftables, iptables): each is a
// comment here, not a skip. A proxy rule whose destination is an unset
// variable is a comment and a skip.
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

	var skips []Skip
	var splices []string
	var network []*Entry
	for i := range rs.Entries {
		e := &rs.Entries[i]
		if !e.Proxy {
			network = append(network, e)
			continue
		}
		id := squidID(n, e)
		ew.printf("\n# %s\n", oneLine(e.Describe()))
		if e.Unset != "" {
			reason := fmt.Sprintf("destination ${%s} has no value; set it with --var %s=NAME", e.Unset, e.Unset)
			ew.printf("# not expressed: %s\n", reason)
			skips = append(skips, Skip{ID: e.ID, Reason: reason})
			continue
		}
		dst := ""
		switch e.Kind() {
		case "cidr":
			ew.printf("acl %s dst %s\n", id, squidCIDR(e))
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
			ew.printf("http_access allow !%s_connect%s %s_port %s_path\n", n, dst, id, id)
		}
		if bump {
			splices = append(splices, squidSplice(ew, e, id))
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
	ew.printf("\nhttp_access deny all\n")
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

// squidCIDR writes a range for a dst ACL. Squid refuses 0.0.0.0/0 (it
// wants "all", which would take IPv6 too): the whole of one family is
// written as its two halves.
func squidCIDR(e *Entry) string {
	if e.CIDR.Bits() == 0 {
		if e.CIDR.Addr().Is4() {
			return "0.0.0.0/1 128.0.0.0/1"
		}
		return "::/1 8000::/1"
	}
	return e.CIDR.String()
}

// squidID is the ACL name of an entry: the prefix and the rule's ID, with
// only the characters an ACL name may hold.
func squidID(prefix string, e *Entry) string {
	return prefix + "_" + strings.NewReplacer("-", "_", "/", "_").Replace(e.ID.String())
}

func squidPorts(e *Entry) string {
	s := make([]string, len(e.Ports))
	for i, p := range e.Ports {
		s[i] = p.String()
	}
	return strings.Join(s, " ")
}

// squidPathRegexps matches each prefix at a segment boundary, as egret
// does: /maven2 matches /maven2 and /maven2/x, not /maven2x. A query
// string ends the path.
func squidPathRegexps(paths []string) string {
	s := make([]string, len(paths))
	for i, p := range paths {
		s[i] = "^" + regexp.QuoteMeta(strings.TrimSuffix(p, "/")) + `([/?]|$)`
	}
	return strings.Join(s, " ")
}
