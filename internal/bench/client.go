package bench

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// How the client reaches the upstreams.
const (
	KindDirect      = "direct"      // straight to the upstream: the physical limit
	KindExplicit    = "explicit"    // through an HTTP proxy: CONNECT and absolute-form requests
	KindTransparent = "transparent" // to an address a redirect sends to the proxy, as if direct
)

// opTimeout bounds every single operation, so a stuck proxy cannot hold a
// run past its duration by more than this. Opening an idle tunnel has a
// shorter bound: a proxy out of descriptors leaves connections unanswered
// in its backlog, and the idle scenario stops after a few such failures.
const (
	opTimeout       = 10 * time.Second
	idleOpenTimeout = 3 * time.Second
)

// Client opens connections to the upstreams the way its Kind says.
type Client struct {
	Kind      string
	ProxyAddr string // explicit: the proxy's host:port
	// ProxyTLS, when set, makes the connection to the proxy TLS (an
	// https:// proxy): each operation's connection has its own full
	// handshake, as a client without session resumption has.
	ProxyTLS *tls.Config
	Host     string // the name asked for (CONNECT authority, SNI, Host)
	DenyHost string // a name the proxy's policy denies
	Addr     string // direct, transparent: the address dialled (the upstream's, or one a redirect catches)
	Ports    []int  // the upstreams' ports, indexed upStream…upHTTP
	Roots    *x509.CertPool

	hello, denyHello []byte
	dialer           net.Dialer
}

// prepare builds the ClientHellos the client sends first on raw tunnels.
func (c *Client) prepare() error {
	var err error
	if c.hello, err = helloRecord(c.Host); err != nil {
		return err
	}
	c.denyHello, err = helloRecord(c.DenyHost)
	return err
}

func (c *Client) authority(host string, up int) string {
	return net.JoinHostPort(host, strconv.Itoa(c.Ports[up]))
}

// open returns a connection that leads to upstream up, named host: a
// CONNECT tunnel through the proxy, or a plain connection.
func (c *Client) open(up int, host string) (net.Conn, error) {
	return c.openWithin(up, host, opTimeout)
}

func (c *Client) openWithin(up int, host string, timeout time.Duration) (net.Conn, error) {
	if c.Kind != KindExplicit {
		return c.dial(net.JoinHostPort(c.Addr, strconv.Itoa(c.Ports[up])), timeout)
	}
	conn, err := c.dialProxy(timeout)
	if err != nil {
		return nil, err
	}
	status, br, err := c.connect(conn, c.authority(host, up))
	if err == nil && status != http.StatusOK {
		err = fmt.Errorf("CONNECT %s: status %d", c.authority(host, up), status)
	}
	if err == nil && br.Buffered() > 0 {
		err = errors.New("proxy sent bytes after its CONNECT response")
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

func (c *Client) dial(addr string, timeout time.Duration) (net.Conn, error) {
	conn, err := c.dialer.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(timeout))
	return conn, nil
}

// dialProxy connects to the proxy, over TLS for an https:// proxy.
func (c *Client) dialProxy(timeout time.Duration) (net.Conn, error) {
	conn, err := c.dial(c.ProxyAddr, timeout)
	if err != nil || c.ProxyTLS == nil {
		return conn, err
	}
	tc := tls.Client(conn, c.ProxyTLS)
	if err := tc.Handshake(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("TLS to the proxy: %w", err)
	}
	return tc, nil
}

// connect sends CONNECT authority and reads the response head.
func (c *Client) connect(conn net.Conn, authority string) (int, *bufio.Reader, error) {
	if _, err := io.WriteString(conn, "CONNECT "+authority+" HTTP/1.1\r\nHost: "+authority+"\r\n\r\n"); err != nil {
		return 0, nil, err
	}
	br := bufio.NewReaderSize(conn, 4096)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return 0, nil, fmt.Errorf("CONNECT %s: %w", authority, err)
	}
	if resp.StatusCode != http.StatusOK {
		drain(resp)
	}
	return resp.StatusCode, br, nil
}

