package proxy

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/egret-proxy/egret/allowlists"
	"github.com/egret-proxy/egret/telemetry"
	"github.com/egret-proxy/egret/telemetry/telemetrytest"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/curve25519"
)

// The transparent listener on loopback, with the kernel's part (where was
// this connection going?) played by a table the test fills as it dials:
// originalDst answers for a client connection what SO_ORIGINAL_DST would
// after an iptables REDIRECT. The netns tests (netns_linux_test.go) run
// the same listener behind real iptables and nftables.

// transparent starts the harness's transparent listener and returns a dial
// function that connects to it "on the way to" orig.
func (h *harness) transparent() func(orig netip.AddrPort) net.Conn {
	h.t.Helper()
	return h.transparentVia(func(l net.Listener) net.Listener { return l })
}

// transparentVia is transparent with the listener wrapped by wrap (as
// serve wraps it for the PROXY protocol).
func (h *harness) transparentVia(wrap func(net.Listener) net.Listener) func(orig netip.AddrPort) net.Conn {
	h.t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { ln.Close() })
	var redirected sync.Map // client address → original destination (invalid: not redirected)
	h.srv.originalDst = func(c net.Conn) (netip.AddrPort, error) {
		// The test records a connection right after its dial returns,
		// which can be after the server accepted it: wait for the entry.
		for range 500 {
			if v, ok := redirected.Load(c.RemoteAddr().String()); ok {
				if orig := v.(netip.AddrPort); orig.IsValid() {
					return orig, nil
				}
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		return netip.ParseAddrPort(c.LocalAddr().String()) // what the kernel says of a connection it did not redirect
	}
	r := h.srv.Rules()
	r.Guard.Self = append(r.Guard.Self, netip.MustParseAddrPort(ln.Addr().String()))
	go h.srv.ServeTransparent(wrap(ln))
	return func(orig netip.AddrPort) net.Conn {
		h.t.Helper()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			h.t.Fatal(err)
		}
		h.t.Cleanup(func() { c.Close() })
		redirected.Store(c.LocalAddr().String(), orig)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		return c
	}
}

// elsewhere is a documentation address standing for "some server on the
// internet" the client believed it was connecting to; egret never dials it
// (it dials the name it reads, pinned to loopback).
func elsewhere(port int) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("203.0.113.7"), uint16(port))
}

func (h *harness) tlsConfig(name string) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(h.tlsUp.Certificate())
	return &tls.Config{ServerName: name, RootCAs: pool}
}

