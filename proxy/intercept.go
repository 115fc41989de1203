package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/egret-proxy/egret/allowlists"
	"github.com/egret-proxy/egret/certs"
)

// Intercept configures TLS interception for path rules (DESIGN §8a).
// egret terminates TLS only for tunnels whose deciding rule has paths, or
// whose name matches Hosts, and only when Minter may sign for the name;
// every other tunnel is spliced untouched.
type Intercept struct {
	// Minter mints the leaves egret presents to clients.
	Minter *certs.Minter
	// Hosts are the --intercept-host patterns, intercepted whatever rule
	// decides them.
	Hosts []certs.HostPattern
	// UpstreamRoots verify the upstreams' certificates. If nil, the
	// system roots are used.
	UpstreamRoots *x509.CertPool
}

func (ic *Intercept) matchesHost(name string) bool {
	for _, p := range ic.Hosts {
		if p.Matches(name) {
			return true
		}
	}
	return false
}

// upstreamTLS is the client configuration for intercepted upstreams:
// verified against UpstreamRoots, HTTP/1.1 only (the requests egret
// decides are HTTP/1.1 too).
func (ic *Intercept) upstreamTLS() *tls.Config {
	return &tls.Config{RootCAs: ic.UpstreamRoots, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
}

// intercepts reports whether the tunnel to d, decided as o, is to be
// terminated rather than spliced: interception is configured, the tunnel
// may proceed, its deciding rule has paths egret could not otherwise see
// (or its name matches --intercept-host), and the CA may sign for its
// name. A path rule's name outside the CA's constraints is spliced, its
// paths unenforced, as without interception. An IP literal never is: the
// CA excludes every address.
func (r *Rules) intercepts(d allowlists.Dest, o *outcome) bool {
	ic := r.Intercept
	if ic == nil || d.IsIP() || !o.proceed() {
		return false
	}
	if !o.verdict.PathsUnenforced && !ic.matchesHost(d.Host) {
		return false
	}
	return ic.Minter.Permits(d.Host)
}

// connectIntercepted serves an allowed CONNECT whose path rules egret
// enforces: the tunnel's decision line, the 200, then, over the client
// connection with the bytes sent along with the CONNECT read first,
// intercept when the client starts TLS, or the same per-request decisions
// over plain HTTP when it does not (a CONNECT to port 80 carries plain
// HTTP as often as not, and must keep working).
func (s *Server) connectIntercepted(c net.Conn, br *bufio.Reader, r *Rules, cl *Client, d allowlists.Dest, ev *Event) {
	ev.Paths = "" // enforced inside, request by request
	if !s.logDecision(c, ev) {
		return
	}
	if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		s.finish(ev, 0, 0)
		return
	}
	c.SetReadDeadline(time.Now().Add(r.Limits.ReadHeaderTimeout))
	first, err := br.Peek(1)
	c.SetReadDeadline(noDeadline)
	client := &bufferedConn{Conn: c, r: br}
	switch {
	case err != nil:
		s.finish(ev, 0, 0)
	case first[0] == tlsHandshakeRecord:
		s.intercept(client, r, cl, d, ev)
	default:
		counted := &countingConn{Conn: client}
		tunnel := &innerTunnel{r: r, cl: cl, d: d, ev: ev, scheme: "http"}
		s.serveInner(counted, tunnel)
		s.finish(ev, counted.read.Load(), counted.written.Load())
	}
}

// tlsHandshakeRecord is the first byte of a TLS ClientHello record.
const tlsHandshakeRecord = 0x16

