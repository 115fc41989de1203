package proxy

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestUpstreamFailures: an upstream that refuses gets 502, one that does
// not answer 504; the body names no internal detail and the close line
// carries the status and the error.
func TestUpstreamFailures(t *testing.T) {
	dead := freePort(t)
	silent := silentUpstream(t)
	extra := fmt.Sprintf("  - {host: example.com, ports: [%d, %d], purpose: failing upstreams}", dead, silent)
	for _, tt := range []struct {
		name       string
		method     string
		port       int
		wantStatus int
	}{
		{"CONNECT, nothing listens", "CONNECT", dead, 502},
		{"GET, nothing listens", "GET", dead, 502},
		{"POST, nothing listens", "POST", dead, 502},
		{"GET, no answer", "GET", silent, 504},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{extraRules: extra, mutate: func(r *Rules) {
				r.Limits.IdleTimeout = 300 * time.Millisecond
				r.Limits.DialTimeout = 2 * time.Second
			}})
			c := dialRaw(t, h.addr)
			var resp *http.Response
			var body string
			switch tt.method {
			case "CONNECT":
				resp, body = c.connect(t, fmt.Sprintf("example.com:%d", tt.port), "")
			case "GET":
				c.send(t, fmt.Sprintf("GET http://example.com:%d/f HTTP/1.1\r\nHost: example.com\r\n\r\n", tt.port))
				resp, body = c.response(t, "GET")
			case "POST":
				c.send(t, fmt.Sprintf("POST http://example.com:%d/f HTTP/1.1\r\nHost: example.com\r\nContent-Length: 3\r\n\r\nabc", tt.port))
				resp, body = c.response(t, "POST")
			}
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("%s: %d %q, want %d", tt.method, resp.StatusCode, body, tt.wantStatus)
			}
			for _, leak := range []string{"dial", "refused", "127.0.0.1", "tcp", "timeout awaiting", fmt.Sprint(tt.port)} {
				if strings.Contains(strings.ToLower(body), leak) {
					t.Errorf("body %q leaks %q", body, leak)
				}
			}
			if closed, _ := closedWithin(c, c.br, 5*time.Second); !closed {
				t.Errorf("connection not closed after %d", tt.wantStatus)
			}
			lines := h.lines(2)
			wantFields(t, lines[0], map[string]any{"msg": "decision", "decision": "allow", "method": tt.method, "port": tt.port})
			wantFields(t, lines[1], map[string]any{"msg": "close", "status": tt.wantStatus, "method": tt.method})
			if e, _ := lines[1]["error"].(string); e == "" {
				t.Errorf("close line lacks error: %v", lines[1])
			}
		})
	}
}

// chain is two egrets: first sends what it allows through second.
type chain struct {
	first, second *harness
}

func newChain(t *testing.T, upstreamUser string, secondMutate func(*Rules)) chain {
	t.Helper()
	first := newHarness(t, harnessOpts{})
	// The second allows example.com on the first's upstream ports, and
	// onlysecond.example, which the first does not allow.
	second := newHarness(t, harnessOpts{
		extraRules: fmt.Sprintf("  - {host: example.com, ports: [%d, %d], purpose: first's upstreams}\n  - {host: onlysecond.example, ports: [%d], purpose: second only}",
			first.tlsPort, first.httpPort, first.httpPort),
		mutate: secondMutate,
	})
	u := &url.URL{Scheme: "http", Host: second.addr}
	if upstreamUser != "" {
		u.User = url.UserPassword(upstreamUser, "secret")
	}
	swapRules(first, func(r *Rules) { r.Upstream = u })
	return chain{first, second}
}

