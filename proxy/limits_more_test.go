package proxy

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestMaxConns: over Limits.MaxConns, a connection gets 503 and is closed;
// once a slot is free, connections are served again.
func TestMaxConns(t *testing.T) {
	for _, tt := range []struct {
		name        string
		sendFirst   bool // the refused client sends its request before reading
		wantRefusal bool
	}{
		{name: "refused client waits", sendFirst: false},
		{name: "refused client sends at once", sendFirst: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{mutate: func(r *Rules) { r.Limits.MaxConns = 1 }})
			get := fmt.Sprintf("GET http://example.com:%d/mc HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n", h.httpPort)

			first := dialRaw(t, h.addr)
			first.send(t, "GET http://exa") // a partial request line holds the slot
			waitFor(t, "the first connection to be counted", func() bool { return h.srv.ActiveConns() == 1 })

			second := dialRaw(t, h.addr)
			if tt.sendFirst {
				second.send(t, get)
				time.Sleep(50 * time.Millisecond) // let the request arrive before the refusal
			}
			resp, body := second.response(t, "GET")
			if resp.StatusCode != 503 {
				t.Fatalf("second connection: %d %q, want 503", resp.StatusCode, body)
			}
			if closed, _ := closedWithin(second, second.br, 5*time.Second); !closed {
				t.Errorf("second connection not closed after 503")
			}

			first.Close()
			waitFor(t, "the first connection to end", func() bool { return h.srv.ActiveConns() == 0 })
			third := dialRaw(t, h.addr)
			third.send(t, get)
			if resp, body := third.response(t, "GET"); resp.StatusCode != 200 || body != "http upstream: GET /mc " {
				t.Fatalf("third connection: %d %q", resp.StatusCode, body)
			}
			// Only the served request is logged: the refusal decided nothing.
			lines := h.lines(2)
			if len(lines) != 2 {
				t.Fatalf("log lines %d, want 2:\n%s", len(lines), h.logBuf.String())
			}
			wantFields(t, lines[0], map[string]any{"msg": "decision", "decision": "allow", "path": "/mc"})
			wantFields(t, lines[1], map[string]any{"msg": "close", "status": 200})
		})
	}
}

// TestIdleTunnelClosed: a tunnel with no bytes either way for
// Limits.IdleTimeout is closed, and its close line logged with bytes.
func TestIdleTunnelClosed(t *testing.T) {
	for _, tt := range []struct {
		name    string
		request bool // send one request through the tunnel before going quiet
		target  func(h *harness) string
	}{
		{name: "silent from the start", target: func(h *harness) string { return fmt.Sprintf("example.com:%d", h.httpPort) }},
		{name: "silent after a request", request: true, target: func(h *harness) string { return fmt.Sprintf("example.com:%d", h.httpPort) }},
		{name: "silent upstream", target: func(h *harness) string { return fmt.Sprintf("example.com:%d", h.tlsPort) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{mutate: func(r *Rules) { r.Limits.IdleTimeout = 300 * time.Millisecond }})
			c := dialRaw(t, h.addr)
			if resp, _ := c.connect(t, tt.target(h), ""); resp.StatusCode != 200 {
				t.Fatalf("CONNECT: %d", resp.StatusCode)
			}
			var sent int
			if tt.request {
				req := "GET /idle HTTP/1.1\r\nHost: example.com\r\n\r\n"
				sent = len(req)
				c.send(t, req)
				if resp, body := c.response(t, "GET"); resp.StatusCode != 200 || body != "http upstream: GET /idle " {
					t.Fatalf("through the tunnel: %d %q", resp.StatusCode, body)
				}
			}
			start := time.Now()
			closed, extra := closedWithin(c, c.br, 5*time.Second)
			if !closed {
				t.Fatalf("idle tunnel still open after %v", time.Since(start))
			}
			if extra != "" {
				t.Errorf("unexpected bytes before close: %q", extra)
			}
			cl := waitLines(t, h.logBuf, map[string]any{"msg": "close"})
			wantFields(t, cl[0], map[string]any{"decision": "allow", "method": "CONNECT", "bytes_up": sent})
			if tt.request {
				if n, _ := cl[0]["bytes_down"].(float64); n <= 0 {
					t.Errorf("bytes_down %v", cl[0]["bytes_down"])
				}
			} else {
				wantFields(t, cl[0], map[string]any{"bytes_down": 0})
			}
			if _, ok := cl[0]["duration_ms"]; !ok {
				t.Errorf("close line lacks duration_ms: %v", cl[0])
			}
		})
	}
}

// TestIdleKeepAliveClosed: a keep-alive client connection that sends no
// next request within the idle timeout is closed.
func TestIdleKeepAliveClosed(t *testing.T) {
	h := newHarness(t, harnessOpts{mutate: func(r *Rules) { r.Limits.IdleTimeout = 300 * time.Millisecond }})
	c := dialRaw(t, h.addr)
	c.send(t, fmt.Sprintf("GET http://example.com:%d/ka HTTP/1.1\r\nHost: example.com\r\n\r\n", h.httpPort))
	if resp, _ := c.response(t, "GET"); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if closed, extra := closedWithin(c, c.br, 5*time.Second); !closed || extra != "" {
		t.Fatalf("idle keep-alive connection: closed %v, bytes %q", closed, extra)
	}
	wantFields(t, h.lines(2)[1], map[string]any{"msg": "close", "status": 200})
}