// intercept terminates the TLS of an allowed tunnel and decides every
// HTTP/1.1 request inside it on its own (DESIGN §8a).
//
// The contract, for every listener that calls it:
//   - client is the client's connection, positioned at the first byte of
//     its TLS ClientHello: the explicit listener has answered the CONNECT
//     with 200; a listener that peeked at the ClientHello to read the SNI
//     hands over a connection that replays the peeked bytes first.
//   - d is the tunnel's destination as decided (the CONNECT or SNI name,
//     normalised, and the port; no path), cl the client it was decided
//     for, and ev the tunnel's event, whose decision line the caller has
//     already recorded. The caller has checked r.intercepts(d, &o).
//   - intercept presents a leaf for d.Host minted by r.Intercept.Minter.
//     Each request inside gets its own event (begin/record/finish) on
//     ev.Listener with `sni` set to d.Host and `path` to its path: a Host
//     or absolute URL naming another host or port is denied
//     (host-mismatch), a path outside the rule's prefixes is denied
//     (path), and an allowed request goes to https://d over the transport,
//     which dials only the addresses the guard checked and verifies the
//     upstream certificate (else 502, upstream-tls).
//   - It returns when the client closes, idles out or sends what ends the
//     tunnel. It writes the tunnel's close line (bytes as TLS records) and
//     closes client.
//
// The tunnel keeps the Rules it opened with, as a spliced tunnel does
// across a reload.
func (s *Server) intercept(client net.Conn, r *Rules, cl *Client, d allowlists.Dest, ev *Event) {
	counted := &countingConn{Conn: client}
	tc := tls.Server(counted, &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return r.Intercept.Minter.Certificate(d.Host)
		},
	})
	defer func() {
		tc.Close()
		s.finish(ev, counted.read.Load(), counted.written.Load())
	}()
	tc.SetDeadline(time.Now().Add(r.Limits.ReadHeaderTimeout))
	if err := tc.Handshake(); err != nil {
		ev.Error = "client TLS handshake: " + err.Error() // e.g. the client does not trust the CA
		return
	}
	tc.SetDeadline(noDeadline)
	s.serveInner(tc, &innerTunnel{r: r, cl: cl, d: d, ev: ev, scheme: "https"})
}

// innerTunnel is an intercepted tunnel as the requests inside it see it.
type innerTunnel struct {
	r      *Rules
	cl     *Client
	d      allowlists.Dest // the tunnel's name and port
	ev     *Event          // the tunnel's own event
	scheme string          // https inside terminated TLS, http for plain HTTP in a CONNECT
}

// defaultPort is the port an authority without one means.
func (t *innerTunnel) defaultPort() int {
	if t.scheme == "http" {
		return 80
	}
	return 443
}

// serveInner reads requests one after another from inside the tunnel, as
// the explicit listener does from its own connection.
func (s *Server) serveInner(c net.Conn, t *innerTunnel) {
	br := bufio.NewReaderSize(c, t.r.Limits.MaxHeaderBytes)
	limits := func() Limits { return t.r.Limits } // the tunnel keeps the rules it opened with
	s.serveRequests(c, br, t.ev.Listener, limits, func(req *http.Request) bool { return s.handleInner(c, t, req) })
}