// drain reads a response body to its end, bounded by the connection's
// deadline, so the proxy never sees a reset for unread bytes.
func drain(resp *http.Response) {
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// opConnect is one short tunnel: open, send a hello, read the reply to
// its end, close. No TLS: what is measured is the proxy's tunnel setup.
func (c *Client) opConnect() error {
	conn, err := c.open(upReply, c.Host)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.Write(c.hello); err != nil {
		return err
	}
	n, err := io.Copy(io.Discard, conn)
	if err == nil && n != int64(replySize) {
		err = fmt.Errorf("tunnel reply: %d bytes, want %d", n, replySize)
	}
	return err
}

// opTLS is one HTTPS request on a new connection: open, full TLS
// handshake (no resumption), GET, read the response, close.
func (c *Client) opTLS() error {
	conn, err := c.open(upTLS, c.Host)
	if err != nil {
		return err
	}
	tc := tls.Client(conn, &tls.Config{ServerName: c.Host, RootCAs: c.Roots})
	defer tc.Close()
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	if _, err := io.WriteString(tc, "GET / HTTP/1.1\r\nHost: "+c.Host+"\r\nConnection: close\r\n\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		return err
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil && (resp.StatusCode != http.StatusOK || n != int64(len(bodyText))) {
		err = fmt.Errorf("HTTPS response: status %d, %d bytes", resp.StatusCode, n)
	}
	return err
}

// opDeny asks for a name the policy denies: a CONNECT that must get 403,
// or (transparent) a ClientHello the proxy must close on without a byte.
func (c *Client) opDeny() error {
	if c.Kind == KindTransparent {
		conn, err := c.open(upReply, c.DenyHost)
		if err != nil {
			return err
		}
		defer conn.Close()
		if _, err := conn.Write(c.denyHello); err != nil {
			return err
		}
		n, err := io.Copy(io.Discard, conn)
		if isReset(err) {
			err = nil
		}
		if err == nil && n != 0 {
			err = fmt.Errorf("denied hello: %d bytes came back, want none", n)
		}
		return err
	}
	conn, err := c.dialProxy(opTimeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	status, _, err := c.connect(conn, c.authority(c.DenyHost, upReply))
	if err == nil && status != http.StatusForbidden {
		err = fmt.Errorf("CONNECT %s: status %d, want 403", c.DenyHost, status)
	}
	return err
}

// httpSession is one client connection carrying plain HTTP requests one
// after another (keep-alive), reconnecting when the far side closes.
type httpSession struct {
	c    *Client
	conn net.Conn
	br   *bufio.Reader
	req  []byte
}

func (c *Client) newHTTPSession() *httpSession {
	target := "/"
	if c.Kind == KindExplicit {
		target = "http://" + c.authority(c.Host, upHTTP) + "/"
	}
	req := "GET " + target + " HTTP/1.1\r\nHost: " + c.authority(c.Host, upHTTP) + "\r\nUser-Agent: egret-bench\r\n\r\n"
	return &httpSession{c: c, req: []byte(req)}
}

func (s *httpSession) do() error {
	if s.conn == nil {
		var conn net.Conn
		var err error
		if s.c.Kind == KindExplicit {
			conn, err = s.c.dialProxy(opTimeout)
		} else {
			conn, err = s.c.dial(net.JoinHostPort(s.c.Addr, strconv.Itoa(s.c.Ports[upHTTP])), opTimeout)
		}
		if err != nil {
			return err
		}
		s.conn, s.br = conn, bufio.NewReaderSize(conn, 4096)
	}
	s.conn.SetDeadline(time.Now().Add(opTimeout))
	err := s.roundTrip()
	if err != nil {
		s.close()
	}
	return err
}

func (s *httpSession) roundTrip() error {
	if _, err := s.conn.Write(s.req); err != nil {
		return err
	}
	resp, err := http.ReadResponse(s.br, nil)
	if err != nil {
		return err
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil && (resp.StatusCode != http.StatusOK || n != int64(len(bodyText))) {
		err = fmt.Errorf("HTTP response: status %d, %d bytes", resp.StatusCode, n)
	}
	if err == nil && resp.Close {
		s.close() // the proxy will not take another request here
	}
	return err
}

func (s *httpSession) close() {
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
}

// openHeld opens a tunnel to the hold upstream and waits for its first
// byte: a tunnel that is open end to end and then idle.
func (c *Client) openHeld() (net.Conn, error) {
	conn, err := c.openWithin(upHold, c.Host, idleOpenTimeout)
	if err != nil {
		return nil, err
	}
	var b [1]byte
	if _, err = conn.Write(c.hello); err == nil {
		_, err = io.ReadFull(conn, b[:])
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return conn, nil
}

// openStream opens a tunnel to the stream upstream, which then sends
// until the connection closes.
func (c *Client) openStream() (net.Conn, error) {
	conn, err := c.open(upStream, c.Host)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Write(c.hello); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}
