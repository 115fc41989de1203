package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
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

// serveExplicitConn serves one proxy client: requests one after another on
// a keep-alive connection, each decided on its own, until a CONNECT turns
// the connection into a tunnel or either side closes.
func (s *Server) serveExplicitConn(c net.Conn) {
	hr := newHeaderReader(c, s.limits().MaxHeaderBytes)
	defer hr.release()
	s.serveRequests(c, hr.br, ListenerExplicit, s.limits, func(req *http.Request) bool { return s.handleExplicit(c, hr, req) })
}

// limits returns the limits in force (a reload may change them).
func (s *Server) limits() Limits { return s.rules.Load().Limits }

// serveRequests reads requests from br one after another, the first
// within the read-header timeout and each next one within the idle
// timeout, and hands each to handle until handle says the connection is
// done. A request egret cannot read is answered and logged
// (refuseUnreadable) and ends the connection. limits is asked again after
// every request.
func (s *Server) serveRequests(c net.Conn, br *bufio.Reader, listener string, limits func() Limits, handle func(*http.Request) bool) {
	lim := limits()
	for first := true; ; first = false {
		if !first { // keep-alive: wait for the next request at most the idle timeout
			c.SetReadDeadline(time.Now().Add(lim.IdleTimeout))
			if _, err := br.Peek(1); err != nil {
				return
			}
		}
		c.SetReadDeadline(time.Now().Add(lim.ReadHeaderTimeout))
		req, err := readRequest(br, lim.MaxHeaderBytes)
		if err != nil {
			s.refuseUnreadable(c, listener, err)
			return
		}
		c.SetReadDeadline(noDeadline)
		if !handle(req) {
			return
		}
		lim = limits()
	}
}

// refuseUnreadable answers a request egret cannot read with 400 (408 when
// it did not arrive in time, 431 when its header is too large) and logs
// the refusal with reason bad-request; a client that just went away gets
// nothing. Nothing is known of the request, so the line has no host.
func (s *Server) refuseUnreadable(c net.Conn, listener string, err error) {
	status, why := http.StatusBadRequest, "malformed request: "+sanitize(err.Error())
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), errors.Is(err, syscall.ECONNRESET):
		return
	case isTimeout(err):
		status, why = http.StatusRequestTimeout, "request header not received in time"
	case errors.Is(err, errHeaderTooLarge):
		status, why = http.StatusRequestHeaderFieldsTooLarge, "request header too large"
	}
	ev := s.begin(listener, c, "")
	ev.Decision, ev.Reason, ev.Mode, ev.Status = "deny", allowlists.ReasonBadRequest.String(), ModeEnforce, status
	ev.Error = why
	s.record(ev) // refused either way; a log that cannot be written changes nothing here
	if isProxyHeaderError(err) {
		c = socketOf(c) // the PROXY connection fails every write after its header did
	}
	writeStatus(c, status, "", "egret: "+why+"\n", true)
}

// handleExplicit decides one request and serves or refuses it. It reports
// whether the connection may carry another request.
func (s *Server) handleExplicit(c net.Conn, hr *headerReader, req *http.Request) bool {
	r := s.rules.Load()
	host, port, path, err := requestTarget(req)
	if err != nil { // nothing to decide: no event
		writeStatus(c, http.StatusBadRequest, "", "egret: "+err.Error()+"\n", true)
		return false
	}
	ev := s.begin(ListenerExplicit, c, req.Method)
	ev.Host, ev.Port = host, uint16(port)
	cl := r.identify(peerCertificate(c), addrOf(c.RemoteAddr()), req.Header.Get("Proxy-Authorization"))
	if cl == nil {
		ev.Decision, ev.Reason, ev.Mode = "deny", allowlists.ReasonAuth.String(), ModeEnforce
		ev.Status = http.StatusProxyAuthRequired
		if !s.logDecision(c, ev) {
			return false
		}
		keep := req.Body == http.NoBody && !req.Close
		writeStatus(c, http.StatusProxyAuthRequired, ev.Reason, "egret: proxy authentication required\n", !keep,
			"Proxy-Authenticate", proxyChallenge)
		return keep
	}
	ev.Identity, ev.Products, ev.Mode = cl.Name, cl.Identity.Products, cl.Mode
	d, err := allowlists.NewDest(host, port, path)
	if err != nil {
		ev.Decision, ev.Reason, ev.Status = "deny", allowlists.ReasonBadHost.String(), http.StatusForbidden
		return s.deny(c, req, ev)
	}
	ev.Host, ev.Path = d.Host, d.Path
	ctx := context.Background()
	o := s.decide(ctx, r, cl, d)
	o.fill(ev)
	if !o.proceed() {
		ev.Status = http.StatusForbidden
		return s.deny(c, req, ev)
	}
	if len(o.addrs) > 0 {
		ev.IP = o.addrs[0].String()
	}
	if req.Method == http.MethodConnect {
		if r.intercepts(d, &o) {
			s.connectIntercepted(c, hr.br, r, cl, d, ev)
		} else {
			s.connect(c, hr, r, d, &o, ev)
		}
		return false
	}
	return s.forward(c, req, r, &o, ev)
}