// handleInner decides one request inside an intercepted tunnel and serves
// or refuses it. It reports whether the tunnel may carry another.
func (s *Server) handleInner(c net.Conn, t *innerTunnel, req *http.Request) bool {
	if req.Method == http.MethodConnect { // not a request egret decides: 400, as for what it cannot parse
		writeStatus(c, http.StatusBadRequest, "", "egret: CONNECT inside an intercepted tunnel\n", true)
		return false
	}
	rawPath := req.URL.EscapedPath() // "*" for OPTIONS *, which no prefix matches
	if rawPath == "" {
		rawPath = "/" // an absolute URL without a path
	}
	d, err := allowlists.NewDest(t.d.Host, int(t.d.Port), rawPath)
	if err != nil { // t.d was decided already: only a bad port gets here
		writeStatus(c, http.StatusBadRequest, "", "egret: "+sanitize(err.Error())+"\n", true)
		return false
	}
	cl := t.cl
	ev := s.begin(t.ev.Listener, c, req.Method)
	ev.Identity, ev.Products, ev.Mode = cl.Name, cl.Identity.Products, cl.Mode
	ev.Host, ev.Port = t.d.Host, t.d.Port
	if t.scheme == "https" {
		ev.SNI = t.d.Host
	}
	ev.Path = d.Path
	asked, sameHost := t.requestAuthority(req)
	if !sameHost {
		if asked != "" {
			ev.Host = asked // the log shows the name the request asked for
		}
		if cl.Mode != ModeReport {
			ev.Decision, ev.Reason, ev.Status = "deny", allowlists.ReasonHostMismatch.String(), http.StatusForbidden
			return s.deny(c, req, ev)
		}
	}
	o := s.decide(context.Background(), t.r, cl, d)
	if !sameHost && o.proceed() {
		o.decision, o.reason, o.verdict = "would-deny", allowlists.ReasonHostMismatch, allowlists.Verdict{Reason: allowlists.ReasonHostMismatch}
	}
	o.fill(ev)
	if !o.proceed() {
		ev.Status = http.StatusForbidden
		return s.deny(c, req, ev)
	}
	if len(o.addrs) > 0 {
		ev.IP = o.addrs[0].String()
	}
	// The tunnel's name decides where the request goes, whatever it asked.
	req.URL.Scheme, req.URL.Host = t.scheme, t.authority()
	return s.forward(c, req, t.r, &o, ev)
}

// requestAuthority returns the name a request inside the tunnel asks for,
// normalised where it can be and made printable where not, and reports
// whether it is the tunnel's name and port. The authority is an absolute
// URL's (of the tunnel's scheme), else the Host header's: http.ReadRequest
// ignores the Host line of an absolute-form request, as RFC 9112 §3.2.2
// says, and forward rewrites Host to the tunnel's authority, so no other
// name reaches the upstream. An HTTP/1.1 request must carry a Host; an
// HTTP/1.0 one may leave it out.
func (t *innerTunnel) requestAuthority(req *http.Request) (string, bool) {
	if req.Host == "" {
		return "", !req.ProtoAtLeast(1, 1)
	}
	name, ok := t.authorityIs(req.Host)
	if req.URL.IsAbs() && req.URL.Scheme != t.scheme {
		return name, false
	}
	return name, ok
}

// authorityIs reports whether host[:port] names the tunnel; without a
// port, the authority is the scheme's default port.
func (t *innerTunnel) authorityIs(authority string) (string, bool) {
	host, port := authority, strconv.Itoa(t.defaultPort())
	if h, p, err := net.SplitHostPort(authority); err == nil {
		host, port = h, p
	}
	name, err := allowlists.NormalizeName(host)
	if err != nil {
		return sanitize(host), false
	}
	p, err := allowlists.ParsePort(port)
	return name, err == nil && name == t.d.Host && p == int(t.d.Port)
}

// authority is the tunnel's URL authority: the name, and the port unless
// it is the scheme's default.
func (t *innerTunnel) authority() string {
	if int(t.d.Port) == t.defaultPort() {
		return t.d.Host
	}
	return net.JoinHostPort(t.d.Host, strconv.Itoa(int(t.d.Port)))
}

// isUpstreamTLSError reports whether err is a failed TLS handshake with an
// upstream: a certificate that did not verify, an alert, or no TLS at all.
func isUpstreamTLSError(err error) bool {
	var verify *tls.CertificateVerificationError
	var record tls.RecordHeaderError
	var alert tls.AlertError
	return errors.As(err, &verify) || errors.As(err, &record) || errors.As(err, &alert)
}

// bufferedConn reads through r, a reader over Conn that first gives bytes
// already received (sent along with a CONNECT, or a peeked ClientHello),
// and writes to Conn.
type bufferedConn struct {
	net.Conn
	r io.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// countingConn counts the bytes read from and written to a connection.
type countingConn struct {
	net.Conn
	read, written atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.written.Add(int64(n))
	return n, err
}
