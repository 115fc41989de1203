package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/egret-proxy/egret/allowlists"
)

// The bypass corpus: what a compromised workload can write where egret
// reads a destination, and what egret must decide. It is the one place an
// auditor reads to see how egret treats hostname tricks, every inet_aton
// IP form, IPv6 forms that embed IPv4, zone ids, DNS answers that mix
// guarded and unguarded addresses, egret's own address, request smuggling
// and keep-alive tricks (docs/SECURITY.md points here).
//
// Every destination case is sent four ways, against one live egret with
// both listeners:
//
//	CONNECT  explicit listener: CONNECT host:port
//	URL      explicit listener: GET http://host:port/corpus
//	SNI      transparent listener: a ClientHello whose server_name is host,
//	         redirected on its way to 203.0.113.7:port
//	Host     transparent listener: GET /corpus with Host: host, redirected
//	         on its way to 203.0.113.7:port
//
// The SNI bytes are exactly the case's host: the hello is made by
// crypto/tls for a placeholder name of the same length, which is then
// overwritten, so names a TLS client would never send (NUL, spaces, IP
// literals, over-long labels) reach egret too.
//
// Outcomes: "allow"; a deny reason (403 with X-Egret-Reason on HTTP, the
// connection closed without a byte on SNI, and a decision line with that
// reason either way); "400" (egret cannot parse the request: no decision
// line). Where a channel's protocol makes a case different, the case says
// so for that channel with a comment.
//
// The upstream "internet" is loopback: the corpus egret lets 127.0.0.1
// through its address guard (as --allow-range 127.0.0.1/32 would), so that
// 127.0.0.1 plays a public address and 127.0.0.2 and everything else
// guarded stays guarded. Names are resolved by a DNS server on loopback
// (testDNS); nothing is pinned.

// corpusPort says which port a case goes to.
type corpusPort int

const (
	portUp       corpusPort = iota // the channel's upstream: TLS for CONNECT and SNI, plain HTTP for URL and Host
	portUnlisted                   // 22: allowed names are not allowed here
	portBroad                      // only the broad rules cidr 0.0.0.0/0 and ::/0 name it; nothing listens there
	portSelf                       // egret's own explicit listener
)

type bypassCase struct {
	name string
	host string // as the client writes it in an authority (IPv6 in brackets)
	port corpusPort
	want string // outcome on every channel, unless overridden below
	// Per-channel outcomes where the channel's protocol differs.
	connect, url, sni, header string
	logHost                   string // the decision line's host, when checked
}