// TestSlowClient: a client that does not finish its request header within
// Limits.ReadHeaderTimeout gets 408 or is closed, and does not hold up
// other clients.
func TestSlowClient(t *testing.T) {
	for _, tt := range []struct {
		name    string
		trickle bool // one byte every 100 ms instead of stopping
	}{
		{name: "stops"},
		{name: "trickles", trickle: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{mutate: func(r *Rules) { r.Limits.ReadHeaderTimeout = 300 * time.Millisecond }})
			slow := dialRaw(t, h.addr)
			slow.send(t, "GET http://")
			stop := make(chan struct{})
			defer close(stop)
			if tt.trickle {
				go func() {
					rest := fmt.Sprintf("example.com:%d/slow HTTP/1.1\r\nHost: example.com\r\nX-Pad: %s\r\n\r\n", h.httpPort, strings.Repeat("a", 200))
					for i := 0; i < len(rest); i++ {
						select {
						case <-stop:
							return
						case <-time.After(100 * time.Millisecond):
						}
						if _, err := io.WriteString(slow, rest[i:i+1]); err != nil {
							return
						}
					}
				}()
			}

			// Meanwhile another client is served.
			resp, err := h.client("", "").Get(fmt.Sprintf("http://example.com:%d/fast", h.httpPort))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "http upstream: GET /fast " {
				t.Fatalf("other client: %d %q", resp.StatusCode, body)
			}

			start := time.Now()
			closed, got := closedWithin(slow, slow.br, 5*time.Second)
			if !closed {
				t.Fatalf("slow client still connected after %v (got %q)", time.Since(start), got)
			}
			if got != "" && !strings.HasPrefix(got, "HTTP/1.1 408 ") {
				t.Errorf("slow client got %q, want 408 or nothing", got)
			}
			if got != "" {
				if resp, err := http.ReadResponse(bufioReader(got), nil); err == nil && resp.StatusCode != 408 {
					t.Errorf("status %d", resp.StatusCode)
				}
			}
			// The slow client decided nothing: besides the fast request's two
			// lines, its refusal is one bad-request line.
			lines := h.lines(3)
			time.Sleep(50 * time.Millisecond)
			if lines = parseLines(t, h.logBuf.String()); len(lines) != 3 {
				t.Fatalf("log lines %d, want 3:\n%s", len(lines), h.logBuf.String())
			}
			wantFields(t, lines[0], map[string]any{"msg": "decision", "path": "/fast"})
			wantFields(t, lines[2], map[string]any{"msg": "decision", "decision": "deny", "reason": "bad-request", "status": 408,
				"error": "request header not received in time", "host": "", "port": 0})
		})
	}
}

// TestStalledRequestBody: a client that sends a plain request's header and
// then stalls in the middle of its body must not hold the proxy (and an
// upstream connection) forever (DESIGN §6: "read/handshake/idle timeouts
// ... a slow or hostile client cannot exhaust the proxy").
func TestStalledRequestBody(t *testing.T) {
	h := newHarness(t, harnessOpts{mutate: func(r *Rules) {
		r.Limits.IdleTimeout = 300 * time.Millisecond
		r.Limits.ReadHeaderTimeout = 300 * time.Millisecond
	}})
	c := dialRaw(t, h.addr)
	c.send(t, fmt.Sprintf("POST http://example.com:%d/stall HTTP/1.1\r\nHost: example.com\r\nContent-Length: 100\r\n\r\nfive!", h.httpPort))
	start := time.Now()
	closed, got := closedWithin(c, c.br, 5*time.Second)
	if !closed {
		t.Fatalf("a request body stalled for %v still holds the connection (got %q)", time.Since(start), got)
	}
	l := waitLines(t, h.logBuf, map[string]any{"msg": "close", "path": "/stall"})
	wantFields(t, l[0], map[string]any{"bytes_up": 5})
	waitFor(t, "the connection to be released", func() bool { return h.srv.ActiveConns() == 0 })
}

// TestStalledResponseReader: a client that never reads a large response
// must not hold the proxy forever either.
func TestStalledResponseReader(t *testing.T) {
	big := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(64<<20))
		chunk := make([]byte, 1<<20)
		for i := 0; i < 64; i++ {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	t.Cleanup(big.Close)
	port := portOf(t, big.Listener.Addr())
	h := newHarness(t, harnessOpts{
		extraRules: fmt.Sprintf("  - {host: example.com, ports: [%d], purpose: big}", port),
		mutate:     func(r *Rules) { r.Limits.IdleTimeout = 300 * time.Millisecond },
	})
	c := dialRaw(t, h.addr)
	c.send(t, fmt.Sprintf("GET http://example.com:%d/big HTTP/1.1\r\nHost: example.com\r\n\r\n", port))
	waitLines(t, h.logBuf, map[string]any{"msg": "decision", "path": "/big"})
	// Read nothing; the proxy should give up on this client.
	deadline := time.Now().Add(5 * time.Second)
	for h.srv.ActiveConns() != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := h.srv.ActiveConns(); n != 0 {
		t.Fatalf("a client that reads nothing still holds %d connection(s) after 5 s", n)
	}
	l := waitLines(t, h.logBuf, map[string]any{"msg": "close", "path": "/big"})
	wantFields(t, l[0], map[string]any{"status": 200})
}
