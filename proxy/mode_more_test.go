package proxy

import (
	"fmt"
	"net/netip"
	"testing"
)

// TestReportModeMore: report mode lets what the policy denies through,
// logged as would-deny, but never what the address guard refuses (DESIGN
// §5, §6).
func TestReportModeMore(t *testing.T) {
	report := func(r *Rules) { r.Default.Mode = ModeReport }
	reportUnguarded := func(r *Rules) {
		r.Default.Mode = ModeReport
		r.Guard.AllowRanges = nil
	}
	type tc struct {
		name       string
		mutate     func(*Rules)
		method     string // CONNECT or GET
		target     func(h *harness) string
		wantStatus int
		wantLog    map[string]any
	}
	for _, tt := range []tc{
		{
			name: "denied name let through", mutate: report, method: "CONNECT",
			target:     func(h *harness) string { return fmt.Sprintf("denied.example:%d", h.httpPort) },
			wantStatus: 200,
			wantLog:    map[string]any{"decision": "would-deny", "reason": "no-rule", "mode": "report", "ip": "127.0.0.1"},
		},
		{
			name: "denied port let through", mutate: report, method: "CONNECT",
			target:     func(h *harness) string { return fmt.Sprintf("127.0.0.1:%d", h.httpPort) },
			wantStatus: 200,
			wantLog:    map[string]any{"decision": "would-deny", "reason": "no-rule", "mode": "report"},
		},
		{
			name: "denied plain request forwarded", mutate: report, method: "GET",
			target:     func(h *harness) string { return fmt.Sprintf("http://denied.example:%d/r", h.httpPort) },
			wantStatus: 200,
			wantLog:    map[string]any{"decision": "would-deny", "reason": "no-rule", "mode": "report", "path": "/r"},
		},
		{
			name: "path denial let through", mutate: report, method: "GET",
			target:     func(h *harness) string { return fmt.Sprintf("http://paths.example.com:%d/other", h.httpPort) },
			wantStatus: 200,
			wantLog:    map[string]any{"decision": "would-deny", "reason": "path", "mode": "report"},
		},
		{
			name: "allowed stays allow", mutate: report, method: "CONNECT",
			target:     func(h *harness) string { return fmt.Sprintf("example.com:%d", h.httpPort) },
			wantStatus: 200,
			wantLog:    map[string]any{"decision": "allow", "reason": "rule", "mode": "report"},
		},
		{
			name: "guard holds for a denied name", mutate: reportUnguarded, method: "CONNECT",
			target:     func(h *harness) string { return fmt.Sprintf("denied.example:%d", h.httpPort) },
			wantStatus: 403,
			wantLog:    map[string]any{"decision": "deny", "reason": "private-address", "mode": "report"},
		},
		{
			name: "guard holds for an allowed name", mutate: reportUnguarded, method: "CONNECT",
			target:     func(h *harness) string { return fmt.Sprintf("example.com:%d", h.tlsPort) },
			wantStatus: 403,
			wantLog:    map[string]any{"decision": "deny", "reason": "private-address", "mode": "report"},
		},
		{
			name: "guard holds for an IP literal", mutate: reportUnguarded, method: "CONNECT",
			target:     func(h *harness) string { return fmt.Sprintf("127.0.0.1:%d", h.tlsPort) },
			wantStatus: 403,
			wantLog:    map[string]any{"decision": "deny", "reason": "private-address", "mode": "report"},
		},
		{
			name: "guard holds for plain HTTP", mutate: reportUnguarded, method: "GET",
			target:     func(h *harness) string { return fmt.Sprintf("http://denied.example:%d/r", h.httpPort) },
			wantStatus: 403,
			wantLog:    map[string]any{"decision": "deny", "reason": "private-address", "mode": "report"},
		},
		{
			name: "bad host still denied", mutate: report, method: "CONNECT",
			target:     func(h *harness) string { return "api..example.com:443" },
			wantStatus: 403,
			wantLog:    map[string]any{"decision": "deny", "reason": "bad-host"},
		},
		{
			name: "per-client report mode", method: "CONNECT",
			mutate: func(r *Rules) {
				id, _ := r.Policy.Identity("learner", "test")
				r.Clients = []Client{{Name: "learner", Sources: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Identity: id, Mode: ModeReport}}
			},
			target:     func(h *harness) string { return fmt.Sprintf("denied.example:%d", h.httpPort) },
			wantStatus: 200,
			wantLog:    map[string]any{"decision": "would-deny", "reason": "no-rule", "mode": "report", "identity": "learner"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{mutate: tt.mutate})
			c := dialRaw(t, h.addr)
			target := tt.target(h)
			if tt.method == "CONNECT" {
				resp, body := c.connect(t, target, "")
				if resp.StatusCode != tt.wantStatus {
					t.Fatalf("CONNECT %s: %d %q, want %d", target, resp.StatusCode, body, tt.wantStatus)
				}
				if tt.wantStatus == 200 {
					c.send(t, "GET /tunnel HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
					if resp, body := c.response(t, "GET"); resp.StatusCode != 200 || body != "http upstream: GET /tunnel " {
						t.Errorf("through the tunnel: %d %q", resp.StatusCode, body)
					}
				} else if got := resp.Header.Get("X-Egret-Reason"); got != tt.wantLog["reason"] {
					t.Errorf("X-Egret-Reason %q, want %v", got, tt.wantLog["reason"])
				}
			} else {
				c.send(t, "GET "+target+" HTTP/1.1\r\nHost: example.com\r\n\r\n")
				resp, body := c.response(t, "GET")
				if resp.StatusCode != tt.wantStatus {
					t.Fatalf("GET %s: %d %q, want %d", target, resp.StatusCode, body, tt.wantStatus)
				}
				if tt.wantStatus == 403 && resp.Header.Get("X-Egret-Reason") != tt.wantLog["reason"] {
					t.Errorf("X-Egret-Reason %q", resp.Header.Get("X-Egret-Reason"))
				}
			}
			lines := h.lines(1)
			wantFields(t, lines[0], tt.wantLog)
			wantFields(t, lines[0], map[string]any{"msg": "decision", "method": tt.method})
			if tt.wantStatus == 200 {
				c.Close()
				cl := h.lines(2)[1]
				wantFields(t, cl, map[string]any{"msg": "close", "decision": tt.wantLog["decision"]})
			}
		})
	}
}