// getOverTLS runs one GET through a TLS client on c and returns the body.
func getOverTLS(t *testing.T, c net.Conn, cfg *tls.Config) (string, error) {
	t.Helper()
	tc := tls.Client(c, cfg)
	defer tc.Close() // the tunnel ends (and its close line is written) when both sides have
	if err := tc.Handshake(); err != nil {
		return "", err
	}
	fmt.Fprintf(tc, "GET /via-sni HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", cfg.ServerName)
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestTransparentTLSBySNI(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	dial := h.transparent()

	body, err := getOverTLS(t, dial(elsewhere(h.tlsPort)), h.tlsConfig("example.com"))
	if err != nil || body != "tls upstream: GET /via-sni" {
		t.Fatalf("allowed SNI: body %q, err %v", body, err)
	}
	lines := h.lines(2)
	want := map[string]any{"listener": "transparent", "method": "TLS", "host": "example.com",
		"port": h.tlsPort, "sni": "example.com", "decision": "allow", "reason": "rule", "ip": "127.0.0.1"}
	wantFields(t, lines[0], want)
	wantFields(t, lines[1], map[string]any{"msg": "close", "listener": "transparent", "host": "example.com"})
	if up, _ := lines[1]["bytes_up"].(float64); up < 512 {
		t.Errorf("close line counts %v bytes up; the replayed ClientHello alone is more", lines[1]["bytes_up"])
	}

	if _, err := getOverTLS(t, dial(elsewhere(h.tlsPort)), h.tlsConfig("denied.example")); err == nil {
		t.Fatal("denied SNI: handshake succeeded")
	}
	deny := waitLines(t, h.logBuf, map[string]any{"host": "denied.example"})
	wantFields(t, deny[0], map[string]any{"decision": "deny", "reason": "no-rule", "method": "TLS", "listener": "transparent"})
}

func TestTransparentTLSWithoutSNI(t *testing.T) {
	noSNI := &tls.Config{InsecureSkipVerify: true} // no ServerName: Go sends no SNI
	t.Run("denied", func(t *testing.T) {
		h := newHarness(t, harnessOpts{})
		dial := h.transparent()
		if _, err := getOverTLS(t, dial(elsewhere(h.tlsPort)), noSNI); err == nil {
			t.Fatal("TLS without SNI got through with no cidr rule")
		}
		wantFields(t, h.lines(1)[0], map[string]any{"decision": "deny", "reason": "no-sni", "host": "203.0.113.7"})
	})
	t.Run("cidr rule on the original address", func(t *testing.T) {
		h := newHarness(t, harnessOpts{})
		dial := h.transparent()
		swapRules(h, func(r *Rules) {
			rule := fmt.Sprintf("  - {cidr: 127.0.0.1/32, ports: [%d], purpose: the no-SNI upstream}", h.tlsPort)
			r.Policy, r.Default.Identity = policyFrom(t, rule, allowlists.Settings{})
		})
		body, err := getOverTLS(t, dial(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(h.tlsPort))), noSNI)
		if err != nil || !strings.HasPrefix(body, "tls upstream") {
			t.Fatalf("cidr-allowed TLS without SNI: %q %v", body, err)
		}
		wantFields(t, h.lines(1)[0], map[string]any{"decision": "allow", "host": "127.0.0.1", "rule": "127.0.0.1/32"})
	})
}

func TestTransparentLargeClientHello(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	dial := h.transparent()
	// Application protocols of 250 bytes make ClientHellos of ~20 KB (two
	// TLS records: the size post-quantum key shares and long ALPN lists
	// reach) and ~40 KB (three records).
	for i, protos := range []int{80, 160} {
		cfg := h.tlsConfig("example.com")
		for i := range protos {
			cfg.NextProtos = append(cfg.NextProtos, fmt.Sprintf("%03d-%s", i, strings.Repeat("p", 246)))
		}
		cfg.NextProtos = append(cfg.NextProtos, "http/1.1")
		size := protos * 251
		body, err := getOverTLS(t, dial(elsewhere(h.tlsPort)), cfg)
		if err != nil || !strings.HasPrefix(body, "tls upstream") {
			t.Fatalf("%d KB ClientHello: %q %v", size>>10, body, err)
		}
		var closes []map[string]any
		waitFor(t, "the tunnel's close line", func() bool {
			closes = linesWith(parseLines(t, h.logBuf.String()), map[string]any{"msg": "close"})
			return len(closes) > i
		})
		if up, _ := closes[i]["bytes_up"].(float64); up < float64(size) {
			t.Errorf("%d KB hello: bytes_up %v, the whole hello should have been replayed", size>>10, up)
		}
	}
}

func TestTransparentBadHellos(t *testing.T) {
	h := newHarness(t, harnessOpts{mutate: func(r *Rules) { r.Limits.ReadHeaderTimeout = 300 * time.Millisecond }})
	dial := h.transparent()
	huge := make([]byte, 9)
	huge[0], huge[1], huge[2] = 0x16, 0x03, 0x01 // handshake record, TLS 1.0 framing
	binary.BigEndian.PutUint16(huge[3:], 16384)
	huge[5] = 0x01                               // ClientHello
	huge[6], huge[7], huge[8] = 0x01, 0x11, 0x70 // 70000 bytes: over 64 KiB
	cases := []struct {
		name, send, method string
	}{
		{"hello over 64 KiB", string(huge), "TLS"},
		{"not a ClientHello", "\x16\x03\x01\x00\x05hello", "TLS"},
		{"neither TLS nor HTTP", "\x00\x01binary", "unknown"},
		{"silent client", "", "TLS"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(elsewhere(443))
			io.WriteString(c, tc.send)
			if closed, got := closedWithin(c, c, 5*time.Second); !closed {
				t.Fatalf("connection still open; read %q", got)
			}
			lines := h.lines(i + 1)
			wantFields(t, lines[i], map[string]any{"decision": "deny", "reason": "bad-hello", "method": tc.method,
				"host": "203.0.113.7", "port": 443})
		})
	}
}