var bypassCorpus = []bypassCase{
	// The baseline: the allowed name, and the same name elsewhere.
	{name: "allowed name", host: "example.com", want: "allow", logHost: "example.com"},
	{name: "allowed name on an unlisted port", host: "example.com", port: portUnlisted, want: "no-rule", logHost: "example.com"},
	{name: "unlisted name", host: "evil.example", want: "no-rule", logHost: "evil.example"},

	// Case, dots and escapes.
	{name: "upper case", host: "EXAMPLE.COM", want: "allow", logHost: "example.com"},
	{name: "mixed case", host: "ExAmPlE.cOm", want: "allow", logHost: "example.com"},
	{name: "trailing dot", host: "example.com.", want: "allow", logHost: "example.com",
		sni: "bad-hello"}, // crypto/tls refuses an SNI with a trailing dot (RFC 6066 §3)
	{name: "two trailing dots", host: "example.com..", want: "bad-host", sni: "bad-hello"},
	{name: "leading dot", host: ".example.com", want: "bad-host"},
	{name: "empty label", host: "example..com", want: "bad-host"},
	{name: "escaped dot", host: "example%2ecom", want: "bad-host",
		connect: "400", url: "400"}, // net/url refuses an escaped ASCII byte in a host
	{name: "escaped Unicode is never decoded", host: "b%C3%BCcher.example", want: "bad-host"},
	{name: "NUL inside", host: "example.com\x00.evil.example", want: "bad-host",
		connect: "400", url: "400", // net/url refuses control characters in a request target
		header: "400"}, // net/textproto refuses NUL in a header field
	{name: "NUL at the end", host: "evil.example\x00example.com", want: "bad-host",
		connect: "400", url: "400", header: "400"},
	{name: "space inside", host: "example.com evil.example", want: "bad-host",
		connect: "400", url: "400"}, // the request line no longer has three parts
	{name: "tab inside", host: "example.com\tevil.example", want: "bad-host",
		connect: "400", url: "400"},

	// Lengths.
	{name: "label of 63", host: strings.Repeat("a", 63) + ".example.com", want: "no-rule"},
	{name: "label of 64", host: strings.Repeat("a", 64) + ".example.com", want: "bad-host"},
	{name: "name of 253", host: longName(253), want: "no-rule"},
	{name: "name of 254", host: longName(254), want: "bad-host"},
	{name: "name of 4000 bytes", host: strings.Repeat("a.", 2000) + "com", want: "bad-host"},

	// The allowed name inside another.
	{name: "allowed name as a prefix", host: "example.com.evil.example", want: "no-rule", logHost: "example.com.evil.example"},
	{name: "allowed name glued on", host: "evilexample.com", want: "no-rule", logHost: "evilexample.com"},
	{name: "allowed name with a hyphen", host: "example.com-evil.example", want: "no-rule"},
	{name: "fragment", host: "evil.example#example.com", want: "bad-host",
		connect: "400", url: "400"}, // net/url takes no fragment in a request target: '#' is in the host
	{name: "userinfo", host: "example.com@evil.example", want: "bad-host",
		url: "no-rule"}, // the URL's host is evil.example; example.com is its userinfo
	{name: "userinfo reversed", host: "evil.example@example.com", want: "bad-host",
		url: "allow"}, // the URL's host is example.com: that is where it goes
	{name: "backslash before @", host: "example.com\\@evil.example", want: "bad-host",
		connect: "400", url: "400"}, // net/url refuses a backslash in a host or userinfo

	// Wildcards: *.wild.example.
	{name: "wildcard, one label", host: "a.wild.example", want: "allow"},
	{name: "wildcard, two labels", host: "a.b.wild.example", want: "allow"},
	{name: "wildcard, underscore label", host: "_x.wild.example", want: "allow"},
	{name: "wildcard parent itself", host: "wild.example", want: "no-rule"},
	{name: "wildcard suffix without a dot", host: "badwild.example", want: "no-rule"},

	// Unicode and punycode: one name, one spelling.
	{name: "Unicode form of an allowed name", host: "bücher.example", want: "allow", logHost: "xn--bcher-kva.example"},
	{name: "punycode form", host: "xn--bcher-kva.example", want: "allow", logHost: "xn--bcher-kva.example"},
	{name: "punycode upper case", host: "XN--BCHER-KVA.example", want: "allow", logHost: "xn--bcher-kva.example"},
	{name: "full-width letters", host: "ｅｘａｍｐｌｅ.com", want: "allow", logHost: "example.com"},
	{name: "ideographic full stop", host: "example。com", want: "allow", logHost: "example.com"},
	{name: "Cyrillic homograph", host: "exаmple.com", want: "no-rule", logHost: "xn--exmple-4nf.com"},
	{name: "bare xn--", host: "xn--.example", want: "bad-host"},
	{name: "undecodable punycode", host: "xn--ab-.example", want: "bad-host"},
	{name: "invalid UTF-8", host: "ex\xffample.com", want: "bad-host"},

	// inet_aton forms of 127.0.0.1: IP literals, read as the address they
	// denote, matched only by the cidr rule 127.0.0.1/32 on the upstream
	// ports, never looked up as names.
	{name: "dotted quad", host: "127.0.0.1", want: "allow", logHost: "127.0.0.1"},
	{name: "one decimal number", host: "2130706433", want: "allow", logHost: "127.0.0.1"},
	{name: "one hex number", host: "0x7f000001", want: "allow", logHost: "127.0.0.1"},
	{name: "one hex number, upper case", host: "0X7F000001", want: "allow", logHost: "127.0.0.1"},
	{name: "one octal number", host: "017700000001", want: "allow", logHost: "127.0.0.1"},
	{name: "two parts, hex", host: "0x7f.1", want: "allow", logHost: "127.0.0.1"},
	{name: "two parts, decimal", host: "127.1", want: "allow", logHost: "127.0.0.1"},
	{name: "three parts", host: "127.0.1", want: "allow", logHost: "127.0.0.1"},
	{name: "three parts, hex", host: "0x7f.0.0x1", want: "allow", logHost: "127.0.0.1"},
	{name: "octal quad", host: "0177.0.0.01", want: "allow", logHost: "127.0.0.1"},
	{name: "hex quad", host: "0x7f.0x0.0x0.0x1", want: "allow", logHost: "127.0.0.1"},
	{name: "dotted quad, trailing dot", host: "127.0.0.1.", want: "allow", logHost: "127.0.0.1", sni: "bad-hello"},
	{name: "IPv4-mapped IPv6", host: "[::ffff:127.0.0.1]", want: "allow", logHost: "127.0.0.1"},
	{name: "IPv4-mapped IPv6, hex", host: "[::ffff:7f00:1]", want: "allow", logHost: "127.0.0.1"},
	{name: "decimal form on an unlisted port", host: "2130706433", port: portUnlisted, want: "no-rule", logHost: "127.0.0.1"},
	{name: "another loopback address", host: "127.0.0.2", want: "no-rule", logHost: "127.0.0.2"},
	{name: "numeric but no address: octet 256", host: "127.0.0.256", want: "bad-host"},
	{name: "numeric but no address: 2^32", host: "4294967296", want: "bad-host"},
	{name: "numeric but no address: five parts", host: "1.2.3.4.5", want: "bad-host"},
	{name: "numeric but no address: 08", host: "08.0.0.1", want: "bad-host"},
	{name: "a name ending in a name", host: "127.0.0.1.example", want: "no-rule"},

	// Guarded addresses, each written several ways, on the port only the
	// broad cidr rules open: policy allows, the address guard refuses.
	{name: "metadata, dotted quad", host: "169.254.169.254", port: portBroad, want: "private-address", logHost: "169.254.169.254"},
	{name: "metadata, decimal", host: "2852039166", port: portBroad, want: "private-address", logHost: "169.254.169.254"},
	{name: "metadata, hex", host: "0xa9fea9fe", port: portBroad, want: "private-address", logHost: "169.254.169.254"},
	{name: "metadata, octal quad", host: "0251.0376.0251.0376", port: portBroad, want: "private-address", logHost: "169.254.169.254"},
	{name: "metadata, two parts", host: "169.16689662", port: portBroad, want: "private-address", logHost: "169.254.169.254"},
	{name: "metadata, three parts", host: "169.254.43518", port: portBroad, want: "private-address", logHost: "169.254.169.254"},
	{name: "metadata, IPv4-mapped", host: "[::ffff:169.254.169.254]", port: portBroad, want: "private-address", logHost: "169.254.169.254"},
	{name: "metadata, NAT64", host: "[64:ff9b::a9fe:a9fe]", port: portBroad, want: "private-address", logHost: "64:ff9b::a9fe:a9fe"},
	{name: "metadata, NAT64 dotted", host: "[64:ff9b::169.254.169.254]", port: portBroad, want: "private-address", logHost: "64:ff9b::a9fe:a9fe"},
	{name: "metadata, 6to4", host: "[2002:a9fe:a9fe::1]", port: portBroad, want: "private-address"},
	{name: "metadata, Teredo", host: "[2001:0:4136:e378:8000:63bf:5601:5601]", port: portBroad, want: "private-address"},
	{name: "RFC 1918, short form", host: "10.1", port: portBroad, want: "private-address", logHost: "10.0.0.1"},
	{name: "RFC 1918, octal", host: "012.0.0.1", port: portBroad, want: "private-address", logHost: "10.0.0.1"},
	{name: "RFC 1918, 192.168", host: "192.168.0.1", port: portBroad, want: "private-address"},
	{name: "RFC 1918, 172.16", host: "0xac100001", port: portBroad, want: "private-address", logHost: "172.16.0.1"},
	{name: "CGNAT", host: "100.64.0.1", port: portBroad, want: "private-address"},
	{name: "loopback, not the allowed address", host: "2130706434", port: portBroad, want: "private-address", logHost: "127.0.0.2"},
	{name: "unspecified, one zero", host: "0", port: portBroad, want: "private-address", logHost: "0.0.0.0"},
	{name: "broadcast", host: "0xffffffff", port: portBroad, want: "private-address", logHost: "255.255.255.255"},
	{name: "multicast", host: "224.0.0.1", port: portBroad, want: "private-address"},
	{name: "IPv6 loopback", host: "[::1]", port: portBroad, want: "private-address", logHost: "::1"},
	{name: "IPv6 unspecified", host: "[::]", port: portBroad, want: "private-address"},
	{name: "IPv6 unique local", host: "[fd00::1]", port: portBroad, want: "private-address"},
	{name: "IPv6 link-local", host: "[fe80::1]", port: portBroad, want: "private-address"},
	{name: "IPv4-mapped RFC 1918", host: "[::ffff:10.0.0.1]", port: portBroad, want: "private-address", logHost: "10.0.0.1"},
	{name: "6to4 of loopback", host: "[2002:7f00:1::]", port: portBroad, want: "private-address"},

	// Zone ids are refused, however written.
	{name: "zone id", host: "[fe80::1%eth0]", want: "bad-host",
		connect: "400", url: "400"}, // net/url refuses "%et" as an escape
	{name: "zone id, escaped", host: "[fe80::1%25eth0]", want: "bad-host"},
	{name: "zone id on loopback", host: "[::1%lo]", want: "bad-host", connect: "400", url: "400"},

	// DNS answers: a name resolving to any guarded address is refused
	// whole, even when another answer is fine (how DNS rebinding starts).
	{name: "DNS: public and RFC 1918", host: "mixed4.example", want: "private-address", logHost: "mixed4.example"},
	{name: "DNS: public and metadata", host: "metadata.example", want: "private-address"},
	{name: "DNS: public and IPv6 unique local", host: "mixed6.example", want: "private-address"},
	{name: "DNS: IPv4-mapped RFC 1918 AAAA", host: "mapped.example", want: "private-address"},
	{name: "DNS: NAT64 of metadata", host: "nat64.example", want: "private-address"},
	{name: "DNS: 6to4 of RFC 1918", host: "sixtofour.example", want: "private-address"},
	{name: "DNS: Teredo of RFC 1918", host: "teredo.example", want: "private-address"},
	{name: "DNS: IPv6 loopback", host: "loopback6.example", want: "private-address"},
	{name: "DNS: an unlisted name answering the allowed address", host: "rebind.example", port: portUnlisted, want: "no-rule"},

	// egret's own address: refused even though a rule allows it.
	{name: "a name resolving to egret itself", host: "self.example", port: portSelf, want: "self", logHost: "self.example"},
	{name: "egret's own address as a literal", host: "2130706433", port: portSelf, want: "self", logHost: "127.0.0.1"},

	// No name at all.
	{name: "no host", host: "", want: "bad-host",
		connect: "400",                        // a CONNECT authority needs a host
		sni:     "no-sni", header: "no-rule"}, // decided on the original address, which no rule names
}