// logDecision writes the decision line; when the log cannot be written the
// request is refused with 503 (fail closed) and the connection ends.
func (s *Server) logDecision(c net.Conn, ev *Event) bool {
	if err := s.record(ev); err != nil {
		writeStatus(c, http.StatusServiceUnavailable, "", "egret: decision log unavailable; refusing traffic\n", true)
		return false
	}
	return true
}

// deny logs and answers 403. A denied plain request keeps the connection
// when its body can be skipped; a denied CONNECT ends it.
func (s *Server) deny(c net.Conn, req *http.Request, ev *Event) bool {
	if !s.logDecision(c, ev) {
		return false
	}
	keep := req.Method != http.MethodConnect && !req.Close && req.Body == http.NoBody
	body := fmt.Sprintf("egret: %s %s denied (%s)\n", req.Method, net.JoinHostPort(ev.Host, strconv.Itoa(int(ev.Port))), ev.Reason)
	writeStatus(c, http.StatusForbidden, ev.Reason, body, !keep)
	return keep
}

// connect opens the tunnel of an allowed CONNECT: dial, 200, then bytes
// the client sent along with its request, then splice. The header
// reader's buffer goes back to the pool before the splice: a tunnel,
// idle or busy, holds none.
func (s *Server) connect(c net.Conn, hr *headerReader, r *Rules, d allowlists.Dest, o *outcome, ev *Event) {
	if !s.logDecision(c, ev) {
		return
	}
	up, ip, err := s.dialOutcome(r, d, o)
	if err != nil {
		ev.Status, ev.Error = s.upstreamFailed(c, err)
		s.finish(ev, 0, 0)
		return
	}
	if ip.IsValid() {
		ev.IP = ip.String()
	}
	if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		up.Close()
		s.finish(ev, 0, 0)
		return
	}
	var early int64
	if n := hr.br.Buffered(); n > 0 { // sent in the same write as the CONNECT: not lost
		b, _ := hr.br.Peek(n)
		w, err := up.Write(b)
		early = int64(w)
		if err != nil {
			up.Close()
			s.finish(ev, early, 0)
			return
		}
	}
	hr.release() // the request head's buffer is not held for the tunnel's life
	upBytes, down := s.splice(ev, socketOf(c), up, r.Limits.IdleTimeout)
	s.finish(ev, early+upBytes, down)
}

func (s *Server) dialOutcome(r *Rules, d allowlists.Dest, o *outcome) (net.Conn, netip.Addr, error) {
	if o.err != nil {
		return nil, netip.Addr{}, o.err
	}
	return s.dial(context.Background(), r, d, o)
}

// upstreamFailed answers 502 or 504 and returns the status and the error
// text for the close line. An upstream whose TLS handshake failed gets 502
// with the reason upstream-tls.
func (s *Server) upstreamFailed(c net.Conn, err error) (int, string) {
	status, body := upstreamStatus(err)
	reason := ""
	if isUpstreamTLSError(err) {
		status, reason, body = http.StatusBadGateway, allowlists.ReasonUpstreamTLS.String(), "egret: upstream TLS failed: its certificate did not verify, or it spoke no TLS\n"
	}
	writeStatus(c, status, reason, body, true)
	return status, err.Error()
}

// requestTarget returns the destination of a request: a CONNECT's
// authority, or an absolute-form URL's host, port and path.
func requestTarget(req *http.Request) (host string, port int, path string, err error) {
	if req.Method == http.MethodConnect {
		h, p, splitErr := net.SplitHostPort(req.RequestURI)
		if splitErr != nil || h == "" {
			return "", 0, "", fmt.Errorf("CONNECT needs host:port, got %q", sanitize(req.RequestURI))
		}
		port, err = allowlists.ParsePort(p)
		return h, port, "", err
	}
	u := req.URL
	if !u.IsAbs() || u.Host == "" {
		return "", 0, "", errors.New("a proxy request needs an absolute URL (GET http://host/path)")
	}
	if u.Scheme != "http" {
		return "", 0, "", fmt.Errorf("scheme %q: use CONNECT for https", sanitize(u.Scheme))
	}
	h, p := urlHost(req), u.Port()
	port = 80
	if p != "" {
		if port, err = allowlists.ParsePort(p); err != nil {
			return "", 0, "", err
		}
	}
	path = u.EscapedPath()
	if path == "" {
		path = "/"
	}
	return h, port, path, nil
}

// urlHost returns the host of an absolute-form request target. net/url
// decodes percent-escapes in a host ("b%C3%BCcher.example"); egret never
// does (DESIGN §3), so a host written with one is returned as written, for
// the normaliser to refuse as bad-host.
func urlHost(req *http.Request) string {
	h := req.URL.Hostname()
	if h == "" {
		return ""
	}
	_, rest, _ := strings.Cut(req.RequestURI, "://")
	authority := rest[:strings.IndexAny(rest+"/", "/?#")]
	authority = authority[strings.LastIndexByte(authority, '@')+1:]
	if raw, _ := splitHostOptionalPort(authority); strings.Contains(raw, "%") {
		return raw
	}
	return h
}

// sanitize keeps client-supplied text printable and short in responses.
func sanitize(s string) string {
	if len(s) > 200 {
		s = s[:200]
	}
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = '?'
		}
	}
	return string(b)
}
