package proxy

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

var traceIDRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestConnectAllowed(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	resp, err := h.client("", "").Get(fmt.Sprintf("https://example.com:%d/hello", h.tlsPort))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "tls upstream: GET /hello" {
		t.Fatalf("body %q", body)
	}
	h.client("", "").Transport.(*http.Transport).CloseIdleConnections()
	lines := h.lines(1)
	wantFields(t, lines[0], map[string]any{
		"msg": "decision", "decision": "allow", "mode": "enforce", "listener": "explicit", "identity": "default",
		"products": []any{"test"}, "method": "CONNECT", "host": "example.com", "port": h.tlsPort,
		"rule": "example.com", "source": "test", "reason": "rule", "product": "test", "ip": "127.0.0.1",
	})
	if !traceIDRE.MatchString(fmt.Sprint(lines[0]["trace_id"])) {
		t.Errorf("trace_id %v", lines[0]["trace_id"])
	}
}

func TestConnectDenied(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	for _, tt := range []struct{ target, reason string }{
		{"denied.example:443", "no-rule"},
		{fmt.Sprintf("example.com:%d", h.tlsPort+1), "no-rule"},
		{"127.0.0.1:443", "no-rule"},
		{"api..example.com:443", "bad-host"},
	} {
		resp := h.raw("CONNECT " + tt.target + " HTTP/1.1\r\nHost: " + tt.target + "\r\n\r\n")
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 403 || resp.Header.Get("X-Egret-Reason") != tt.reason || !strings.Contains(string(body), tt.reason) {
			t.Errorf("CONNECT %s: %d %q %q; want 403 %s", tt.target, resp.StatusCode, resp.Header.Get("X-Egret-Reason"), body, tt.reason)
		}
	}
	for _, l := range h.lines(4) {
		if l["decision"] != "deny" {
			t.Errorf("line %v", l)
		}
	}
}

func TestConnectEarlyBytesReachUpstream(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	// The request line, headers and the start of the tunnel in one write:
	// a plain HTTP request through the tunnel to the plain upstream.
	c := dialProxy(t, h)
	target := fmt.Sprintf("example.com:%d", h.httpPort)
	msg := "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n\r\n" +
		"GET /early HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"
	io.WriteString(c, msg)
	all, _ := io.ReadAll(c)
	if !strings.Contains(string(all), "200 Connection established") || !strings.Contains(string(all), "http upstream: GET /early") {
		t.Fatalf("got %q", all)
	}
}

func TestPlainHTTPForwarded(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	req, _ := http.NewRequest("POST", fmt.Sprintf("http://example.com:%d/p?q=1", h.httpPort), strings.NewReader("body"))
	req.Header.Set("Connection", "X-Hop")
	req.Header.Set("X-Hop", "secret")
	resp, err := h.client("u", "p").Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "http upstream: POST /p?q=1 body" {
		t.Fatalf("body %q", body)
	}
	seen := <-h.lastHost
	if seen.Get("Host") != fmt.Sprintf("example.com:%d", h.httpPort) || seen.Get("Proxy-Authorization") != "" || seen.Get("X-Hop") != "" {
		t.Errorf("upstream saw headers %v", seen)
	}
	lines := h.lines(2)
	wantFields(t, lines[0], map[string]any{"msg": "decision", "decision": "allow", "method": "POST", "path": "/p", "port": h.httpPort})
	wantFields(t, lines[1], map[string]any{"msg": "close", "bytes_up": 4, "status": 200})
}

func TestEachKeepAliveRequestDecided(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c := dialProxy(t, h)
	allowed := fmt.Sprintf("http://example.com:%d/a", h.httpPort)
	denied := fmt.Sprintf("http://denied.example:%d/b", h.httpPort)
	path := fmt.Sprintf("http://paths.example.com:%d/other", h.httpPort)
	// Pipelined on one connection, with a lying Host header on the second.
	io.WriteString(c, "GET "+allowed+" HTTP/1.1\r\nHost: x\r\n\r\n"+
		"GET "+denied+" HTTP/1.1\r\nHost: example.com\r\n\r\n"+
		"GET "+path+" HTTP/1.1\r\nHost: example.com\r\n\r\n"+
		"GET "+allowed+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	all, _ := io.ReadAll(c)
	got := regexp.MustCompile(`HTTP/1.1 (\d+)`).FindAllStringSubmatch(string(all), -1)
	var codes []string
	for _, m := range got {
		codes = append(codes, m[1])
	}
	if strings.Join(codes, ",") != "200,403,403,200" {
		t.Fatalf("statuses %v\n%s", codes, all)
	}
	if !strings.Contains(string(all), "X-Egret-Reason: path") {
		t.Errorf("no path denial in %s", all)
	}
}

func TestMalformedRequestsGet400(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	u := fmt.Sprintf("http://example.com:%d/", h.httpPort)
	for name, req := range map[string]string{
		"CL and TE":            "POST " + u + " HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"two Content-Lengths":  "POST " + u + " HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
		"same Content-Length":  "POST " + u + " HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
		"TE gzip":              "POST " + u + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
		"TE gzip, chunked":     "POST " + u + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
		"obs-fold":             "GET " + u + " HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
		"space before colon":   "GET " + u + " HTTP/1.1\r\nHost : x\r\n\r\n",
		"origin-form":          "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
		"bad request line":     "GET\r\n\r\n",
		"CONNECT without port": "CONNECT example.com HTTP/1.1\r\nHost: example.com\r\n\r\n",
		"CONNECT port 0":       "CONNECT example.com:0 HTTP/1.1\r\nHost: example.com\r\n\r\n",
		"CONNECT port 70000":   "CONNECT example.com:70000 HTTP/1.1\r\nHost: example.com\r\n\r\n",
		"https absolute-form":  "GET https://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n",
	} {
		if resp := h.raw(req); resp.StatusCode != 400 {
			t.Errorf("%s: status %d, want 400", name, resp.StatusCode)
		}
	}
}

func dialProxy(t *testing.T, h *harness) interface {
	io.ReadWriteCloser
} {
	t.Helper()
	c, err := netDial(h.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
