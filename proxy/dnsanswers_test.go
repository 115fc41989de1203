package proxy

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// The transparent listener against what a DNS door answered. answered is
// the DNSAnswers contract itself, a name's handed-out addresses, without
// any DNS: the door's own tests (package dns) show that it records what
// it answers; these show what the listener does with it.

// answered maps normalised names to the addresses a DNS door handed out
// for them.
type answered map[string][]netip.Addr

func (a answered) Answered(name string, ip netip.Addr) bool { return slices.Contains(a[name], ip) }

// theAnswer is the address the door handed out for example.com: the
// "server on the internet" elsewhere() stands for.
var theAnswer = elsewhere(0).Addr()

// otherAddr is an address the door never handed out for any name.
func otherAddr(port int) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("198.51.100.9"), uint16(port))
}

func dnsHarness(t *testing.T, mutate func(*Rules)) *harness {
	door := answered{"example.com": {theAnswer}, "denied.example": {theAnswer}}
	return newHarness(t, harnessOpts{mutate: mutate, server: []Option{WithDNSAnswers(door)}})
}

// getHTTP sends one plain request with the given Host to a redirected
// connection and returns the response.
func getHTTP(t *testing.T, dial func(netip.AddrPort) *rawConn, orig netip.AddrPort, host string) *http.Response {
	t.Helper()
	c := dial(orig)
	c.send(t, "GET /dns HTTP/1.1\r\nHost: "+host+"\r\nConnection: close\r\n\r\n")
	resp, _ := c.response(t, "GET")
	return resp
}

// rawDialer wraps the harness's transparent dial (of which a harness has
// one) for plain requests.
func rawDialer(dial func(netip.AddrPort) net.Conn) func(netip.AddrPort) *rawConn {
	return func(orig netip.AddrPort) *rawConn {
		c := dial(orig)
		return &rawConn{Conn: c, br: bufio.NewReader(c)}
	}
}

func TestTransparentDNSMatch(t *testing.T) {
	h := dnsHarness(t, nil)
	dial := h.transparent()
	httpDial := rawDialer(dial)

	t.Run("TLS to the answered address", func(t *testing.T) {
		if body, err := getOverTLS(t, dial(elsewhere(h.tlsPort)), h.tlsConfig("example.com")); err != nil || !strings.HasPrefix(body, "tls upstream") {
			t.Fatalf("%q %v", body, err)
		}
		line := waitLines(t, h.logBuf, map[string]any{"msg": "decision", "method": "TLS", "dns": "match"})[0]
		wantFields(t, line, map[string]any{"decision": "allow", "sni": "example.com", "ip": "127.0.0.1"})
	})
	t.Run("TLS to another address is allowed and marked", func(t *testing.T) {
		if body, err := getOverTLS(t, dial(otherAddr(h.tlsPort)), h.tlsConfig("example.com")); err != nil || !strings.HasPrefix(body, "tls upstream") {
			t.Fatalf("without require_dns_match a mismatch passes: %q %v", body, err)
		}
		line := waitLines(t, h.logBuf, map[string]any{"msg": "decision", "method": "TLS", "dns": "mismatch"})[0]
		wantFields(t, line, map[string]any{"decision": "allow", "reason": "rule", "host": "example.com", "ip": "127.0.0.1"})
	})
	t.Run("HTTP by a Host written differently", func(t *testing.T) {
		resp := getHTTP(t, httpDial, elsewhere(h.httpPort), "EXAMPLE.com.")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s", resp.Status)
		}
		wantFields(t, waitLines(t, h.logBuf, map[string]any{"msg": "decision", "method": "GET"})[0],
			map[string]any{"decision": "allow", "host": "example.com", "dns": "match"})
	})
	t.Run("a denied name keeps its own reason", func(t *testing.T) {
		resp := getHTTP(t, httpDial, otherAddr(h.httpPort), "denied.example")
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-Egret-Reason") != "no-rule" {
			t.Fatalf("%s %v", resp.Status, resp.Header)
		}
		wantFields(t, waitLines(t, h.logBuf, map[string]any{"host": "denied.example"})[0],
			map[string]any{"decision": "deny", "reason": "no-rule", "dns": "mismatch"})
	})
	t.Run("TLS without SNI names nothing to compare", func(t *testing.T) {
		getOverTLS(t, dial(elsewhere(h.tlsPort)), &tls.Config{InsecureSkipVerify: true})
		line := waitLines(t, h.logBuf, map[string]any{"reason": "no-sni"})[0]
		if _, ok := line["dns"]; ok {
			t.Errorf("a line without a name has a dns field: %v", line)
		}
	})
}

