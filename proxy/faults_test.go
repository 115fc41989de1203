package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/egret-proxy/egret/allowlists"
	"golang.org/x/sys/unix"
)

// Fault tests: what egret does when a peer or a dependency misbehaves.
// Each ends with the server holding nothing for the connection
// (ActiveConns back to 0) and, for a decided connection, a close line.
// Elsewhere: an upstream that accepts and never answers (TestUpstreamFailures
// "GET, no answer", TestIdleTunnelClosed "silent upstream"), a decision log
// that cannot be written (TestDecisionLogFailClosed, and
// cmd/egret TestServeFailsClosedOnFullDisk on /dev/full).

// resettingUpstream accepts connections, reads once, answers with reply,
// then resets the connection (RST, not FIN). It returns its port.
func resettingUpstream(t *testing.T, reply string) int {
	t.Helper()
	return serveUpstream(t, func(c *net.TCPConn) {
		c.Read(make([]byte, 64<<10))
		c.Write([]byte(reply))
		c.SetLinger(0) // close sends RST
		c.Close()
	})
}

// echoUntilEOF reads until the client's half-close, then sends back what
// it read and closes.
func echoUntilEOFUpstream(t *testing.T) int {
	t.Helper()
	return serveUpstream(t, func(c *net.TCPConn) {
		defer c.Close()
		b, _ := io.ReadAll(c)
		c.Write(b)
	})
}

// streamingUpstream writes forever until a write fails; done is closed
// when that happened, i.e. when egret closed the upstream connection.
func streamingUpstream(t *testing.T) (port int, done <-chan struct{}) {
	t.Helper()
	ch := make(chan struct{})
	var once sync.Once
	port = serveUpstream(t, func(c *net.TCPConn) {
		defer c.Close()
		chunk := bytes.Repeat([]byte("x"), 16<<10)
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		for {
			if _, err := c.Write(chunk); err != nil {
				once.Do(func() { close(ch) })
				return
			}
		}
	})
	return port, ch
}

// serveUpstream runs handle for every connection to a new loopback
// listener until the test ends.
func serveUpstream(t *testing.T, handle func(*net.TCPConn)) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); handle(c.(*net.TCPConn)) }()
		}
	}()
	return portOf(t, l.Addr())
}

// blackholeUpstream returns a loopback port whose SYNs go unanswered: a
// socket listening with a backlog of 0 whose one queued connection is
// never accepted, so the kernel drops every further SYN (as a firewall
// dropping packets would).
func blackholeUpstream(t *testing.T) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	port := sa.(*unix.SockaddrInet4).Port
	for range 2 { // fill the accept queue
		if c, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond); err == nil {
			t.Cleanup(func() { c.Close() })
		}
	}
	if c, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond); err == nil {
		c.Close()
		t.Fatal("blackhole port accepted a connection after its queue was full")
	}
	return port
}

// faultEgret is a harness whose rules allow example.com on the given extra
// ports, resolve through a loopback DNS server, and time out fast.
func faultEgret(t *testing.T, ports ...int) (*harness, func(netip.AddrPort) net.Conn) {
	t.Helper()
	var ps []string
	for _, p := range ports {
		ps = append(ps, fmt.Sprint(p))
	}
	dns := newTestDNS(t, map[string][]netip.Addr{"example.com": addrs("127.0.0.1")})
	h := newHarness(t, harnessOpts{
		extraRules: fmt.Sprintf("  - {host: example.com, ports: [%s], purpose: faulty upstreams}\n"+
			"  - {host: \"{nxdomain,%s,%s}.example\", ports: [%s], purpose: failing DNS}",
			strings.Join(ps, ", "), strings.TrimSuffix(dnsServfailName, ".example"), strings.TrimSuffix(dnsSilentName, ".example"), strings.Join(ps, ", ")),
		mutate: func(r *Rules) {
			r.Resolver = dns.resolver()
			r.Limits.DialTimeout = 500 * time.Millisecond
			r.Limits.IdleTimeout = 2 * time.Second
		},
	})
	return h, h.transparent()
}

