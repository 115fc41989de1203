package proxy

import (
	"encoding/pem"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/egret-proxy/egret/internal/netnstest"
)

// The DNS-answer check behind a real redirect: the original destination
// is the kernel's SO_ORIGINAL_DST, not a table the test fills. The door
// answered example.com with the gateway's "remote" addresses; a client
// that connects there matches, one that connects to any other address
// (its own resolver's answer) does not, and with require_dns_match is
// refused.

// unanswered is an address the door never handed out; the gateway
// redirects connections to it like any other (nothing listens there).
const unanswered = "192.0.2.99"

func TestTransparentDNSMatchThroughRealRedirect(t *testing.T) {
	for _, firewall := range []string{"iptables", "nftables"} {
		t.Run(firewall, func(t *testing.T) {
			tools := []string{"curl", "iptables", "ip6tables"}
			if firewall == "nftables" {
				tools = []string{"curl", "nft"}
			}
			netnstest.Require(t, tools...)
			testDNSMatchRedirect(t, firewall)
		})
	}
}

func testDNSMatchRedirect(t *testing.T, firewall string) {
	door := answered{"example.com": {netip.MustParseAddr(remote4), netip.MustParseAddr(remote6)}}
	h := newHarness(t, harnessOpts{mutate: func(r *Rules) { r.RequireDNSMatch = true }, server: []Option{WithDNSAnswers(door)}})
	tb := netnstest.New(t)
	tb.Redirect(firewall, tproxyPort, h.tlsPort, h.httpPort)
	serveTransparentIn(t, h, tb.Gateway)
	caFile := filepath.Join(t.TempDir(), "upstream.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: h.tlsUp.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	tlsTo := func(addr string) []string {
		return []string{"--cacert", caFile, "--resolve", fmt.Sprintf("example.com:%d:%s", h.tlsPort, addr),
			fmt.Sprintf("https://example.com:%d/dns", h.tlsPort)}
	}
	httpTo := func(addr string) []string {
		return []string{"-i", "--resolve", fmt.Sprintf("example.com:%d:%s", h.httpPort, addr),
			fmt.Sprintf("http://example.com:%d/dns", h.httpPort)}
	}

	if out, code := tb.Curl(tlsTo(remote4)...); code != 0 || out != "tls upstream: GET /dns" {
		t.Fatalf("TLS to the answered address: exit %d, %q", code, out)
	}
	wantFields(t, waitLines(t, h.logBuf, map[string]any{"msg": "decision", "method": "TLS", "dns": "match"})[0],
		map[string]any{"decision": "allow", "sni": "example.com"})
	if out, code := tb.Curl(append([]string{"-6"}, tlsTo("["+remote6+"]")...)...); code != 0 || out != "tls upstream: GET /dns" {
		t.Fatalf("TLS to the answered IPv6 address: exit %d, %q", code, out)
	}

	if _, code := tb.Curl(tlsTo(unanswered)...); code == 0 {
		t.Fatal("TLS to an address the door did not hand out got through")
	}
	wantFields(t, waitLines(t, h.logBuf, map[string]any{"method": "TLS", "dns": "mismatch"})[0],
		map[string]any{"decision": "deny", "reason": "dns-mismatch", "host": "example.com"})

	if out, code := tb.Curl(httpTo(unanswered)...); code != 0 || !hasLine(out, "X-Egret-Reason: dns-mismatch") {
		t.Fatalf("HTTP to an unanswered address: exit %d, %q", code, out)
	}
	if out, code := tb.Curl(httpTo(remote4)...); code != 0 || !hasLine(out, "HTTP/1.1 200 OK") {
		t.Fatalf("HTTP to the answered address: exit %d, %q", code, out)
	}
	wantFields(t, waitLines(t, h.logBuf, map[string]any{"method": "GET", "decision": "allow"})[0],
		map[string]any{"dns": "match", "host": "example.com"})
}

// serveTransparentIn opens egret's transparent listener on tproxyPort
// inside namespace ns and serves it with h's server.
func serveTransparentIn(t *testing.T, h *harness, ns string) {
	t.Helper()
	var lns []net.Listener
	netnstest.In(t, ns, func() {
		var err error
		if lns, err = ListenTransparent(fmt.Sprintf(":%d", tproxyPort), false); err != nil {
			t.Fatal(err)
		}
	})
	for _, ln := range lns {
		t.Cleanup(func() { ln.Close() })
		go h.srv.ServeTransparent(ln)
	}
}

// hasLine reports whether out (curl -i output) has line, ignoring CRs.
func hasLine(out, line string) bool {
	for l := range strings.Lines(out) {
		if strings.TrimRight(l, "\r\n") == line {
			return true
		}
	}
	return false
}