// A client that goes away before finishing its hello is no decision: no
// line, and the server holds nothing for it.
func TestTransparentClientClosesEarly(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	dial := h.transparent()
	for _, partial := range []string{"", "\x16", "\x16\x03\x01\x40\x00\x01\x00"} {
		c := dial(elsewhere(h.tlsPort))
		io.WriteString(c, partial)
		c.Close()
	}
	waitFor(t, "connections to end", func() bool { return h.srv.ActiveConns() == 0 })
	if got := h.logBuf.String(); got != "" {
		t.Errorf("decision log: %s", got)
	}
	// The listener still serves.
	if _, err := getOverTLS(t, dial(elsewhere(h.tlsPort)), h.tlsConfig("example.com")); err != nil {
		t.Fatal(err)
	}
}

func TestTransparentECHDenied(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	dial := h.transparent()
	cfg := h.tlsConfig("example.com")
	cfg.MinVersion = tls.VersionTLS13
	cfg.EncryptedClientHelloConfigList = echConfigList(t, "public.example")
	if _, err := getOverTLS(t, dial(elsewhere(h.tlsPort)), cfg); err == nil {
		t.Fatal("ECH handshake got through")
	}
	wantFields(t, h.lines(1)[0], map[string]any{"decision": "deny", "reason": "ech", "host": "public.example"})
}

// echConfigList builds an ECHConfigList (draft-ietf-tls-esni §4) with a
// fresh X25519 key, enough for crypto/tls to offer ECH.
func echConfigList(t *testing.T, publicName string) []byte {
	t.Helper()
	var priv [32]byte
	priv[0] = 1
	pub, err := curve25519.X25519(priv[:], curve25519.Basepoint)
	if err != nil {
		t.Fatal(err)
	}
	var b cryptobyte.Builder
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddUint16(0xfe0d) // version
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			b.AddUint8(7)       // config id
			b.AddUint16(0x0020) // DHKEM(X25519, HKDF-SHA256)
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(pub) })
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
				b.AddUint16(0x0001) // HKDF-SHA256
				b.AddUint16(0x0001) // AES-128-GCM
			})
			b.AddUint8(0) // maximum name length
			b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(publicName)) })
			b.AddUint16(0) // no extensions
		})
	})
	return b.BytesOrPanic()
}

func TestTransparentHTTPByHost(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	dial := h.transparent()
	c := &rawConn{Conn: dial(elsewhere(h.httpPort)), br: nil}
	c.br = bufio.NewReader(c.Conn)

	c.send(t, "GET /denied HTTP/1.1\r\nHost: denied.example\r\n\r\n")
	resp, _ := c.response(t, "GET")
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-Egret-Reason") != "no-rule" {
		t.Fatalf("denied Host: %s %v", resp.Status, resp.Header)
	}
	// Same connection, next request: decided on its own Host.
	c.send(t, "GET /ok?q=1 HTTP/1.1\r\nHost: example.com\r\nProxy-Authorization: Basic eDp5\r\n\r\n")
	resp, body := c.response(t, "GET")
	if resp.StatusCode != http.StatusOK || body != "http upstream: GET /ok?q=1 " {
		t.Fatalf("allowed Host: %s %q", resp.Status, body)
	}
	seen := <-h.lastHost
	if got, want := seen.Get("Host"), fmt.Sprintf("example.com:%d", h.httpPort); got != want {
		t.Errorf("upstream saw Host %q, want %q", got, want)
	}
	if seen.Get("Proxy-Authorization") != "" {
		t.Error("Proxy-Authorization forwarded")
	}
	lines := h.lines(3)
	wantFields(t, lines[0], map[string]any{"decision": "deny", "host": "denied.example", "method": "GET",
		"listener": "transparent", "port": h.httpPort, "path": "/denied"})
	wantFields(t, lines[1], map[string]any{"decision": "allow", "host": "example.com", "path": "/ok", "ip": "127.0.0.1"})

	// HTTP/1.0 without Host: only the original address is known.
	c2 := &rawConn{Conn: dial(elsewhere(h.httpPort))}
	c2.br = bufio.NewReader(c2.Conn)
	c2.send(t, "GET / HTTP/1.0\r\n\r\n")
	if resp, _ := c2.response(t, "GET"); resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-Egret-Reason") != "no-rule" {
		t.Fatalf("no Host: %s %v", resp.Status, resp.Header)
	}
	// A Host that is no valid name.
	c3 := &rawConn{Conn: dial(elsewhere(h.httpPort))}
	c3.br = bufio.NewReader(c3.Conn)
	c3.send(t, "GET / HTTP/1.1\r\nHost: example.com%2eevil\r\n\r\n")
	if resp, _ := c3.response(t, "GET"); resp.Header.Get("X-Egret-Reason") != "bad-host" {
		t.Fatalf("bad Host: %s %v", resp.Status, resp.Header)
	}
	// Smuggling forms get 400 here as on the explicit listener.
	c4 := &rawConn{Conn: dial(elsewhere(h.httpPort))}
	c4.br = bufio.NewReader(c4.Conn)
	c4.send(t, "POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n")
	if resp, _ := c4.response(t, "POST"); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("CL+TE: %s", resp.Status)
	}
}