func TestFaultUpstreamResetMidStream(t *testing.T) {
	const partial = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly the first bytes"
	port := resettingUpstream(t, partial)
	h, dial := faultEgret(t, port)

	t.Run("CONNECT tunnel", func(t *testing.T) {
		c := dialRaw(t, h.addr)
		if resp, _ := c.connect(t, fmt.Sprintf("example.com:%d", port), ""); resp.StatusCode != 200 {
			t.Fatalf("CONNECT: %d", resp.StatusCode)
		}
		c.send(t, "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
		if closed, got := closedWithin(c, c.br, 5*time.Second); !closed || got != partial {
			t.Fatalf("closed %v, read %q; want the upstream's bytes, then the end", closed, got)
		}
		l := waitLines(t, h.logBuf, map[string]any{"msg": "close", "method": "CONNECT", "client": c.LocalAddr().String()})
		wantFields(t, l[0], map[string]any{"bytes_down": len(partial)})
	})
	t.Run("plain GET", func(t *testing.T) {
		c := dialRaw(t, h.addr)
		c.send(t, fmt.Sprintf("GET http://example.com:%d/ HTTP/1.1\r\nHost: example.com\r\n\r\n", port))
		// egret may have sent the status line and part of the body, or
		// nothing (the reset came before its buffer was flushed); never
		// a response that reads as complete.
		if resp, err := http.ReadResponse(c.br, nil); err == nil {
			body, err := io.ReadAll(resp.Body)
			if err == nil || len(body) >= 1000 {
				t.Fatalf("a body cut short by the upstream reads as whole: %d bytes, %v", len(body), err)
			}
		}
		if closed, _ := closedWithin(c, c.br, 5*time.Second); !closed {
			t.Fatal("the client connection stays open after a truncated response")
		}
		waitLines(t, h.logBuf, map[string]any{"msg": "close", "method": "GET", "client": c.LocalAddr().String()})
	})
	t.Run("transparent TLS", func(t *testing.T) {
		c := dial(elsewhere(port))
		c.Write(clientHelloWithSNI(t, "example.com"))
		if closed, got := closedWithin(c, c, 5*time.Second); !closed || got != partial {
			t.Fatalf("closed %v, read %q", closed, got)
		}
		waitLines(t, h.logBuf, map[string]any{"msg": "close", "method": "TLS", "client": c.LocalAddr().String()})
	})
	waitFor(t, "every connection to be released", func() bool { return h.srv.ActiveConns() == 0 })
}

// An upstream that never completes the TCP handshake: 504 after the dial
// timeout, on both listeners.
func TestFaultUpstreamNeverAnswersSYN(t *testing.T) {
	port := blackholeUpstream(t)
	h, dial := faultEgret(t, port)
	c := dialRaw(t, h.addr)
	if resp, body := c.connect(t, fmt.Sprintf("example.com:%d", port), ""); resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("CONNECT to a black hole: %d %q, want 504", resp.StatusCode, body)
	}
	c2 := dialRaw(t, h.addr)
	c2.send(t, fmt.Sprintf("GET http://example.com:%d/ HTTP/1.1\r\nHost: example.com\r\n\r\n", port))
	if resp, body := c2.response(t, "GET"); resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("GET to a black hole: %d %q, want 504", resp.StatusCode, body)
	}
	tc := dial(elsewhere(port))
	tc.Write(clientHelloWithSNI(t, "example.com"))
	if closed, got := closedWithin(tc, tc, 5*time.Second); !closed || got != "" {
		t.Fatalf("transparent TLS to a black hole: closed %v, read %q", closed, got)
	}
	for _, method := range []string{"CONNECT", "GET", "TLS"} {
		l := waitLines(t, h.logBuf, map[string]any{"msg": "close", "method": method})
		if e, _ := l[0]["error"].(string); !strings.Contains(e, "timeout") {
			t.Errorf("%s close line error %q, want a timeout", method, e)
		}
	}
	waitFor(t, "every connection to be released", func() bool { return h.srv.ActiveConns() == 0 })
}

// DNS that fails or never answers: 502 or 504, within the dial timeout,
// never a hang; on the transparent listener the connection is closed.
func TestFaultDNS(t *testing.T) {
	h, dial := faultEgret(t, 443)
	for _, tt := range []struct {
		name       string
		wantStatus int
	}{
		{"nxdomain.example", http.StatusBadGateway},
		{dnsServfailName, http.StatusBadGateway},
		{dnsSilentName, http.StatusGatewayTimeout},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := dialRaw(t, h.addr)
			start := time.Now()
			resp, body := c.connect(t, tt.name+":443", "")
			if resp.StatusCode != tt.wantStatus || strings.Contains(body, tt.name) {
				t.Fatalf("CONNECT %s: %d %q, want %d naming nothing", tt.name, resp.StatusCode, body, tt.wantStatus)
			}
			if waited := time.Since(start); waited > 4*time.Second {
				t.Errorf("answered after %v; the dial timeout is 500ms", waited)
			}
			l := waitLines(t, h.logBuf, map[string]any{"msg": "close", "host": tt.name, "method": "CONNECT"})
			wantFields(t, l[0], map[string]any{"status": tt.wantStatus})

			tc := dial(elsewhere(443))
			tc.Write(clientHelloWithSNI(t, tt.name))
			if closed, got := closedWithin(tc, tc, 5*time.Second); !closed || got != "" {
				t.Fatalf("transparent TLS: closed %v, read %q", closed, got)
			}
			l = waitLines(t, h.logBuf, map[string]any{"msg": "close", "host": tt.name, "method": "TLS"})
			if e, _ := l[0]["error"].(string); e == "" {
				t.Errorf("close line without the resolution error: %v", l[0])
			}
		})
	}
	waitFor(t, "every connection to be released", func() bool { return h.srv.ActiveConns() == 0 })
}

