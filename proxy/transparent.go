package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/egret-proxy/egret/allowlists"
)

// ServeTransparent accepts connections that iptables REDIRECT or nftables
// redirect sent to egret, until l is closed. Over --max-conns a connection
// is closed without a word: the client does not know a proxy is there.
func (s *Server) ServeTransparent(l net.Listener) error {
	s.tel.ListenerStarted(ListenerTransparent)
	return s.serve(l, func(c net.Conn) { s.serveTransparentConn(c, false) }, func(net.Conn) {})
}

// ServeTProxy is ServeTransparent for a listener that an iptables or
// nftables TPROXY rule delivers to (ListenTransparent with tproxy): each
// accepted socket's own address is where the client was going, so nothing
// is asked of conntrack. Unlike REDIRECT, which gives every connection from
// a client port the same local tuple whatever its destination, each
// destination keeps a tuple of its own (docs/BENCHMARKS.md has what the
// shared tuple costs at TIME_WAIT).
func (s *Server) ServeTProxy(l net.Listener) error {
	s.tel.ListenerStarted(ListenerTransparent)
	return s.serve(l, func(c net.Conn) { s.serveTransparentConn(c, true) }, func(net.Conn) {})
}

// ListenTransparent opens the transparent listener(s) on addr. An address
// with no host (":3129") gets one IPv4 and one IPv6-only socket rather than
// a dual-stack one, so that each connection's original destination is
// asked of the family it arrived in. The IPv6 socket is skipped when the
// host has no IPv6. With tproxy the sockets are opened with IP_TRANSPARENT
// for ServeTProxy.
func ListenTransparent(addr string, tproxy bool) ([]net.Listener, error) {
	listen := Listen
	if tproxy {
		listen = listenTProxy
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if host != "" {
		network := "tcp4"
		if ip, err := netip.ParseAddr(host); err == nil && ip.Is6() {
			network = "tcp6"
		}
		l, err := listen(network, addr)
		if err != nil {
			return nil, err
		}
		return []net.Listener{l}, nil
	}
	l4, err := listen("tcp4", net.JoinHostPort("0.0.0.0", port))
	if err != nil {
		return nil, err
	}
	l6, err := listen("tcp6", net.JoinHostPort("::", port))
	if errors.Is(err, syscall.EAFNOSUPPORT) || errors.Is(err, syscall.EADDRNOTAVAIL) {
		return []net.Listener{l4}, nil
	}
	if err != nil {
		l4.Close()
		return nil, err
	}
	return []net.Listener{l4, l6}, nil
}

// serveTransparentConn serves one redirected connection (tproxy: one a
// TPROXY rule delivered). The first byte tells the protocol: 0x16 starts a
// TLS handshake record, an upper-case letter an HTTP request line.
func (s *Server) serveTransparentConn(c net.Conn, tproxy bool) {
	r := s.rules.Load()
	cl := r.identifyTransparent(addrOf(c.RemoteAddr()))
	sock := socketOf(c) // behind a PROXY header, the socket still knows where it was going
	local := netip.AddrPortFrom(addrOf(sock.LocalAddr()), uint16(sock.LocalAddr().(*net.TCPAddr).Port))
	// Under REDIRECT the socket's own address is egret's, and conntrack
	// knows the original; a connection whose original is that same address
	// came straight to egret. Under TPROXY the socket's own address is the
	// original, and one straight to egret is one to egret's own address.
	orig, redirected := local, tproxy
	if !tproxy {
		if o, err := s.originalDst(sock); err == nil {
			orig = netip.AddrPortFrom(o.Addr().Unmap(), o.Port())
		}
		redirected = orig != local
	}
	// event starts the connection's event once there is something to
	// decide (a client that leaves without a word gets none); an HTTP
	// connection gets one per request instead.
	event := func(method string) *Event {
		ev := s.begin(ListenerTransparent, c, method)
		ev.Identity, ev.Products, ev.Mode = cl.Name, cl.Identity.Products, cl.Mode
		ev.Host, ev.Port = orig.Addr().String(), orig.Port()
		return ev
	}
	if !redirected || r.Guard.isSelf(orig.Addr(), orig.Port()) {
		// Not redirected: the client connected to egret itself, which
		// egret never proxies to.
		s.denyTransparent(event(""), allowlists.ReasonSelf)
		return
	}

	c.SetReadDeadline(time.Now().Add(r.Limits.ReadHeaderTimeout))
	// The first byte tells the protocol; a TLS record needs five more to
	// tell a ClientHello from noise. One buffer holds both.
	var head [helloHeadLen]byte
	if _, err := io.ReadFull(c, head[:1]); err != nil {
		switch {
		case isTimeout(err): // connected and never spoke: say so
			s.denyTransparent(event("TLS"), allowlists.ReasonBadHello)
		case isProxyHeaderError(err): // a PROXY header missing, or sent by a stranger
			ev := event("")
			ev.Error = err.Error()
			s.denyTransparent(ev, allowlists.ReasonBadRequest)
		}
		return
	}
	switch {
	case head[0] == 0x16: // TLS handshake record
		if _, err := io.ReadFull(c, head[1:]); err != nil {
			if isTimeout(err) {
				s.denyTransparent(event("TLS"), allowlists.ReasonBadHello)
			}
			return
		}
		if !startsClientHello(head[:]) { // noise that began with 0x16: refuse it now, not at the timeout
			s.denyTransparent(event("TLS"), allowlists.ReasonBadHello)
			return
		}
		s.serveTransparentTLS(c, r, cl, orig, head[:], event)
	case head[0] >= 'A' && head[0] <= 'Z':
		c.SetReadDeadline(noDeadline)
		s.serveTransparentHTTP(c, orig, head[:1])
	default:
		s.denyTransparent(event("unknown"), allowlists.ReasonBadHello)
	}
}

// serveTransparentTLS decides a TLS connection by the SNI of its
// ClientHello, then dials the name (never the original address) and
// replays the hello before splicing. Without SNI only a cidr rule on the
// original address allows.
func (s *Server) serveTransparentTLS(c net.Conn, r *Rules, cl *Client, orig netip.AddrPort, first []byte, event func(string) *Event) {
	hello, err := readClientHello(c, first)
	if err != nil {
		if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, syscall.ECONNRESET) {
			s.denyTransparent(event("TLS"), allowlists.ReasonBadHello)
		}
		return
	}
	ev := event("TLS")
	c.SetReadDeadline(noDeadline)
	if hello.offersECH {
		if r.ECH != ECHOuterSNI {
			if hello.serverName != "" {
				ev.Host, ev.SNI = hello.serverName, hello.serverName
			}
			s.denyTransparent(ev, allowlists.ReasonECH)
			return
		}
		ev.ECH = ECHOuterSNI.String() // decided, dialled and replayed by the outer name
	}
	target := orig.Addr().String()
	if hello.serverName != "" {
		target, ev.SNI = hello.serverName, hello.serverName
	}
	d, err := allowlists.NewDest(target, int(orig.Port()), "")
	if err != nil {
		ev.Host = hello.serverName
		s.denyTransparent(ev, allowlists.ReasonBadHost)
		return
	}
	ev.Host = d.Host
	o := s.decide(context.Background(), r, cl, d)
	if hello.serverName == "" && o.reason == allowlists.ReasonNoRule {
		o.reason = allowlists.ReasonNoSNI
	}
	s.checkDNS(ev, r, cl, d, orig.Addr(), &o)
	o.fill(ev)
	if !o.proceed() {
		s.record(ev)
		return
	}
	if len(o.addrs) > 0 {
		ev.IP = o.addrs[0].String()
	}
	if r.intercepts(d, &o) { // a path rule: terminate TLS and decide each request
		ev.Paths = "" // enforced inside, request by request
		if s.record(ev) != nil {
			return
		}
		replayed := io.MultiReader(bytes.NewReader(hello.raw), c)
		s.intercept(&bufferedConn{Conn: c, r: replayed}, r, cl, d, ev)
		return
	}
	if s.record(ev) != nil {
		return // fail closed: the log cannot be written
	}
	up, ip, err := s.dialOutcome(r, d, &o)
	if err != nil {
		ev.Error = err.Error()
		s.finish(ev, 0, 0)
		return
	}
	if ip.IsValid() {
		ev.IP = ip.String()
	}
	if _, err := up.Write(hello.raw); err != nil {
		up.Close()
		ev.Error = err.Error()
		s.finish(ev, 0, 0)
		return
	}
	// Only the hello's length outlives the replay: the tunnel, however
	// long it stays open, does not keep the hello's bytes.
	helloLen := int64(len(hello.raw))
	hello = clientHello{}
	upBytes, down := s.splice(ev, c, up, r.Limits.IdleTimeout)
	s.finish(ev, helloLen+upBytes, down)
}

