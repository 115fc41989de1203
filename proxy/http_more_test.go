package proxy

import (
	"fmt"
	"github.com/egret-proxy/egret/allowlists"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// streamUpstream answers with a body of unknown length (chunked to an
// HTTP/1.1 client).
func streamUpstream(t *testing.T) int {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "part one, ")
		w.(http.Flusher).Flush()
		io.WriteString(w, "part two")
	}))
	t.Cleanup(s.Close)
	return portOf(t, s.Listener.Addr())
}

// TestHTTP10: an HTTP/1.0 request is served and the connection closed
// after the response; a body of unknown length is sent until close, not
// in chunks (HTTP/1.0 has none).
func TestHTTP10(t *testing.T) {
	stream := streamUpstream(t)
	h := newHarness(t, harnessOpts{extraRules: fmt.Sprintf("  - {host: example.com, ports: [%d], purpose: streaming}", stream)})
	for _, tt := range []struct {
		name, req, wantBody string
	}{
		{"known length", fmt.Sprintf("GET http://example.com:%d/ten HTTP/1.0\r\n\r\n", h.httpPort), "http upstream: GET /ten "},
		{"known length, keep-alive asked", fmt.Sprintf("GET http://example.com:%d/ka HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", h.httpPort), "http upstream: GET /ka "},
		{"unknown length", fmt.Sprintf("GET http://example.com:%d/s HTTP/1.0\r\n\r\n", stream), "part one, part two"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := dialRaw(t, h.addr)
			c.send(t, tt.req)
			all, err := io.ReadAll(c.br) // returns at close (or the 10 s deadline: an error)
			if err != nil {
				t.Fatalf("connection not closed after the response: %v (got %q)", err, all)
			}
			resp, err := http.ReadResponse(bufioReader(string(all)), &http.Request{Method: "GET", ProtoMajor: 1, ProtoMinor: 0})
			if err != nil {
				t.Fatalf("%v in %q", err, all)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || string(body) != tt.wantBody {
				t.Fatalf("%d %q, want 200 %q (raw %q)", resp.StatusCode, body, tt.wantBody, all)
			}
			if len(resp.TransferEncoding) > 0 {
				t.Errorf("chunked response to an HTTP/1.0 client: %q", all)
			}
			l := waitLines(t, h.logBuf, map[string]any{"msg": "close", "path": strings.Fields(tt.req)[1][strings.LastIndex(strings.Fields(tt.req)[1], "/"):]})
			wantFields(t, l[0], map[string]any{"status": 200, "method": "GET", "decision": "allow"})
		})
	}
}

// TestHTTP11UnknownLengthKeepAlive: a streamed response to an HTTP/1.1
// client is relayed chunked and the connection stays usable.
func TestHTTP11UnknownLengthKeepAlive(t *testing.T) {
	stream := streamUpstream(t)
	h := newHarness(t, harnessOpts{extraRules: fmt.Sprintf("  - {host: example.com, ports: [%d], purpose: streaming}", stream)})
	c := dialRaw(t, h.addr)
	for i := 0; i < 2; i++ {
		c.send(t, fmt.Sprintf("GET http://example.com:%d/s%d HTTP/1.1\r\nHost: example.com\r\n\r\n", stream, i))
		resp, body := c.response(t, "GET")
		if resp.StatusCode != 200 || body != "part one, part two" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if got := linesWith(h.lines(4), map[string]any{"msg": "close", "status": 200}); len(got) != 2 {
		t.Errorf("close lines %v", got)
	}
}

// TestExpectContinue: the proxy answers 100 Continue once it has decided,
// then forwards the body; a denied request gets 403 and no 100.
func TestExpectContinue(t *testing.T) {
	for _, tt := range []struct {
		name, expect string
	}{
		{"lower case", "100-continue"},
		{"mixed case", "100-Continue"}, // RFC 9110 §10.1.1: the value is case-insensitive
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{})
			c := dialRaw(t, h.addr)
			c.send(t, fmt.Sprintf("POST http://example.com:%d/e HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\nExpect: %s\r\n\r\n", h.httpPort, tt.expect))
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			resp, err := http.ReadResponse(c.br, &http.Request{Method: "POST"})
			if err != nil {
				t.Fatalf("no 100 Continue before the body was sent: %v", err)
			}
			if resp.StatusCode != 100 {
				t.Fatalf("first response %d, want 100", resp.StatusCode)
			}
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			c.send(t, "hello")
			resp, body := c.response(t, "POST")
			if resp.StatusCode != 200 || body != "http upstream: POST /e hello" {
				t.Fatalf("after the body: %d %q", resp.StatusCode, body)
			}
			seen := <-h.lastHost
			if seen.Get("Expect") != "" {
				t.Errorf("upstream saw Expect %q", seen.Get("Expect"))
			}
			lines := h.lines(2)
			wantFields(t, lines[0], map[string]any{"msg": "decision", "decision": "allow", "method": "POST", "path": "/e"})
			wantFields(t, lines[1], map[string]any{"msg": "close", "status": 200, "bytes_up": 5})
		})
	}
	t.Run("denied", func(t *testing.T) {
		h := newHarness(t, harnessOpts{})
		c := dialRaw(t, h.addr)
		c.send(t, fmt.Sprintf("POST http://denied.example:%d/e HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n", h.httpPort))
		resp, body := c.response(t, "POST")
		if resp.StatusCode != 403 || resp.Header.Get("X-Egret-Reason") != "no-rule" {
			t.Fatalf("denied POST: %d %q", resp.StatusCode, body)
		}
		if closed, _ := closedWithin(c, c.br, 5*time.Second); !closed {
			t.Errorf("connection with an unread body kept open")
		}
		select {
		case hdr := <-h.lastHost:
			t.Errorf("denied request reached the upstream: %v", hdr)
		default:
		}
		wantFields(t, h.lines(1)[0], map[string]any{"decision": "deny", "reason": "no-rule", "method": "POST"})
	})
}