// A client that half-closes (sends FIN, keeps reading) still gets the
// whole answer: the FIN is passed upstream as a half-close.
func TestFaultClientHalfClose(t *testing.T) {
	port := echoUntilEOFUpstream(t)
	h, dial := faultEgret(t, port)
	t.Run("CONNECT tunnel", func(t *testing.T) {
		c := dialRaw(t, h.addr)
		if resp, _ := c.connect(t, fmt.Sprintf("example.com:%d", port), ""); resp.StatusCode != 200 {
			t.Fatalf("CONNECT: %d", resp.StatusCode)
		}
		c.send(t, "ping, then FIN")
		c.Conn.(*net.TCPConn).CloseWrite()
		if got, err := io.ReadAll(c.br); err != nil || string(got) != "ping, then FIN" {
			t.Fatalf("after the half-close: %q, %v", got, err)
		}
	})
	t.Run("transparent TLS", func(t *testing.T) {
		c := dial(elsewhere(port))
		hello := clientHelloWithSNI(t, "example.com")
		c.Write(hello)
		c.(*net.TCPConn).CloseWrite()
		if got, err := io.ReadAll(c); err != nil || !bytes.Equal(got, hello) {
			t.Fatalf("after the half-close: %d bytes (want the %d of the hello), %v", len(got), len(hello), err)
		}
	})
	waitFor(t, "every connection to be released", func() bool { return h.srv.ActiveConns() == 0 })
	if n := len(linesWith(parseLines(t, h.logBuf.String()), map[string]any{"msg": "close"})); n != 2 {
		t.Errorf("%d close lines, want 2", n)
	}
}

// A client that vanishes (RST) in the middle of a tunnel, or of its
// request: egret lets go of the upstream too.
func TestFaultClientVanishes(t *testing.T) {
	port, upstreamDone := streamingUpstream(t)
	h, dial := faultEgret(t, port)
	c := dialRaw(t, h.addr)
	if resp, _ := c.connect(t, fmt.Sprintf("example.com:%d", port), ""); resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %d", resp.StatusCode)
	}
	if _, err := io.ReadFull(c.br, make([]byte, 64<<10)); err != nil {
		t.Fatalf("the stream: %v", err)
	}
	c.Conn.(*net.TCPConn).SetLinger(0)
	c.Close()
	select {
	case <-upstreamDone:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream is still written to 5 s after its client vanished")
	}
	l := waitLines(t, h.logBuf, map[string]any{"msg": "close", "method": "CONNECT"})
	if n, _ := l[0]["bytes_down"].(float64); n < 64<<10 {
		t.Errorf("close line bytes_down %v", l[0]["bytes_down"])
	}

	// Mid-request, on both listeners: nothing decided, nothing held.
	for _, conn := range []net.Conn{dialRaw(t, h.addr).Conn, dial(elsewhere(port))} {
		io.WriteString(conn, "GET http://example.com:1/ HTTP/1.1\r\nHo")
		conn.(*net.TCPConn).SetLinger(0)
		conn.Close()
	}
	waitFor(t, "every connection to be released", func() bool { return h.srv.ActiveConns() == 0 })
	if n := len(linesWith(parseLines(t, h.logBuf.String()), map[string]any{"msg": "decision"})); n != 1 {
		t.Errorf("%d decision lines, want 1 (the tunnel's)", n)
	}
}

