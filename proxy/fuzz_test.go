package proxy

import (
	"bufio"
	"bytes"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/egret-proxy/egret/allowlists"
)

// Native fuzz targets for the parsers of the data path. Seeds are in
// testdata/fuzz/<target>/ (smuggling requests, CONNECT authorities, real
// ClientHellos recorded from crypto/tls); scripts/fuzz.sh runs each target
// for FUZZTIME in CI.

// FuzzReadRequest: whatever the bytes, readRequest and requestTarget do
// not panic; a request that passes the smuggling checks has one
// unambiguous body length; a target that parses has a port in 1–65535;
// and a host written with a percent-escape reaches the normaliser
// undecoded.
func FuzzReadRequest(f *testing.F) {
	for _, s := range []string{
		"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
		"CONNECT [::1]:443 HTTP/1.1\r\n\r\n",
		"GET http://example.com/a?b HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET http://b%C3%BCcher.example/ HTTP/1.1\r\n\r\n",
		"POST http://e.com/ HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET http://e.com/ HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const max = 4096
		req, err := readRequest(bufio.NewReaderSize(bytes.NewReader(data), max), max)
		if err != nil {
			return
		}
		if len(req.Header.Values("Content-Length")) > 1 {
			t.Fatalf("accepted several Content-Lengths: %q", data)
		}
		if len(req.TransferEncoding) > 0 && (req.Header.Get("Content-Length") != "" || len(req.TransferEncoding) != 1 || req.TransferEncoding[0] != "chunked") {
			t.Fatalf("accepted an ambiguous body length: TE %q, CL %q", req.TransferEncoding, req.Header.Values("Content-Length"))
		}
		host, port, _, err := requestTarget(req)
		if err != nil {
			return
		}
		if port < 1 || port > 65535 {
			t.Fatalf("port %d from %q", port, req.RequestURI)
		}
		if req.Method != http.MethodConnect && strings.Contains(hostOfAuthority(authorityOf(req.RequestURI)), "%") && !strings.Contains(host, "%") {
			t.Fatalf("target %q: host %q was percent-decoded", req.RequestURI, host)
		}
		checkDest(t, host, port)
	})
}

// authorityOf returns the authority of an absolute-form target as written.
func authorityOf(target string) string {
	_, rest, _ := strings.Cut(target, "://")
	return rest[:strings.IndexAny(rest+"/", "/?#")]
}

// hostOfAuthority returns the host[:port] of an authority as written: what
// follows the last '@' (userinfo, which may hold escapes, is no part of
// the host and never decides).
func hostOfAuthority(authority string) string {
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		return authority[i+1:]
	}
	return authority
}

// checkDest: a host that becomes a destination is canonical: normalising
// its canonical form gives it back, and it has none of the bytes a name
// must not carry.
func checkDest(t *testing.T, host string, port int) {
	t.Helper()
	d, err := allowlists.NewDest(host, port, "")
	if err != nil {
		return
	}
	if strings.ContainsAny(d.Host, "% \t\r\n\x00#@/\\") {
		t.Fatalf("host %q became destination %q", host, d.Host)
	}
	again, err := allowlists.NewDest(d.Host, port, "")
	if err != nil || again.Host != d.Host || again.IsIP() != d.IsIP() {
		t.Fatalf("host %q: destination %q is not canonical (%q, %v)", host, d.Host, again.Host, err)
	}
}

// FuzzTransparentHost: the transparent listener's destination for a plain
// HTTP request (absolute-form target, else the Host header, else the
// original address) is canonical and always on the original port,
// whatever port the Host header names.
func FuzzTransparentHost(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: 0x7f.1\r\n\r\n",
		"GET / HTTP/1.0\r\n\r\n",
		"GET http://other.example/ HTTP/1.1\r\nHost: example.com\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const max = 4096
		req, err := readRequest(bufio.NewReaderSize(bytes.NewReader(data), max), max)
		if err != nil {
			return
		}
		const origPort = 80
		host := transparentHost(req, netip.AddrPortFrom(netip.MustParseAddr("203.0.113.7"), origPort))
		checkDest(t, host, origPort)
		if d, err := allowlists.NewDest(host, origPort, ""); err == nil && d.Port != origPort {
			t.Fatalf("Host %q moved the port to %d", req.Host, d.Port)
		}
	})
}

// FuzzClientHello: readClientHello never panics, returns as raw a prefix
// of what the client sent and never more than maxHelloBytes of it (the
// replay must be the client's bytes, untouched), and a name it reads is
// one the normaliser then judges.
func FuzzClientHello(f *testing.F) {
	f.Add([]byte("\x16\x03\x01\x00\x05hello"))
	f.Add([]byte("\x16"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 || data[0] != 0x16 {
			return // the listener only calls it after a 0x16
		}
		h, err := readClientHello(&bytesConn{r: bytes.NewReader(data[1:])}, data[:1])
		if !bytes.HasPrefix(data, h.raw) {
			t.Fatalf("raw is not a prefix of the input (%d raw bytes, %d input)", len(h.raw), len(data))
		}
		if len(h.raw) > maxHelloBytes {
			t.Fatalf("read %d bytes of a hello, the bound is %d", len(h.raw), maxHelloBytes)
		}
		if err == nil && h.serverName != "" {
			checkDest(t, h.serverName, 443)
		}
	})
}

// bytesConn is a client connection that sends the bytes of r, then EOF.
type bytesConn struct{ r *bytes.Reader }

func (c *bytesConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *bytesConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *bytesConn) Close() error                     { return nil }
func (c *bytesConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *bytesConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *bytesConn) SetDeadline(time.Time) error      { return nil }
func (c *bytesConn) SetReadDeadline(time.Time) error  { return nil }
func (c *bytesConn) SetWriteDeadline(time.Time) error { return nil }