// longName returns a valid-looking name of exactly n bytes ending in
// .example.com.
func longName(n int) string {
	var b strings.Builder
	for b.Len() < n-len(".example.com") {
		room := n - len(".example.com") - b.Len()
		if b.Len() > 0 {
			b.WriteByte('.')
			room--
		}
		b.WriteString(strings.Repeat("l", min(room, 63)))
	}
	return b.String() + ".example.com"
}

// corpusDNS is what the corpus DNS server answers. 127.0.0.1 plays the
// public address the allowed names have.
var corpusDNS = map[string][]netip.Addr{
	"example.com":           addrs("127.0.0.1"),
	"xn--bcher-kva.example": addrs("127.0.0.1"),
	"mixed4.example":        addrs("127.0.0.1", "10.0.0.1"),
	"metadata.example":      addrs("127.0.0.1", "169.254.169.254"),
	"mixed6.example":        addrs("127.0.0.1", "fd00::1"),
	"mapped.example":        addrs("::ffff:10.0.0.1"),
	"nat64.example":         addrs("64:ff9b::a9fe:a9fe"),
	"sixtofour.example":     addrs("2002:a00:1::1"),
	"teredo.example":        addrs("2001:0:4136:e378:8000:63bf:f5ff:fffe"),
	"loopback6.example":     addrs("::1"),
	"rebind.example":        addrs("127.0.0.1"),
	"self.example":          addrs("127.0.0.1"),
	"a.wild.example":        addrs("127.0.0.1"),
	"a.b.wild.example":      addrs("127.0.0.1"),
	"_x.wild.example":       addrs("127.0.0.1"),
}

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

