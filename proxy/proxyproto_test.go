package proxy

import (
	"io"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
)

// TestProxyProtocolOnBothListeners: behind a load balancer (here the test,
// from 127.0.0.1) a PROXY v2 header names the client 10.0.1.7; identity by
// source, the log's client and the decision use it, on the explicit and
// the transparent listener. The original destination of a redirected
// connection still comes from its socket.
func TestProxyProtocolOnBothListeners(t *testing.T) {
	lbOnly := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	h := newHarness(t, harnessOpts{mutate: func(r *Rules) {
		id, err := r.Policy.Identity("segment", "test")
		if err != nil {
			t.Fatal(err)
		}
		r.Clients = []Client{{Name: "segment", Sources: []netip.Prefix{netip.MustParsePrefix("10.0.1.0/24")}, Identity: id}}
		r.Default.Identity, _ = r.Policy.Identity("default") // anyone else: nothing
	}})
	header := func(c net.Conn, dst string) {
		hdr := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP("10.0.1.7"), Port: 40000}, net.TCPAddrFromAddrPort(netip.MustParseAddrPort(dst)))
		if _, err := hdr.WriteTo(c); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("explicit", func(t *testing.T) {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go h.srv.ServeExplicit(AcceptProxyProtocol(ln, lbOnly, 5*time.Second))
		c := dialRaw(t, ln.Addr().String())
		header(c, ln.Addr().String())
		c.send(t, "CONNECT example.com:"+strconv.Itoa(h.tlsPort)+" HTTP/1.1\r\n\r\n")
		if resp, _ := c.response(t, "CONNECT"); resp.StatusCode != 200 {
			t.Fatalf("CONNECT behind PROXY: %d", resp.StatusCode)
		}
		// The tunnel copies from the socket beneath the PROXY header
		// (socketOf): a TLS session through it loses no byte.
		if body, err := getOverTLS(t, c, h.tlsConfig("example.com")); err != nil || body != "tls upstream: GET /via-sni" {
			t.Fatalf("TLS through the tunnel behind PROXY: %q %v", body, err)
		}
		waitLines(t, h.logBuf, map[string]any{"listener": "explicit", "client": "10.0.1.7:40000", "identity": "segment", "decision": "allow"})
	})
	t.Run("transparent", func(t *testing.T) {
		dial := h.transparentVia(func(l net.Listener) net.Listener { return AcceptProxyProtocol(l, lbOnly, 5*time.Second) })
		c := dial(elsewhere(h.tlsPort))
		header(c, "203.0.113.7:"+strconv.Itoa(h.tlsPort))
		body, err := getOverTLS(t, c, h.tlsConfig("example.com"))
		if err != nil || body != "tls upstream: GET /via-sni" {
			t.Fatalf("TLS behind PROXY: %q %v", body, err)
		}
		waitLines(t, h.logBuf, map[string]any{"listener": "transparent", "client": "10.0.1.7:40000", "identity": "segment", "decision": "allow", "host": "example.com"})
	})
}

// TestAfterHeaderRead: once the explicit listener's header reader has read
// a request through go-proxyproto's Conn, the tunnel gets the TCP socket
// beneath it, which it can wait on and splice from; the library then holds
// no byte of the connection. A header, a CONNECT and early bytes sent in
// one write all arrive where they belong.
func TestTunnelReadsTheSocketBeneathTheHeader(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pl := AcceptProxyProtocol(ln, []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, 5*time.Second)
	go func() {
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			return
		}
		defer c.Close()
		hdr := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP("10.0.1.7"), Port: 40000}, ln.Addr().(*net.TCPAddr))
		b, _ := hdr.Format()
		c.Write(append(b, "CONNECT example.com:443 HTTP/1.1\r\n\r\nearly bytes"...))
		c.Write([]byte(" and later ones"))
		time.Sleep(time.Second)
	}()
	c, err := pl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	hr := newHeaderReader(c, 1024) // the smallest max_header_bytes
	defer hr.release()
	req, err := readRequest(hr.br, 1024)
	if err != nil || req.Method != "CONNECT" {
		t.Fatalf("request %v, %v", req, err)
	}
	early := make([]byte, hr.br.Buffered())
	hr.br.Read(early)
	raw := socketOf(c)
	if _, ok := raw.(*net.TCPConn); !ok {
		t.Fatalf("socketOf gave %T, want the *net.TCPConn", raw)
	}
	rest := make([]byte, 64)
	n, _ := io.ReadAtLeast(raw, rest, len(" and later ones"))
	if got := string(early) + string(rest[:n]); got != "early bytes and later ones" {
		t.Errorf("bytes after the request: %q", got)
	}
}
