package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/egret-proxy/egret/allowlists"
)

// ServeExplicitTLS accepts proxy clients over TLS on l (an https:// proxy
// URL) until l is closed: the handshake, within the read-header timeout,
// then what ServeExplicit does on the decrypted connection. Its decisions
// are the explicit listener's, logged as listener "explicit"; a client
// certificate verified by conf's client CAs can name the client.
func (s *Server) ServeExplicitTLS(l net.Listener, conf *tls.Config) error {
	s.tel.ListenerStarted(ListenerExplicit)
	return s.serve(l, func(c net.Conn) { s.serveExplicitTLSConn(c, conf) }, func(net.Conn) {
		// Over the connection cap: a 503 in clear text would be noise to
		// a TLS client, so the connection is only closed.
	})
}

func (s *Server) serveExplicitTLSConn(raw net.Conn, conf *tls.Config) {
	c := tls.Server(raw, conf)
	raw.SetDeadline(time.Now().Add(s.limits().ReadHeaderTimeout)) // bounds the handshake
	if err := c.Handshake(); err != nil {
		s.refuseHandshake(raw, err)
		return
	}
	raw.SetDeadline(noDeadline)
	s.serveExplicitConn(c)
}

// refuseHandshake logs a failed handshake as a deny: reason auth when the
// client certificate was missing or not verified, bad-request otherwise.
// A client that went away, or sent nothing, is not logged, as on the plain
// listener. Plain HTTP sent to the TLS port is answered with a 400 in
// clear text saying so, as net/http does.
func (s *Server) refuseHandshake(raw net.Conn, err error) {
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) {
		return
	}
	ev := s.begin(ListenerExplicit, raw, "")
	ev.Decision, ev.Reason, ev.Mode = "deny", allowlists.ReasonBadRequest.String(), ModeEnforce
	ev.Error = "TLS handshake: " + sanitize(err.Error())
	var verr *tls.CertificateVerificationError
	var rerr tls.RecordHeaderError
	plainHTTP := errors.As(err, &rerr) && rerr.Conn != nil && looksLikeHTTP(rerr.RecordHeader[:])
	switch {
	case errors.As(err, &verr):
		ev.Reason, ev.Error = allowlists.ReasonAuth.String(), "client certificate not verified: "+sanitize(verr.Err.Error())
	case strings.Contains(err.Error(), "didn't provide a certificate"): // crypto/tls has no error value for it
		ev.Reason, ev.Error = allowlists.ReasonAuth.String(), "no client certificate (required)"
	case isTimeout(err):
		ev.Error = "TLS handshake not completed in time"
	case plainHTTP:
		ev.Error, ev.Status = "plain HTTP sent to the HTTPS proxy listener", http.StatusBadRequest
	}
	s.record(ev) // refused either way
	if plainHTTP {
		writeStatus(raw, http.StatusBadRequest, "", "egret: this is the HTTPS proxy listener: use an https:// proxy URL, or the plain listener\n", true)
	}
}

// looksLikeHTTP reports whether a connection's first bytes are the start
// of an HTTP request line: a method's letters.
func looksLikeHTTP(b []byte) bool {
	for _, m := range []string{"CONNECT", "GET ", "POST", "HEAD", "PUT ", "DELET", "OPTIO", "PATCH", "TRACE"} {
		if strings.HasPrefix(m, string(b)) || strings.HasPrefix(string(b), m) {
			return true
		}
	}
	return false
}

// peerCertificate returns the verified client certificate of a connection
// on the HTTPS proxy listener, nil on any other connection or when the
// client sent none.
func peerCertificate(c net.Conn) *x509.Certificate {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return nil
	}
	st := tc.ConnectionState()
	if len(st.VerifiedChains) == 0 || len(st.PeerCertificates) == 0 {
		return nil
	}
	return st.PeerCertificates[0]
}
