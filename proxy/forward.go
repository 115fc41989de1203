package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/egret-proxy/egret/allowlists"
)

// checkedAddrsKey carries the addresses the guard checked from the
// decision to the transport's dial.
type checkedAddrsKey struct{}

// newTransport is the client for plain HTTP requests. It never reads
// HTTP_PROXY from the environment (egret would chain silently), dials only
// the checked addresses of the request being forwarded, and reuses a
// connection only for the same host and port (the transport's pool key).
// Each new connection's dial time goes to observeDial.
func newTransport(r *Rules, observeDial func(time.Duration, error)) *http.Transport {
	dialer := &net.Dialer{}
	t := &http.Transport{
		Proxy:              nil,
		DisableCompression: true, // pass Accept-Encoding and bodies through untouched
		// Enough idle connections per host for a busy client's concurrency
		// (with 8, 64 clients of one host made 56 of every 64 requests dial
		// a new connection and close it after), and a cap over all hosts
		// so that idle upstream connections cannot pile up descriptors.
		MaxIdleConnsPerHost:   64,
		MaxIdleConns:          512,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: r.Limits.withDefaults().IdleTimeout,
		ExpectContinueTimeout: 0,
	}
	timeout := r.Limits.withDefaults().DialTimeout
	t.TLSHandshakeTimeout = timeout
	if r.Intercept != nil { // https:// requests come from intercepted tunnels only
		t.TLSClientConfig = r.Intercept.upstreamTLS()
	}
	if r.Upstream != nil {
		t.Proxy = http.ProxyURL(r.Upstream)
		t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			start := time.Now()
			c, err := dialer.DialContext(ctx, network, addr) // the upstream proxy itself
			observeDial(time.Since(start), err)
			return c, err
		}
		return t
	}
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		addrs, _ := ctx.Value(checkedAddrsKey{}).([]netip.Addr)
		_, portStr, err := net.SplitHostPort(addr)
		if err != nil || len(addrs) == 0 {
			return nil, &net.AddrError{Err: "no checked address", Addr: addr}
		}
		port, err := net.LookupPort("tcp", portStr)
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		start := time.Now()
		c, _, err := dialChecked(ctx, addrs, uint16(port), dialer)
		observeDial(time.Since(start), err)
		return c, err
	}
	return t
}

// forward sends an allowed plain HTTP request upstream and relays the
// response. It reports whether the client connection may be reused.
func (s *Server) forward(c net.Conn, req *http.Request, r *Rules, o *outcome, ev *Event) bool {
	if !s.logDecision(c, ev) {
		return false
	}
	if o.err != nil {
		ev.Status, ev.Error = s.upstreamFailed(c, o.err)
		s.finish(ev, 0, 0)
		return false
	}
	out := req.Clone(context.WithValue(context.Background(), checkedAddrsKey{}, o.addrs))
	out.RequestURI = ""
	out.Host = "" // the Host header becomes the target's authority, never the client's
	removeHopByHop(out.Header)
	// Every read of the request body and write of the response re-arms an
	// idle deadline: a client that stalls mid-body or stops reading cannot
	// hold the connection and its upstream forever.
	idle := r.Limits.IdleTimeout
	up := &requestBody{r: req.Body, arm: func() { c.SetReadDeadline(time.Now().Add(idle)) }}
	if req.Body != http.NoBody {
		out.Body = up
	} else {
		up.eof = true // nothing to read
	}
	cw := &deadlineWriter{c: c, idle: idle}
	defer c.SetDeadline(noDeadline)
	if expectsContinue(out.Header) {
		out.Header.Del("Expect")
		if req.ProtoAtLeast(1, 1) { // the decision is taken: let the client send (never to HTTP/1.0, RFC 9110 §10.1.1)
			io.WriteString(cw, "HTTP/1.1 100 Continue\r\n\r\n")
		}
	}
	resp, err := r.transport.RoundTrip(out)
	if err != nil {
		up.cutOff(c)
		if isUpstreamTLSError(err) {
			ev.Reason = allowlists.ReasonUpstreamTLS.String()
		}
		ev.Status, ev.Error = s.upstreamFailed(c, err)
		s.finish(ev, up.n.Load(), 0)
		return false
	}
	defer resp.Body.Close()
	ev.Status = resp.StatusCode
	removeHopByHop(resp.Header)
	down := &countingReader{r: resp.Body}
	resp.Body = down
	closeAfter := req.Close || resp.Close || !req.ProtoAtLeast(1, 1)
	if !req.ProtoAtLeast(1, 1) && resp.ContentLength < 0 {
		resp.TransferEncoding = nil // an HTTP/1.0 client gets the body until close, not chunks
	}
	resp.Close = closeAfter
	bw := responseWriters.Get().(*bufio.Writer)
	bw.Reset(cw)
	err = resp.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	bw.Reset(nil)
	responseWriters.Put(bw)
	// The transport may still be reading the client's body (an upstream
	// that answered early): end that before the connection's reader is
	// used again or handed back to the pool.
	bodyRead := up.cutOff(c)
	s.finish(ev, up.n.Load(), down.n.Load())
	// The next request can follow only a response whose end the client can
	// see without the connection closing, to a request whose body was read
	// to its end (what is left of it must never be read as a request).
	delimited := resp.ContentLength >= 0 || isChunked(resp)
	return err == nil && !closeAfter && delimited && bodyRead
}