func TestTransparentNotRedirected(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	dial := h.transparent()
	c := dial(netip.AddrPort{}) // straight to the listener
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
	if closed, got := closedWithin(c, c, 5*time.Second); !closed || got != "" {
		t.Fatalf("closed %v, read %q", closed, got)
	}
	wantFields(t, h.lines(1)[0], map[string]any{"decision": "deny", "reason": "self", "host": "127.0.0.1"})
}

func TestTransparentReportMode(t *testing.T) {
	h := newHarness(t, harnessOpts{mutate: func(r *Rules) { r.Default.Mode = ModeReport }})
	dial := h.transparent()
	cfg := h.tlsConfig("denied.example")
	cfg.InsecureSkipVerify = true // the loopback upstream's certificate names example.com
	if _, err := getOverTLS(t, dial(elsewhere(h.tlsPort)), cfg); err != nil {
		t.Fatalf("report mode refused: %v", err)
	}
	wantFields(t, h.lines(1)[0], map[string]any{"decision": "would-deny", "reason": "no-rule", "mode": "report"})
}

func TestTransparentMaxConns(t *testing.T) {
	h := newHarness(t, harnessOpts{mutate: func(r *Rules) { r.Limits.MaxConns = 1 }})
	dial := h.transparent()
	held := dial(elsewhere(h.tlsPort)) // holds the one slot, saying nothing yet
	waitFor(t, "the first connection to be served", func() bool { return h.srv.ActiveConns() == 1 })
	over := dial(elsewhere(h.tlsPort))
	if closed, got := closedWithin(over, over, 5*time.Second); !closed || got != "" {
		t.Fatalf("over the cap: closed %v, read %q (want closed without a word)", closed, got)
	}
	if _, err := getOverTLS(t, held, h.tlsConfig("example.com")); err != nil {
		t.Fatalf("the connection within the cap: %v", err)
	}
}

func TestListenTransparent(t *testing.T) {
	lns, err := ListenTransparent("127.0.0.1:0", false)
	if err != nil || len(lns) != 1 || !strings.HasPrefix(lns[0].Addr().String(), "127.0.0.1:") {
		t.Fatalf("%v %v", lns, err)
	}
	lns[0].Close()
	if _, err := ListenTransparent("no-port", false); err == nil {
		t.Error("an address without a port was accepted")
	}
	lns, err = ListenTransparent(":0", false)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lns {
		defer l.Close()
	}
	if a := lns[0].Addr().(*net.TCPAddr); a.IP.To4() == nil {
		t.Errorf("first listener %v is not IPv4", a)
	}
	if len(lns) == 2 {
		if a := lns[1].Addr().(*net.TCPAddr); a.IP.To4() != nil {
			t.Errorf("second listener %v is not IPv6", a)
		}
	}
}