// TestResolvedOnce: egret looks a name up once per decision and connects
// to the addresses it checked; neither a tunnel nor a forwarded request
// resolves the name again (no DNS rebinding window between check and
// connect).
func TestResolvedOnce(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	dns := newTestDNS(t, map[string][]netip.Addr{"once.example": addrs("127.0.0.1")})
	pol, id := policyFrom(t, fmt.Sprintf("  - {host: once.example, ports: [%d, %d], purpose: resolved once}", h.tlsPort, h.httpPort), allowlists.Settings{})
	swapRules(h, func(r *Rules) { r.Policy, r.Default.Identity, r.Pins, r.Resolver = pol, id, nil, dns.resolver() })

	c := dialRaw(t, h.addr)
	if resp, _ := c.connect(t, fmt.Sprintf("once.example:%d", h.tlsPort), ""); resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %d", resp.StatusCode)
	}
	perLookup := dns.askedFor("once.example") // A and AAAA
	if perLookup == 0 {
		t.Fatal("the name was not resolved through the test DNS server")
	}
	c2 := dialRaw(t, h.addr)
	c2.send(t, fmt.Sprintf("GET http://once.example:%d/x HTTP/1.1\r\nHost: once.example\r\n\r\n", h.httpPort))
	if resp, body := c2.response(t, "GET"); resp.StatusCode != 200 {
		t.Fatalf("GET: %d %q", resp.StatusCode, body)
	}
	if got := dns.askedFor("once.example"); got != 2*perLookup {
		t.Fatalf("%d queries for two decisions of %d each: something resolved again", got, perLookup)
	}
}

// TestHeaderLimitBothListeners: a request header over MaxHeaderBytes gets
// 431 on either listener, and nothing is decided: the refusal is logged.
func TestHeaderLimitBothListeners(t *testing.T) {
	h := newHarness(t, harnessOpts{mutate: func(r *Rules) { r.Limits.MaxHeaderBytes = 1024 }})
	dial := h.transparent()
	req := fmt.Sprintf("GET http://example.com:%d/ HTTP/1.1\r\nHost: example.com\r\nX-Big: %s\r\n\r\n", h.httpPort, strings.Repeat("a", 2000))
	for name, c := range map[string]net.Conn{"explicit": dialRaw(t, h.addr).Conn, "transparent": dial(elsewhere(h.httpPort))} {
		rc := &rawConn{Conn: c, br: bufio.NewReader(c)}
		rc.send(t, req)
		if resp, _ := rc.response(t, "GET"); resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("%s: %d, want 431", name, resp.StatusCode)
		}
	}
	// Nothing is decided; each refusal is one bad-request line.
	for _, listener := range []string{"explicit", "transparent"} {
		waitLines(t, h.logBuf, map[string]any{"listener": listener, "decision": "deny", "reason": "bad-request", "status": 431, "host": ""})
	}
	if n := len(parseLines(t, h.logBuf.String())); n != 2 {
		t.Errorf("%d log lines, want 2:\n%s", n, h.logBuf.String())
	}
}

// TestAcceptSurvivesFDExhaustion: when the process runs out of file
// descriptors, accept fails with EMFILE; egret must back off and keep
// serving, not return from its accept loop (which ends `egret serve`).
// The test lowers the process's descriptor limit to just above what is
// open, connects until accepting fails, then restores it.
func TestAcceptSurvivesFDExhaustion(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	served := make(chan error, 1)
	go func() { served <- h.srv.ServeExplicit(ln) }()

	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	tight := old
	tight.Cur = uint64(openFDs() + 16)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &tight); err != nil {
		t.Fatal(err)
	}
	restore := func() { unix.Setrlimit(unix.RLIMIT_NOFILE, &old) }
	t.Cleanup(restore)
	var clients []net.Conn
	for range 32 { // each client takes one descriptor, and one more once accepted
		c, err := net.DialTimeout("tcp4", ln.Addr().String(), time.Second)
		if err != nil {
			break
		}
		clients = append(clients, c)
	}
	time.Sleep(200 * time.Millisecond) // the accept loop meets EMFILE meanwhile
	restore()
	select {
	case err := <-served:
		t.Fatalf("the accept loop returned when descriptors ran out: %v", err)
	default:
	}
	for _, c := range clients {
		c.Close()
	}
	c := dialRaw(t, ln.Addr().String())
	c.send(t, fmt.Sprintf("GET http://example.com:%d/after HTTP/1.1\r\nHost: example.com\r\n\r\n", h.httpPort))
	if resp, body := c.response(t, "GET"); resp.StatusCode != 200 {
		t.Fatalf("after the descriptors came back: %d %q", resp.StatusCode, body)
	}
	select {
	case err := <-served:
		t.Fatalf("the accept loop returned: %v", err)
	default:
	}
}