func TestTransparentRequireDNSMatch(t *testing.T) {
	h := dnsHarness(t, func(r *Rules) { r.RequireDNSMatch = true })
	dial := h.transparent()
	httpDial := rawDialer(dial)

	if body, err := getOverTLS(t, dial(elsewhere(h.tlsPort)), h.tlsConfig("example.com")); err != nil || !strings.HasPrefix(body, "tls upstream") {
		t.Fatalf("a match is allowed: %q %v", body, err)
	}
	if _, err := getOverTLS(t, dial(otherAddr(h.tlsPort)), h.tlsConfig("example.com")); err == nil {
		t.Fatal("TLS to an address the door did not hand out got through")
	}
	deny := waitLines(t, h.logBuf, map[string]any{"method": "TLS", "decision": "deny"})[0]
	wantFields(t, deny, map[string]any{"reason": "dns-mismatch", "dns": "mismatch", "host": "example.com",
		"sni": "example.com", "rule": "example.com", "listener": "transparent"})
	if _, ok := deny["product"]; ok {
		t.Errorf("a deny names a deciding product: %v", deny)
	}

	resp := getHTTP(t, httpDial, otherAddr(h.httpPort), "example.com")
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-Egret-Reason") != "dns-mismatch" {
		t.Fatalf("HTTP mismatch: %s %v", resp.Status, resp.Header)
	}
	if resp := getHTTP(t, httpDial, elsewhere(h.httpPort), "example.com"); resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP match: %s", resp.Status)
	}

	t.Run("report mode lets a mismatch through as would-deny", func(t *testing.T) {
		swapRules(h, func(r *Rules) { r.Default.Mode = ModeReport })
		if resp := getHTTP(t, httpDial, otherAddr(h.httpPort), "example.com"); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s", resp.Status)
		}
		wantFields(t, waitLines(t, h.logBuf, map[string]any{"decision": "would-deny", "method": "GET"})[0],
			map[string]any{"reason": "dns-mismatch", "dns": "mismatch", "ip": "127.0.0.1"})
	})
}

func TestTransparentNoDNSDoor(t *testing.T) {
	h := newHarness(t, harnessOpts{mutate: func(r *Rules) { r.RequireDNSMatch = true }})
	dial := h.transparent()
	if body, err := getOverTLS(t, dial(otherAddr(h.tlsPort)), h.tlsConfig("example.com")); err != nil || !strings.HasPrefix(body, "tls upstream") {
		t.Fatalf("require_dns_match without a DNS door must deny nothing: %q %v", body, err)
	}
	line := h.lines(1)[0]
	if _, ok := line["dns"]; ok {
		t.Errorf("without a DNS door a line has a dns field: %v", line)
	}
}

// With ech: outer-sni a hello that offers ECH is decided, dialled and
// replayed by its outer name. Go's client offers real ECH (a config for
// the public name example.com); the upstream has no ECH key, so it
// answers the outer hello and the client, as it must, refuses the
// session with an ECH rejection: that egret passed the hello on is what
// the rejection shows. GREASE ECH, which passes, is Chromium's
// (TestChromiumECH).
func TestTransparentECHOuterSNI(t *testing.T) {
	h := newHarness(t, harnessOpts{mutate: func(r *Rules) { r.ECH = ECHOuterSNI }})
	dial := h.transparent()
	offer := func(public string) error {
		cfg := h.tlsConfig("hidden.example")
		cfg.MinVersion = tls.VersionTLS13
		cfg.EncryptedClientHelloConfigList = echConfigList(t, public)
		_, err := getOverTLS(t, dial(elsewhere(h.tlsPort)), cfg)
		return err
	}
	var rejected *tls.ECHRejectionError
	if err := offer("example.com"); !errors.As(err, &rejected) {
		t.Fatalf("handshake error %v, want the upstream's ECH rejection", err)
	}
	line := waitLines(t, h.logBuf, map[string]any{"msg": "decision", "host": "example.com"})[0]
	wantFields(t, line, map[string]any{"decision": "allow", "ech": "outer-sni", "sni": "example.com", "method": "TLS"})
	waitLines(t, h.logBuf, map[string]any{"msg": "close", "ech": "outer-sni"})

	if err := offer("denied.example"); err == nil || errors.As(err, &rejected) {
		t.Fatalf("an outer name no rule allows: %v, want the connection closed", err)
	}
	wantFields(t, waitLines(t, h.logBuf, map[string]any{"host": "denied.example"})[0],
		map[string]any{"decision": "deny", "reason": "no-rule", "ech": "outer-sni"})
	if got := fmt.Sprint(linesWith(parseLines(t, h.logBuf.String()), map[string]any{"reason": "ech"})); got != "[]" {
		t.Errorf("a hello denied for ECH under outer-sni: %s", got)
	}
}