// Of a connection that was not redirected, SO_ORIGINAL_DST tells either
// nothing (no conntrack entry: ENOENT) or the connection's own local
// address, never another destination; the listener treats both as egret
// itself. The netns tests read it after real redirects.
func TestOriginalDstOfAConnectionNotRedirected(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := originalDst(s)
	if err != nil && !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("originalDst: %v", err)
	}
	if err == nil && got.String() != ln.Addr().String() {
		t.Fatalf("originalDst = %v; want %v", got, ln.Addr())
	}
}

// Identity by listener: a client known only by its listener is every
// client of that listener; a source match on the listener comes first,
// and neither applies on the other listener.
func TestIdentityByListener(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	dial := h.transparent()
	swapRules(h, func(r *Rules) {
		id := r.Default.Identity
		none, err := r.Policy.Identity("default")
		if err != nil {
			t.Fatal(err)
		}
		r.Default.Identity = none
		r.Clients = []Client{
			{Name: "redirected", Listener: ListenerTransparent, Identity: id},
			{Name: "other-segment", Listener: ListenerTransparent, Sources: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Identity: none},
		}
	})
	if _, err := getOverTLS(t, dial(elsewhere(h.tlsPort)), h.tlsConfig("example.com")); err != nil {
		t.Fatalf("the transparent listener's client: %v", err)
	}
	wantFields(t, h.lines(1)[0], map[string]any{"identity": "redirected", "decision": "allow", "listener": "transparent"})

	resp := h.raw(fmt.Sprintf("GET http://example.com:%d/ HTTP/1.1\r\nHost: example.com\r\n\r\n", h.httpPort))
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("explicit listener: %s, want the default identity's 403", resp.Status)
	}
	wantFields(t, waitLines(t, h.logBuf, map[string]any{"listener": "explicit"})[0], map[string]any{"identity": "default"})

	r := h.srv.Rules()
	if got := r.identifyTransparent(netip.MustParseAddr("10.1.2.3")).Name; got != "other-segment" {
		t.Errorf("source match on the transparent listener: %s", got)
	}
	if got := r.identify(nil, netip.MustParseAddr("10.1.2.3"), "").Name; got != "default" {
		t.Errorf("a transparent-only client matched on the explicit listener: %s", got)
	}
}

// The transparent listener reports through the same signals: decisions by
// product and reason, and its own active-tunnel gauge.
func TestTransparentMetrics(t *testing.T) {
	otelEnv(t, "")
	tel := newTelemetry(t)
	h := newHarness(t, harnessOpts{server: []Option{WithTelemetry(tel)}})
	dial := h.transparent()
	admin := httptest.NewServer(h.srv.AdminHandler())
	defer admin.Close()
	metrics := admin.URL + "/metrics"
	active := map[string]string{"listener": "transparent"}

	c := dial(elsewhere(h.tlsPort))
	tc := tls.Client(c, h.tlsConfig("example.com"))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the transparent tunnel to be counted", func() bool {
		return telemetrytest.Value(telemetrytest.Scrape(t, metrics), telemetry.MetricActiveTunnels, active) == 1
	})
	tc.Close()
	if _, err := getOverTLS(t, dial(elsewhere(h.tlsPort)), h.tlsConfig("denied.example")); err == nil {
		t.Fatal("denied SNI got through")
	}
	waitFor(t, "the tunnel to end", func() bool {
		return telemetrytest.Value(telemetrytest.Scrape(t, metrics), telemetry.MetricActiveTunnels, active) == 0
	})
	fams := telemetrytest.Scrape(t, metrics)
	for _, d := range []struct{ labels map[string]string }{
		{map[string]string{"product": "test", "decision": "allow", "reason": "rule"}},
		{map[string]string{"product": "test", "decision": "deny", "reason": "no-rule"}},
	} {
		if got := telemetrytest.Value(fams, telemetry.MetricDecisions, d.labels); got != 1 {
			t.Errorf("%s%v = %v, want 1", telemetry.MetricDecisions, d.labels, got)
		}
	}
}