// TestUpstreamProxyChain: with an upstream proxy, egret still decides;
// allowed traffic goes through the upstream proxy, which decides too.
func TestUpstreamProxyChain(t *testing.T) {
	for _, auth := range []bool{false, true} {
		t.Run(fmt.Sprintf("auth=%v", auth), func(t *testing.T) {
			var ch chain
			if auth {
				ch = newChain(t, "connector", func(r *Rules) { r.Clients = []Client{connectorClient(t, r)} })
			} else {
				ch = newChain(t, "", nil)
			}
			first, second := ch.first, ch.second
			wantSecond := map[string]any{"decision": "allow"}
			if auth {
				wantSecond["identity"] = "connector"
			}

			// CONNECT through both to the TLS upstream.
			cl := first.client("", "")
			resp, err := cl.Get(fmt.Sprintf("https://example.com:%d/chain", first.tlsPort))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != "tls upstream: GET /chain" {
				t.Fatalf("CONNECT through the chain: %q", body)
			}
			cl.Transport.(*http.Transport).CloseIdleConnections()
			l := waitLines(t, first.logBuf, map[string]any{"msg": "decision", "method": "CONNECT", "port": first.tlsPort})
			wantFields(t, l[0], map[string]any{"decision": "allow", "host": "example.com", "rule": "example.com"})
			l = waitLines(t, second.logBuf, map[string]any{"msg": "decision", "method": "CONNECT", "port": first.tlsPort})
			wantFields(t, l[0], wantSecond)
			wantFields(t, l[0], map[string]any{"host": "example.com", "ip": "127.0.0.1"})

			// Plain HTTP through both.
			resp, err = cl.Get(fmt.Sprintf("http://example.com:%d/chain?x=1", first.httpPort))
			if err != nil {
				t.Fatal(err)
			}
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "http upstream: GET /chain?x=1 " {
				t.Fatalf("plain HTTP through the chain: %d %q", resp.StatusCode, body)
			}
			seen := <-first.lastHost
			if seen.Get("Proxy-Authorization") != "" || seen.Get("Host") != fmt.Sprintf("example.com:%d", first.httpPort) {
				t.Errorf("upstream saw %v", seen)
			}
			l = waitLines(t, first.logBuf, map[string]any{"msg": "close", "method": "GET", "path": "/chain"})
			wantFields(t, l[0], map[string]any{"status": 200})
			l = waitLines(t, second.logBuf, map[string]any{"msg": "decision", "method": "GET", "path": "/chain"})
			wantFields(t, l[0], wantSecond)

			// Allowed by the first, denied by the second: the second's
			// refusal reaches the client as a failure, never as a tunnel.
			c := dialRaw(t, first.addr)
			target := fmt.Sprintf("paths.example.com:%d", first.httpPort)
			resp, b := c.connect(t, target, "")
			if resp.StatusCode == 200 {
				t.Fatalf("CONNECT %s denied by the second: 200", target)
			}
			if resp.StatusCode != 502 || strings.Contains(b, second.addr) {
				t.Errorf("CONNECT %s denied by the second: %d %q, want 502 without detail", target, resp.StatusCode, b)
			}
			l = waitLines(t, second.logBuf, map[string]any{"msg": "decision", "host": "paths.example.com"})
			wantFields(t, l[0], map[string]any{"decision": "deny", "reason": "no-rule"})
			l = waitLines(t, first.logBuf, map[string]any{"msg": "close", "host": "paths.example.com"})
			wantFields(t, l[0], map[string]any{"status": 502})

			// Denied by the first: never reaches the second.
			for _, target := range []string{"denied.example:443", fmt.Sprintf("onlysecond.example:%d", first.httpPort)} {
				c := dialRaw(t, first.addr)
				resp, _ := c.connect(t, target, "")
				if resp.StatusCode != 403 || resp.Header.Get("X-Egret-Reason") != "no-rule" {
					t.Errorf("CONNECT %s: %d %q, want 403 no-rule", target, resp.StatusCode, resp.Header.Get("X-Egret-Reason"))
				}
				host := strings.Split(target, ":")[0]
				l := waitLines(t, first.logBuf, map[string]any{"msg": "decision", "host": host})
				wantFields(t, l[0], map[string]any{"decision": "deny", "reason": "no-rule"})
			}
			c = dialRaw(t, first.addr)
			c.send(t, fmt.Sprintf("GET http://onlysecond.example:%d/x HTTP/1.1\r\nHost: x\r\n\r\n", first.httpPort))
			if resp, _ := c.response(t, "GET"); resp.StatusCode != 403 {
				t.Errorf("GET onlysecond.example through the first: %d", resp.StatusCode)
			}
			time.Sleep(100 * time.Millisecond)
			for _, host := range []string{"denied.example", "onlysecond.example"} {
				if got := linesWith(parseLines(t, second.logBuf.String()), map[string]any{"host": host}); len(got) > 0 {
					t.Errorf("the second saw %s, which the first denied: %v", host, got)
				}
			}
			for _, s := range []string{"secret", "connector:"} {
				if strings.Contains(first.logBuf.String(), s) || strings.Contains(second.logBuf.String(), s) {
					t.Errorf("a log contains %q", s)
				}
			}
		})
	}
}

// TestUpstreamProxyWrongCredentials: the upstream proxy refuses egret's
// credentials: the client gets a failure, not the upstream's 407 (which
// would ask the client for credentials meant for egret's upstream).
func TestUpstreamProxyWrongCredentials(t *testing.T) {
	ch := newChain(t, "intruder", func(r *Rules) { r.Clients = []Client{connectorClient(t, r)} })
	c := dialRaw(t, ch.first.addr)
	resp, body := c.connect(t, fmt.Sprintf("example.com:%d", ch.first.tlsPort), "")
	if resp.StatusCode != 502 {
		t.Errorf("CONNECT with wrong upstream credentials: %d %q, want 502", resp.StatusCode, body)
	}
	l := waitLines(t, ch.second.logBuf, map[string]any{"msg": "decision"})
	wantFields(t, l[0], map[string]any{"decision": "deny", "reason": "auth"})
}

// TestUpstreamProxyDown: an upstream proxy that is not there is a 502.
func TestUpstreamProxyDown(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	swapRules(h, func(r *Rules) { r.Upstream = &url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", freePort(t))} })
	for _, method := range []string{"CONNECT", "GET"} {
		c := dialRaw(t, h.addr)
		var resp *http.Response
		var body string
		if method == "CONNECT" {
			resp, body = c.connect(t, fmt.Sprintf("example.com:%d", h.tlsPort), "")
		} else {
			c.send(t, fmt.Sprintf("GET http://example.com:%d/ HTTP/1.1\r\nHost: x\r\n\r\n", h.httpPort))
			resp, body = c.response(t, "GET")
		}
		if resp.StatusCode != 502 || strings.Contains(body, "127.0.0.1") || strings.Contains(body, "refused") {
			t.Errorf("%s with the upstream proxy down: %d %q, want 502 without detail", method, resp.StatusCode, body)
		}
		l := waitLines(t, h.logBuf, map[string]any{"msg": "close", "method": method})
		wantFields(t, l[0], map[string]any{"status": 502})
	}
}