// corpusEgret is the live egret the corpus runs against.
type corpusEgret struct {
	*harness
	dialTransparent     func(netip.AddrPort) net.Conn
	broadPort, selfPort int
	unlistedPort        int
	dns                 *testDNS
}

func newCorpusEgret(t *testing.T) *corpusEgret {
	t.Helper()
	h := newHarness(t, harnessOpts{})
	e := &corpusEgret{harness: h, dialTransparent: h.transparent(), unlistedPort: 22}
	e.broadPort = freePort(t)
	e.selfPort = portOf(t, mustAddr(t, h.addr))
	e.dns = newTestDNS(t, corpusDNS)
	up := fmt.Sprintf("[%d, %d]", h.tlsPort, h.httpPort)
	rules := []string{
		"  - {host: example.com, ports: " + up + ", purpose: the allowed name}",
		"  - {host: \"*.wild.example\", ports: " + up + ", purpose: a wildcard}",
		"  - {host: xn--bcher-kva.example, ports: " + up + ", purpose: an IDN}",
		fmt.Sprintf("  - {cidr: 127.0.0.1/32, ports: [%d, %d, %d], purpose: the public address}", h.tlsPort, h.httpPort, e.selfPort),
		fmt.Sprintf("  - {cidr: 0.0.0.0/0, ports: [%d], purpose: broad, broad: corpus}", e.broadPort),
		fmt.Sprintf("  - {cidr: \"::/0\", ports: [%d], purpose: broad, broad: corpus}", e.broadPort),
		fmt.Sprintf("  - {host: self.example, ports: [%d], purpose: a name of egret itself}", e.selfPort),
	}
	for _, name := range []string{"mixed4", "metadata", "mixed6", "mapped", "nat64", "sixtofour", "teredo", "loopback6"} {
		rules = append(rules, "  - {host: "+name+".example, ports: "+up+", purpose: DNS answers}")
	}
	pol, id := policyFrom(t, strings.Join(rules, "\n"), allowlists.Settings{})
	swapRules(h, func(r *Rules) {
		r.Policy, r.Default.Identity = pol, id
		r.Pins = nil
		r.Resolver = e.dns.resolver()
		r.Guard.AllowRanges = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	return e
}

func mustAddr(t *testing.T, s string) net.Addr {
	t.Helper()
	a, err := net.ResolveTCPAddr("tcp", s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// port returns the port a case goes to on a channel (tls: CONNECT, SNI).
func (e *corpusEgret) port(p corpusPort, tls bool) int {
	switch p {
	case portUnlisted:
		return e.unlistedPort
	case portBroad:
		return e.broadPort
	case portSelf:
		return e.selfPort
	}
	if tls {
		return e.tlsPort
	}
	return e.httpPort
}

func TestBypassCorpus(t *testing.T) {
	e := newCorpusEgret(t)
	for _, tc := range bypassCorpus {
		t.Run(tc.name, func(t *testing.T) {
			for _, ch := range []struct {
				name     string
				override string
				send     func(*testing.T, *corpusEgret, bypassCase, string)
			}{
				{"CONNECT", tc.connect, sendConnect},
				{"URL", tc.url, sendURL},
				{"SNI", tc.sni, sendSNI},
				{"Host", tc.header, sendHostHeader},
			} {
				want, c := tc.want, tc
				if ch.override != "" {
					want, c.logHost = ch.override, "" // logHost is for the common outcome
				}
				t.Run(ch.name, func(t *testing.T) { ch.send(t, e, c, want) })
			}
		})
	}
	if e.dns.queries.Load() == 0 {
		t.Error("the corpus DNS server was never asked: names were not resolved through it")
	}
}

func sendConnect(t *testing.T, e *corpusEgret, tc bypassCase, want string) {
	authority := tc.host + fmt.Sprintf(":%d", e.port(tc.port, true))
	c := dialRaw(t, e.addr)
	c.send(t, "CONNECT "+authority+" HTTP/1.1\r\nHost: "+authority+"\r\n\r\n")
	resp, _ := c.response(t, http.MethodConnect)
	checkHTTPOutcome(t, e, c, resp, want, tc.logHost)
}

func sendURL(t *testing.T, e *corpusEgret, tc bypassCase, want string) {
	u := fmt.Sprintf("http://%s:%d/corpus", tc.host, e.port(tc.port, false))
	c := dialRaw(t, e.addr)
	c.send(t, "GET "+u+" HTTP/1.1\r\nHost: host.invalid\r\nConnection: close\r\n\r\n")
	resp, body := c.response(t, http.MethodGet)
	if want == "allow" && body != "http upstream: GET /corpus " {
		t.Errorf("allowed, but the body is %q", body)
	}
	checkHTTPOutcome(t, e, c, resp, want, tc.logHost)
}

func sendHostHeader(t *testing.T, e *corpusEgret, tc bypassCase, want string) {
	c := &rawConn{Conn: e.dialTransparent(elsewhere(e.port(tc.port, false)))}
	c.br = bufio.NewReader(c.Conn)
	c.send(t, "GET /corpus HTTP/1.1\r\nHost: "+tc.host+"\r\nConnection: close\r\n\r\n")
	resp, body := c.response(t, http.MethodGet)
	if want == "allow" && body != "http upstream: GET /corpus " {
		t.Errorf("allowed, but the body is %q", body)
	}
	checkHTTPOutcome(t, e, c, resp, want, tc.logHost)
}

// checkHTTPOutcome checks an answer egret gave on HTTP and the decision
// line of the connection.
func checkHTTPOutcome(t *testing.T, e *corpusEgret, c *rawConn, resp *http.Response, want, logHost string) {
	t.Helper()
	reason := resp.Header.Get("X-Egret-Reason")
	switch want {
	case "400":
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("status %d (reason %q), want 400", resp.StatusCode, reason)
		}
		return
	case "allow":
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d (reason %q), want 200", resp.StatusCode, reason)
		}
	default:
		if resp.StatusCode != http.StatusForbidden || reason != want {
			t.Fatalf("status %d, reason %q; want 403 %s", resp.StatusCode, reason, want)
		}
	}
	checkDecisionLine(t, e, c.LocalAddr().String(), want, logHost)
}

func checkDecisionLine(t *testing.T, e *corpusEgret, client, want, logHost string) {
	t.Helper()
	// Client ports are reused over the run: the connection's line is the
	// last one from its address.
	lines := waitLines(t, e.logBuf, map[string]any{"msg": "decision", "client": client})
	line := lines[len(lines)-1]
	if want == "allow" {
		wantFields(t, line, map[string]any{"decision": "allow", "reason": "rule"})
	} else {
		wantFields(t, line, map[string]any{"decision": "deny", "reason": want})
	}
	if logHost != "" {
		wantFields(t, line, map[string]any{"host": logHost})
	}
}

// sendSNI sends a ClientHello carrying tc.host as its server_name. An
// allowed hello is replayed to the TLS upstream, which answers with its
// own handshake; a denied one is closed without a byte.
func sendSNI(t *testing.T, e *corpusEgret, tc bypassCase, want string) {
	if want == "400" {
		t.Fatal("a case cannot expect 400 on SNI")
	}
	c := e.dialTransparent(elsewhere(e.port(tc.port, true)))
	c.Write(clientHelloWithSNI(t, tc.host))
	if want == "allow" {
		// The upstream's ServerHello: a handshake record.
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		var first [1]byte
		if _, err := io.ReadFull(c, first[:]); err != nil || first[0] != 0x16 {
			t.Fatalf("allowed hello: read %q, %v; want the upstream's handshake", first, err)
		}
	} else if closed, got := closedWithin(c, c, 5*time.Second); !closed || got != "" {
		t.Fatalf("denied hello: closed %v, read %q; want closed without a byte", closed, got)
	}
	checkDecisionLine(t, e, c.LocalAddr().String(), want, tc.logHost)
}

// clientHelloWithSNI returns the ClientHello crypto/tls sends, with its
// server_name exactly sni (any bytes; none for ""). crypto/tls writes the
// hello for a placeholder of the same length, whose bytes are then
// replaced, so every length field stays right.
func clientHelloWithSNI(t *testing.T, sni string) []byte {
	t.Helper()
	if sni == "" {
		return recordClientHello(t, &tls.Config{InsecureSkipVerify: true})
	}
	placeholder := strings.Repeat("q", len(sni))
	hello := recordClientHello(t, &tls.Config{ServerName: placeholder, InsecureSkipVerify: true})
	// server_name list entry: type 0 (host_name), 2-byte length, the name.
	entry := append([]byte{0, byte(len(sni) >> 8), byte(len(sni))}, placeholder...)
	i := bytes.Index(hello, entry)
	if i < 0 || bytes.Contains(hello[i+1:], entry) {
		t.Fatalf("placeholder SNI not found exactly once in the ClientHello")
	}
	copy(hello[i+3:], sni)
	return hello
}

// recordClientHello returns the bytes crypto/tls writes as a client's
// first flight: the ClientHello record(s).
func recordClientHello(t *testing.T, cfg *tls.Config) []byte {
	t.Helper()
	rec := &helloRecorder{}
	err := tls.Client(rec, cfg).Handshake()
	if !errors.Is(err, io.EOF) {
		t.Fatalf("recording a ClientHello: %v", err)
	}
	return rec.Bytes()
}

// helloRecorder is a connection that keeps what is written to it and has
// nothing to read.
type helloRecorder struct {
	net.Conn
	bytes.Buffer
}

func (r *helloRecorder) Read([]byte) (int, error)         { return 0, io.EOF }
func (r *helloRecorder) Write(p []byte) (int, error)      { return r.Buffer.Write(p) }
func (r *helloRecorder) Close() error                     { return nil }
func (r *helloRecorder) SetDeadline(time.Time) error      { return nil }
func (r *helloRecorder) SetReadDeadline(time.Time) error  { return nil }
func (r *helloRecorder) SetWriteDeadline(time.Time) error { return nil }

// rawCase is a request sent as bytes, as a client can write it, to both
// listeners: {H} stands for the plain upstream's port. The transparent
// listener gets it on a connection redirected on its way to
// 203.0.113.7:{H}. want lists the answers in order: a status, with the
// X-Egret-Reason after it for 403s; nil means the case does not apply to
// that listener.
type rawCase struct {
	name                  string
	send                  string
	explicit, transparent []string
}

var rawCorpus = []rawCase{
	// The request target decides, never the Host header.
	{name: "allowed target, lying Host",
		send:     "GET http://example.com:{H}/r HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
		explicit: []string{"200"}, transparent: []string{"200"}},
	{name: "unlisted target, allowed Host",
		send:     "GET http://evil.example:{H}/r HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
		explicit: []string{"403 no-rule"}, transparent: []string{"403 no-rule"}},
	{name: "origin-form with an allowed Host",
		send:     "GET /r HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
		explicit: []string{"400"}, transparent: []string{"200"}},
	{name: "two Host headers",
		send:     "GET /r HTTP/1.1\r\nHost: example.com\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
		explicit: []string{"400"}, transparent: []string{"400"}},

	// Request smuggling: what two parsers could read differently is refused.
	{name: "Content-Length and Transfer-Encoding",
		send:     "POST http://example.com:{H}/r HTTP/1.1\r\nHost: example.com\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		explicit: []string{"400"}, transparent: []string{"400"}},
	{name: "Transfer-Encoding and Content-Length, lower case",
		send:     "POST http://example.com:{H}/r HTTP/1.1\r\nHost: example.com\r\ntransfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n0\r\n\r\n",
		explicit: []string{"400"}, transparent: []string{"400"}},
	{name: "two different Content-Lengths",
		send:     "POST http://example.com:{H}/r HTTP/1.1\r\nHost: example.com\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabc",
		explicit: []string{"400"}, transparent: []string{"400"}},
	{name: "two equal Content-Lengths",
		send:     "POST http://example.com:{H}/r HTTP/1.1\r\nHost: example.com\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
		explicit: []string{"400"}, transparent: []string{"400"}},
	{name: "Content-Length list",
		send:     "POST http://example.com:{H}/r HTTP/1.1\r\nHost: example.com\r\nContent-Length: 3, 3\r\n\r\nabc",
		explicit: []string{"400"}, transparent: []string{"400"}},
	{name: "Transfer-Encoding not chunked",
		send:     "POST http://example.com:{H}/r HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: gzip\r\n\r\n",
		explicit: []string{"400"}, transparent: []string{"400"}},
	{name: "Transfer-Encoding chunked twice",
		send:     "POST http://example.com:{H}/r HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		explicit: []string{"400"}, transparent: []string{"400"}},
	{name: "Transfer-Encoding with a space before the colon",
		send:     "POST http://example.com:{H}/r HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding : chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
		explicit: []string{"400"}, transparent: []string{"400"}},
	{name: "obs-fold",
		send:     "GET http://example.com:{H}/r HTTP/1.1\r\nHost: example.com\r\nX-A: a\r\n evil\r\n\r\n",
		explicit: []string{"400"}, transparent: []string{"400"}},
	{name: "obs-fold of Transfer-Encoding",
		send:     "POST http://example.com:{H}/r HTTP/1.1\r\nHost: example.com\r\nContent-Length: 4\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
		explicit: []string{"400"}, transparent: []string{"400"}},
	{name: "a request hidden in a body is a body",
		send: "POST http://example.com:{H}/r HTTP/1.1\r\nHost: example.com\r\nContent-Length: 57\r\n\r\n" +
			"GET http://evil.example/ HTTP/1.1\r\nHost: evil.example\r\n\r\n" + // 57 bytes
			"GET http://evil.example:{H}/x HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
		explicit: []string{"200", "403 no-rule"}, transparent: []string{"200", "403 no-rule"}},

	// HTTP/1.0.
	{name: "HTTP/1.0, allowed",
		send:     "GET http://example.com:{H}/r HTTP/1.0\r\n\r\n",
		explicit: []string{"200"}, transparent: []string{"200"}},
	{name: "HTTP/1.0, unlisted",
		send:     "GET http://evil.example:{H}/r HTTP/1.0\r\n\r\n",
		explicit: []string{"403 no-rule"}, transparent: []string{"403 no-rule"}},
	{name: "HTTP/1.0 without Host: decided on the original address",
		send:        "GET /r HTTP/1.0\r\n\r\n",
		transparent: []string{"403 no-rule"}},

	// Pipelining: every request on a connection is decided on its own.
	{name: "pipelined to different hosts",
		send: "GET http://example.com:{H}/1 HTTP/1.1\r\nHost: example.com\r\n\r\n" +
			"GET http://evil.example:{H}/2 HTTP/1.1\r\nHost: example.com\r\n\r\n" +
			"GET http://169.254.169.254:{H}/3 HTTP/1.1\r\nHost: example.com\r\n\r\n" +
			"GET http://example.com:{H}/4 HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
		explicit: []string{"200", "403 no-rule", "403 no-rule", "200"}, transparent: []string{"200", "403 no-rule", "403 no-rule", "200"}},
	{name: "pipelined by Host header",
		send: "GET /1 HTTP/1.1\r\nHost: example.com\r\n\r\n" +
			"GET /2 HTTP/1.1\r\nHost: evil.example\r\n\r\n" +
			"GET /3 HTTP/1.1\r\nHost: 2130706433\r\n\r\n" +
			"GET /4 HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
		transparent: []string{"200", "403 no-rule", "200", "200"}},
	{name: "pipelined, then smuggling",
		send: "GET http://example.com:{H}/1 HTTP/1.1\r\nHost: example.com\r\n\r\n" +
			"POST http://example.com:{H}/2 HTTP/1.1\r\nHost: example.com\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		explicit: []string{"200", "400"}, transparent: []string{"200", "400"}},
	{name: "CONNECT on a redirected connection",
		send:        "CONNECT example.com:{H} HTTP/1.1\r\nHost: example.com:{H}\r\n\r\n",
		transparent: []string{"400"}},
}

func TestBypassCorpusRaw(t *testing.T) {
	e := newCorpusEgret(t)
	for _, tc := range rawCorpus {
		req := strings.ReplaceAll(tc.send, "{H}", fmt.Sprint(e.httpPort))
		t.Run(tc.name, func(t *testing.T) {
			if tc.explicit != nil {
				t.Run("explicit", func(t *testing.T) { checkRawAnswers(t, dialRaw(t, e.addr), req, tc.explicit) })
			}
			if tc.transparent != nil {
				t.Run("transparent", func(t *testing.T) {
					c := e.dialTransparent(elsewhere(e.httpPort))
					checkRawAnswers(t, &rawConn{Conn: c, br: bufio.NewReader(c)}, req, tc.transparent)
				})
			}
		})
	}
}

// checkRawAnswers sends req and reads one answer per entry of want; after
// the last, the connection must close.
func checkRawAnswers(t *testing.T, c *rawConn, req string, want []string) {
	t.Helper()
	c.send(t, req)
	var got []string
	for range want {
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			t.Fatalf("answers so far %q, then: %v", got, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		a := fmt.Sprint(resp.StatusCode)
		if r := resp.Header.Get("X-Egret-Reason"); r != "" {
			a += " " + r
		}
		got = append(got, a)
	}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Fatalf("answers %q, want %q", got, want)
	}
	if closed, extra := closedWithin(c, c.br, 5*time.Second); !closed || extra != "" {
		t.Fatalf("after the last answer: closed %v, more bytes %q", closed, extra)
	}
}
