package proxy

import (
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/egret-proxy/egret/internal/netnstest"
)

// Transparent mode through a real redirect: a client in its own network
// namespace, which knows nothing of egret, connects to "remote" addresses
// whose traffic a gateway namespace redirects (iptables REDIRECT, or an
// nftables redirect) to egret's transparent listener, opened inside the
// gateway namespace. egret's upstream dials leave from the test's own
// namespace to the harness's loopback upstreams (example.com is pinned to
// 127.0.0.1). See internal/netnstest for the topology.

const (
	remote4    = netnstest.Remote4
	remote6    = netnstest.Remote6
	tproxyPort = 3129
)

// TestTransparentThroughRealRedirect runs the same client through REDIRECT
// and through TPROXY (ServeTProxy), each set up by iptables and by nftables.
func TestTransparentThroughRealRedirect(t *testing.T) {
	for _, delivery := range []string{"redirect", "tproxy"} {
		for _, firewall := range []string{"iptables", "nftables"} {
			t.Run(delivery+"/"+firewall, func(t *testing.T) {
				tools := []string{"curl", "iptables", "ip6tables"}
				if firewall == "nftables" {
					tools = []string{"curl", "nft"}
				}
				netnstest.Require(t, tools...)
				testRealRedirect(t, firewall, delivery == "tproxy")
			})
		}
	}
}