// serveTransparentHTTP serves plain HTTP requests one after another, each
// decided by its own Host header (or absolute-form target) on the original
// port. A request with no Host is decided on the original address, which
// only a cidr rule allows.
func (s *Server) serveTransparentHTTP(c net.Conn, orig netip.AddrPort, first []byte) {
	hr := newHeaderReader(io.MultiReader(bytes.NewReader(first), c), s.limits().MaxHeaderBytes)
	defer hr.release()
	s.serveRequests(c, hr.br, ListenerTransparent, s.limits, func(req *http.Request) bool {
		r := s.rules.Load() // a reload may have changed the client's identity
		return s.handleTransparentHTTP(c, r, r.identifyTransparent(addrOf(c.RemoteAddr())), orig, req)
	})
}

func (s *Server) handleTransparentHTTP(c net.Conn, r *Rules, cl *Client, orig netip.AddrPort, req *http.Request) bool {
	if req.Method == http.MethodConnect { // not a request egret decides: 400, as for what it cannot parse
		writeStatus(c, http.StatusBadRequest, "", "egret: CONNECT on a redirected connection\n", true)
		return false
	}
	ev := s.begin(ListenerTransparent, c, req.Method)
	ev.Identity, ev.Products, ev.Mode = cl.Name, cl.Identity.Products, cl.Mode
	ev.Port = orig.Port()
	host := transparentHost(req, orig)
	ev.Host = host
	path := req.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	d, err := allowlists.NewDest(host, int(orig.Port()), path)
	if err != nil {
		ev.Decision, ev.Reason, ev.Status = "deny", allowlists.ReasonBadHost.String(), http.StatusForbidden
		return s.deny(c, req, ev)
	}
	ev.Host, ev.Path = d.Host, d.Path
	o := s.decide(context.Background(), r, cl, d)
	s.checkDNS(ev, r, cl, d, orig.Addr(), &o)
	o.fill(ev)
	if !o.proceed() {
		ev.Status = http.StatusForbidden
		return s.deny(c, req, ev)
	}
	if len(o.addrs) > 0 {
		ev.IP = o.addrs[0].String()
	}
	// Forward as the explicit listener does an absolute-form request: the
	// decided name and the original port make the URL and the Host header
	// (without the port when it is HTTP's own, as clients send it).
	req.URL.Scheme, req.URL.Host = "http", net.JoinHostPort(d.Host, strconv.Itoa(int(orig.Port())))
	if orig.Port() == 80 {
		req.URL.Host = strings.TrimSuffix(req.URL.Host, ":80")
	}
	return s.forward(c, req, r, &o, ev)
}

// transparentHost is the name a redirected HTTP request is decided on:
// its absolute-form target (as on the explicit listener), else its Host
// header without the port (the original port always decides), else the
// original address, which only a cidr rule allows.
func transparentHost(req *http.Request, orig netip.AddrPort) string {
	if host := urlHost(req); host != "" {
		return host
	}
	if host, _ := splitHostOptionalPort(req.Host); host != "" {
		return host
	}
	return orig.Addr().String()
}

// denyTransparent logs a deny of a connection that gets no answer: denied
// TLS, and what is not TLS or HTTP, is closed.
func (s *Server) denyTransparent(ev *Event, why allowlists.Reason) {
	ev.Decision, ev.Reason = "deny", why.String()
	s.record(ev)
}

// splitHostOptionalPort splits a Host header value, which may or may not
// carry a port.
func splitHostOptionalPort(hostport string) (host, port string) {
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		return h, p
	}
	return hostport, ""
}

// isTimeout reports whether err is a deadline that expired.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
