package proxy

import (
	"fmt"
	"testing"

	"github.com/egret-proxy/egret/allowlists"
)

// TestReloadKeepsOpenTunnels: SetRules does not touch an open tunnel; the
// next CONNECT is decided with the new rules (DESIGN §5: reloads do not
// drop tunnels).
func TestReloadKeepsOpenTunnels(t *testing.T) {
	for _, tt := range []struct {
		name     string
		change   func(t *testing.T, r *Rules)
		wantDeny string
	}{
		{"deny entry", func(t *testing.T, r *Rules) {
			r.Policy, r.Default.Identity = recompile(t, r.Policy, allowlists.Settings{Deny: []string{"example.com"}})
		}, "deny-entry"},
		{"no products", func(t *testing.T, r *Rules) {
			id, err := r.Policy.Identity("default")
			if err != nil {
				t.Fatal(err)
			}
			r.Default.Identity = id
		}, "no-rule"},
		{"guard closed", func(t *testing.T, r *Rules) { r.Guard.AllowRanges = nil }, "private-address"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{})
			target := fmt.Sprintf("example.com:%d", h.httpPort)
			c := dialRaw(t, h.addr)
			if resp, _ := c.connect(t, target, ""); resp.StatusCode != 200 {
				t.Fatalf("CONNECT: %d", resp.StatusCode)
			}
			c.send(t, "GET /one HTTP/1.1\r\nHost: example.com\r\n\r\n")
			if resp, body := c.response(t, "GET"); resp.StatusCode != 200 || body != "http upstream: GET /one " {
				t.Fatalf("first request: %d %q", resp.StatusCode, body)
			}

			swapRules(h, func(r *Rules) { tt.change(t, r) })

			c.send(t, "GET /two HTTP/1.1\r\nHost: example.com\r\n\r\n")
			if resp, body := c.response(t, "GET"); resp.StatusCode != 200 || body != "http upstream: GET /two " {
				t.Fatalf("second request on the open tunnel after reload: %d %q", resp.StatusCode, body)
			}
			c2 := dialRaw(t, h.addr)
			resp, body := c2.connect(t, target, "")
			if resp.StatusCode != 403 || resp.Header.Get("X-Egret-Reason") != tt.wantDeny {
				t.Fatalf("new CONNECT after reload: %d %q %q, want 403 %s", resp.StatusCode, resp.Header.Get("X-Egret-Reason"), body, tt.wantDeny)
			}
			// Plain requests on a keep-alive connection opened before the
			// reload are decided with the new rules too.
			lines := h.lines(2)
			wantFields(t, lines[0], map[string]any{"msg": "decision", "decision": "allow", "method": "CONNECT"})
			wantFields(t, lines[1], map[string]any{"msg": "decision", "decision": "deny", "reason": tt.wantDeny, "method": "CONNECT"})
			c.Close()
			l := waitLines(t, h.logBuf, map[string]any{"msg": "close"})
			wantFields(t, l[0], map[string]any{"decision": "allow", "trace_id": lines[0]["trace_id"]})
			if n, _ := l[0]["bytes_down"].(float64); n <= 0 {
				t.Errorf("close line bytes_down %v", l[0]["bytes_down"])
			}
		})
	}
}

// TestReloadKeepAliveConnection: each request on a keep-alive connection
// is decided with the rules in force when it arrives.
func TestReloadKeepAliveConnection(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c := dialRaw(t, h.addr)
	get := fmt.Sprintf("GET http://example.com:%d/ka HTTP/1.1\r\nHost: example.com\r\n\r\n", h.httpPort)
	c.send(t, get)
	if resp, _ := c.response(t, "GET"); resp.StatusCode != 200 {
		t.Fatalf("before reload: %d", resp.StatusCode)
	}
	swapRules(h, func(r *Rules) {
		r.Policy, r.Default.Identity = recompile(t, r.Policy, allowlists.Settings{Deny: []string{"example.com"}})
	})
	c.send(t, get)
	if resp, _ := c.response(t, "GET"); resp.StatusCode != 403 || resp.Header.Get("X-Egret-Reason") != "deny-entry" {
		t.Fatalf("after reload on the same connection: %d %q", resp.StatusCode, resp.Header.Get("X-Egret-Reason"))
	}
	l := waitLines(t, h.logBuf, map[string]any{"msg": "decision", "decision": "deny"})
	wantFields(t, l[0], map[string]any{"reason": "deny-entry", "path": "/ka"})
}