func testRealRedirect(t *testing.T, firewall string, tproxy bool) {
	h := newHarness(t, harnessOpts{})
	tb := netnstest.New(t)
	serve := h.srv.ServeTransparent
	if tproxy {
		tb.TProxy(firewall, tproxyPort, h.tlsPort, h.httpPort)
		serve = h.srv.ServeTProxy
	} else {
		tb.Redirect(firewall, tproxyPort, h.tlsPort, h.httpPort)
	}
	// The listener is egret's own, on every address of the gateway, as
	// egret serve would tell its guard.
	r := h.srv.Rules()
	r.Guard.Self = append(r.Guard.Self, netip.AddrPortFrom(netip.IPv4Unspecified(), tproxyPort))
	r.Guard.Local = append(r.Guard.Local, netip.MustParseAddr(tb.GatewayAddr4))
	var lns []net.Listener
	netnstest.In(t, tb.Gateway, func() {
		var err error
		if lns, err = ListenTransparent(fmt.Sprintf(":%d", tproxyPort), tproxy); err != nil {
			t.Fatal(err)
		}
	})
	if len(lns) != 2 {
		t.Fatalf("ListenTransparent opened %d sockets in the gateway, want IPv4 and IPv6", len(lns))
	}
	for _, ln := range lns {
		t.Cleanup(func() { ln.Close() })
		go serve(ln)
	}
	t.Run("straight to egret's port", func(t *testing.T) {
		// Not redirected: egret refuses to be its own destination.
		var local string
		netnstest.In(t, tb.Client, func() {
			c, err := net.DialTimeout("tcp4", fmt.Sprintf("%s:%d", tb.GatewayAddr4, tproxyPort), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			local = c.LocalAddr().String()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, err := c.Read(make([]byte, 1)); err == nil {
				t.Fatalf("egret answered %d bytes to a connection straight to its own port", n)
			}
		})
		wantFields(t, waitLines(t, h.logBuf, map[string]any{"client": local})[0],
			map[string]any{"decision": "deny", "reason": "self", "listener": "transparent", "host": tb.GatewayAddr4, "port": tproxyPort})
	})
	caFile := filepath.Join(t.TempDir(), "upstream.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: h.tlsUp.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	tlsURL := func(name string) string { return fmt.Sprintf("https://%s:%d/named", name, h.tlsPort) }
	pinTLS := func(name, addr string) string { return fmt.Sprintf("%s:%d:%s", name, h.tlsPort, addr) }

	t.Run("allowed name over TLS", func(t *testing.T) {
		out, code := tb.Curl("--cacert", caFile, "--resolve", pinTLS("example.com", remote4), tlsURL("example.com"))
		if code != 0 || out != "tls upstream: GET /named" {
			t.Fatalf("curl exit %d, body %q", code, out)
		}
		line := waitLines(t, h.logBuf, map[string]any{"msg": "close", "sni": "example.com"})[0]
		wantFields(t, line, map[string]any{"decision": "allow", "listener": "transparent", "method": "TLS",
			"host": "example.com", "port": h.tlsPort, "ip": "127.0.0.1"})
		if !strings.HasPrefix(line["client"].(string), tb.ClientAddr4+":") {
			t.Errorf("client %v: want the client namespace's address %s", line["client"], tb.ClientAddr4)
		}
	})
	t.Run("allowed name over TLS, IPv6", func(t *testing.T) {
		out, code := tb.Curl("-6", "--cacert", caFile, "--resolve", pinTLS("example.com", "["+remote6+"]"), tlsURL("example.com"))
		if code != 0 || out != "tls upstream: GET /named" {
			t.Fatalf("curl exit %d, body %q", code, out)
		}
		waitFor(t, "a close line for the IPv6 client", func() bool {
			for _, l := range parseLines(t, h.logBuf.String()) {
				if c, _ := l["client"].(string); l["msg"] == "close" && strings.HasPrefix(c, "["+tb.ClientAddr6+"]:") && l["sni"] == "example.com" {
					return true
				}
			}
			return false
		})
	})
	t.Run("denied name over TLS is closed", func(t *testing.T) {
		_, code := tb.Curl("--cacert", caFile, "--resolve", pinTLS("denied.example", remote4), tlsURL("denied.example"))
		if code == 0 {
			t.Fatal("curl succeeded to a denied name")
		}
		wantFields(t, waitLines(t, h.logBuf, map[string]any{"host": "denied.example", "method": "TLS"})[0],
			map[string]any{"decision": "deny", "reason": "no-rule", "listener": "transparent", "port": h.tlsPort})
	})
	t.Run("TLS without SNI", func(t *testing.T) {
		// curl sends no SNI to an IP address.
		_, code := tb.Curl("-k", fmt.Sprintf("https://%s:%d/", remote4, h.tlsPort))
		if code == 0 {
			t.Fatal("TLS without SNI got through with no cidr rule")
		}
		wantFields(t, waitLines(t, h.logBuf, map[string]any{"reason": "no-sni"})[0],
			map[string]any{"decision": "deny", "host": remote4, "method": "TLS"})
	})
	t.Run("HTTP by Host", func(t *testing.T) {
		url := func(name string) string { return fmt.Sprintf("http://%s:%d/plain", name, h.httpPort) }
		pin := func(name string) string { return fmt.Sprintf("%s:%d:%s", name, h.httpPort, remote4) }
		out, code := tb.Curl("--resolve", pin("example.com"), url("example.com"))
		if code != 0 || !strings.HasPrefix(out, "http upstream: GET /plain") {
			t.Fatalf("allowed Host: exit %d, %q", code, out)
		}
		out, code = tb.Curl("-i", "--resolve", pin("denied.example"), url("denied.example"))
		if code != 0 || !strings.HasPrefix(out, "HTTP/1.1 403") || !strings.Contains(out, "X-Egret-Reason: no-rule") {
			t.Fatalf("denied Host: exit %d, %q", code, out)
		}
		wantFields(t, waitLines(t, h.logBuf, map[string]any{"host": "denied.example", "method": "GET"})[0],
			map[string]any{"decision": "deny", "path": "/plain", "listener": "transparent"})
	})
	t.Run("20 KB ClientHello", func(t *testing.T) {
		var c net.Conn
		netnstest.In(t, tb.Client, func() {
			var err error
			if c, err = net.DialTimeout("tcp4", fmt.Sprintf("%s:%d", remote4, h.tlsPort), 5*time.Second); err != nil {
				t.Fatal(err)
			}
		})
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		cfg := h.tlsConfig("example.com")
		for i := range 80 {
			cfg.NextProtos = append(cfg.NextProtos, fmt.Sprintf("%03d-%s", i, strings.Repeat("p", 246)))
		}
		cfg.NextProtos = append(cfg.NextProtos, "http/1.1")
		if body, err := getOverTLS(t, c, cfg); err != nil || !strings.HasPrefix(body, "tls upstream") {
			t.Fatalf("%q %v", body, err)
		}
	})
	t.Run("client that closes early", func(t *testing.T) {
		var clients []string
		for _, partial := range []string{"", "\x16\x03\x01\x40\x00\x01"} {
			netnstest.In(t, tb.Client, func() {
				c, err := net.DialTimeout("tcp4", fmt.Sprintf("%s:%d", remote4, h.tlsPort), 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				clients = append(clients, c.LocalAddr().String())
				io.WriteString(c, partial)
				c.Close()
			})
		}
		waitFor(t, "the early-closing connections to end", func() bool { return h.srv.ActiveConns() == 0 })
		for _, l := range parseLines(t, h.logBuf.String()) {
			for _, c := range clients {
				if l["client"] == c {
					t.Errorf("a decision line for a client that sent no complete hello: %v", l)
				}
			}
		}
	})
}