// responseWriters buffer forwarded responses on their way to the client.
// A response is written and flushed before its writer goes back, so a
// writer holds nothing between requests; reusing them saves a 4 KiB buffer
// per request.
var responseWriters = sync.Pool{New: func() any { return bufio.NewWriter(nil) }}

// requestBody is a client's request body as the transport reads it. The
// transport may read it, and close it, in its own goroutine even after
// RoundTrip has returned, while the body reads from the client
// connection's buffered reader, which the connection reuses for the next
// request and then hands back to a pool. So closing it never drains the
// client (that would read on after forward returned), and forward ends the
// transport's use of it with cutOff before it touches the reader again.
type requestBody struct {
	mu  sync.Mutex // held by a read in progress
	r   io.Reader
	n   atomic.Int64
	arm func()
	eof bool        // read to its end
	cut atomic.Bool // forward is done with the request: reads fail
}

var errBodyCut = errors.New("request body: the exchange is over")

func (b *requestBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cut.Load() {
		return 0, errBodyCut
	}
	b.arm()
	n, err := b.r.Read(p)
	b.n.Add(int64(n))
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

// Close does not drain: see cutOff.
func (b *requestBody) Close() error { return nil }

// cutOff ends the transport's reading of the body and reports whether the
// body was read to its end. A read still blocked on the client is woken
// by an expired read deadline on c, again until it has returned, since it
// may have re-armed its deadline just before; reads after that fail.
func (b *requestBody) cutOff(c net.Conn) bool {
	b.cut.Store(true)
	for !b.mu.TryLock() {
		c.SetReadDeadline(time.Now())
		time.Sleep(time.Millisecond)
	}
	defer b.mu.Unlock()
	return b.eof
}

func isChunked(resp *http.Response) bool {
	return len(resp.TransferEncoding) > 0 && resp.TransferEncoding[0] == "chunked"
}

// expectsContinue reports whether the request carries Expect:
// 100-continue (the value is case-insensitive).
func expectsContinue(h http.Header) bool {
	return strings.EqualFold(strings.TrimSpace(h.Get("Expect")), "100-continue")
}

// deadlineWriter sets a write deadline of idle before each write.
type deadlineWriter struct {
	c    net.Conn
	idle time.Duration
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	w.c.SetWriteDeadline(time.Now().Add(w.idle))
	return w.c.Write(p)
}

// countingReader counts the bytes read through it; arm, if set, runs
// before each read (to set a deadline).
type countingReader struct {
	r   io.ReadCloser
	n   atomic.Int64
	arm func()
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.arm != nil {
		c.arm()
	}
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (c *countingReader) Close() error { return c.r.Close() }