// TestExpectContinueHTTP10: RFC 9110 §10.1.1: "A server that receives a
// 100-continue expectation in an HTTP/1.0 request MUST ignore that
// expectation"; an HTTP/1.0 client does not know 1xx responses.
func TestExpectContinueHTTP10(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c := dialRaw(t, h.addr)
	c.send(t, fmt.Sprintf("POST http://example.com:%d/e10 HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello", h.httpPort))
	all, err := io.ReadAll(c.br)
	if err != nil {
		t.Fatalf("%v (got %q)", err, all)
	}
	if !strings.HasPrefix(string(all), "HTTP/1.1 200 ") || !strings.HasSuffix(string(all), "http upstream: POST /e10 hello") {
		t.Fatalf("HTTP/1.0 POST with Expect: got %q, want the 200 response first", all)
	}
	wantFields(t, h.lines(2)[1], map[string]any{"msg": "close", "status": 200, "bytes_up": 5})
}

// An upstream that answers before reading the request body (a 413, an
// early error) leaves the transport reading, or draining, the client's
// body after the response: egret must end that before it reuses or pools
// the connection's reader, and must not read what is left of the body as
// a next request. The client gets the response and the connection ends;
// egret keeps serving.
func TestUpstreamAnswersBeforeTheBody(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	early := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		http.Error(w, "too large", http.StatusRequestEntityTooLarge)
	}))
	t.Cleanup(early.Close)
	port := portOf(t, early.Listener.Addr())
	pol, id := policyFrom(t, fmt.Sprintf("  - {host: example.com, ports: [%d, %d], purpose: up}", port, h.httpPort), allowlists.Settings{})
	swapRules(h, func(r *Rules) { r.Policy, r.Default.Identity = pol, id })

	for _, keepSending := range []bool{false, true} {
		c := dialRaw(t, h.addr)
		c.send(t, fmt.Sprintf("POST http://example.com:%d/upload HTTP/1.1\r\nHost: example.com\r\nContent-Length: 100000000\r\n\r\n", port))
		c.send(t, strings.Repeat("x", 64<<10))
		stop := make(chan struct{})
		if keepSending { // the client goes on streaming its body while the answer comes
			go func() {
				chunk := []byte(strings.Repeat("y", 4096))
				for range 2000 {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := c.Write(chunk); err != nil {
						return
					}
				}
			}()
		}
		resp, _ := c.response(t, "POST")
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("early answer: %s", resp.Status)
		}
		if closed, _ := closedWithin(c, c.br, 5*time.Second); !closed {
			t.Errorf("keepSending=%v: the connection stayed open with the rest of a body unread", keepSending)
		}
		close(stop)
	}
	// egret is still up and serving.
	if st := get(t, h.client("", ""), fmt.Sprintf("http://example.com:%d/after", h.httpPort)); st != 200 {
		t.Fatalf("after: %d", st)
	}
}
