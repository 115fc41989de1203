package proxy

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/egret-proxy/egret/allowlists"
)

// TestGuardCheckMore is the address guard alone (DESIGN §6).
func TestGuardCheckMore(t *testing.T) {
	cidrRule := func(s string) *allowlists.Rule {
		return &allowlists.Rule{CIDR: netip.MustParsePrefix(s), Ports: []uint16{443}}
	}
	hostRule := &allowlists.Rule{Host: "example.com", Ports: []uint16{443}}
	var zero Guard
	for _, tt := range []struct {
		addr  string
		port  uint16
		guard *Guard
		rule  *allowlists.Rule
		want  allowlists.Reason
	}{
		{addr: "8.8.8.8", want: allowlists.ReasonRule},
		{addr: "2001:4860:4860::8888", want: allowlists.ReasonRule},
		{addr: "10.1.2.3", want: allowlists.ReasonPrivateAddress},
		{addr: "172.16.0.1", want: allowlists.ReasonPrivateAddress},
		{addr: "172.31.255.255", want: allowlists.ReasonPrivateAddress},
		{addr: "172.32.0.1", want: allowlists.ReasonRule},
		{addr: "192.168.1.1", want: allowlists.ReasonPrivateAddress},
		{addr: "127.0.0.1", want: allowlists.ReasonPrivateAddress},
		{addr: "169.254.169.254", want: allowlists.ReasonPrivateAddress},
		{addr: "100.64.1.1", want: allowlists.ReasonPrivateAddress},
		{addr: "100.127.255.255", want: allowlists.ReasonPrivateAddress},
		{addr: "100.128.0.1", want: allowlists.ReasonRule},
		{addr: "255.255.255.255", want: allowlists.ReasonPrivateAddress},
		{addr: "0.0.0.0", want: allowlists.ReasonPrivateAddress},
		{addr: "224.0.0.1", want: allowlists.ReasonPrivateAddress},
		{addr: "::", want: allowlists.ReasonPrivateAddress},
		{addr: "::1", want: allowlists.ReasonPrivateAddress},
		{addr: "fd00::1", want: allowlists.ReasonPrivateAddress},
		{addr: "fe80::1", want: allowlists.ReasonPrivateAddress},
		{addr: "ff02::1", want: allowlists.ReasonPrivateAddress},
		{addr: "::ffff:10.0.0.1", want: allowlists.ReasonPrivateAddress},
		{addr: "::ffff:169.254.169.254", want: allowlists.ReasonPrivateAddress},
		{addr: "::ffff:8.8.8.8", want: allowlists.ReasonRule},
		{addr: "64:ff9b::a00:1", want: allowlists.ReasonPrivateAddress},                       // NAT64 of 10.0.0.1
		{addr: "64:ff9b::a9fe:a9fe", want: allowlists.ReasonPrivateAddress},                   // NAT64 of 169.254.169.254
		{addr: "64:ff9b::808:808", want: allowlists.ReasonRule},                               // NAT64 of 8.8.8.8
		{addr: "2002:0a00:0001::", want: allowlists.ReasonPrivateAddress},                     // 6to4 of 10.0.0.1
		{addr: "2002:7f00:1::1", want: allowlists.ReasonPrivateAddress},                       // 6to4 of 127.0.0.1
		{addr: "2002:808:808::1", want: allowlists.ReasonRule},                                // 6to4 of 8.8.8.8
		{addr: "2001:0:4136:e378:8000:63bf:f5ff:fffe", want: allowlists.ReasonPrivateAddress}, // Teredo, client 10.0.0.1 inverted
		{addr: "2001:0:4136:e378:8000:63bf:80ff:fffe", want: allowlists.ReasonPrivateAddress}, // Teredo, client 127.0.0.1 inverted
		{addr: "2001:0:4136:e378:8000:63bf:f7f7:f7f7", want: allowlists.ReasonRule},           // Teredo, client 8.8.8.8 inverted
		// --allow-range lets a range through; nothing else.
		{addr: "10.1.2.3", guard: &Guard{AllowRanges: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, want: allowlists.ReasonRule},
		{addr: "::ffff:10.1.2.3", guard: &Guard{AllowRanges: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, want: allowlists.ReasonRule},
		{addr: "192.168.1.1", guard: &Guard{AllowRanges: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, want: allowlists.ReasonPrivateAddress},
		// A cidr rule inside a guarded range opens its own range only.
		{addr: "10.1.2.3", port: 443, rule: cidrRule("10.1.2.0/24"), want: allowlists.ReasonRule},
		{addr: "10.1.3.3", port: 443, rule: cidrRule("10.1.2.0/24"), want: allowlists.ReasonPrivateAddress},
		{addr: "169.254.169.254", port: 443, rule: cidrRule("169.254.169.254/32"), want: allowlists.ReasonRule},
		{addr: "10.1.2.3", port: 443, rule: cidrRule("0.0.0.0/0"), want: allowlists.ReasonPrivateAddress},
		{addr: "127.0.0.1", port: 443, rule: cidrRule("0.0.0.0/0"), want: allowlists.ReasonPrivateAddress},
		{addr: "10.1.2.3", port: 443, rule: cidrRule("8.0.0.0/6"), want: allowlists.ReasonPrivateAddress}, // 8-11/8: not inside one guarded range
		{addr: "fd00::1", port: 443, rule: cidrRule("::/0"), want: allowlists.ReasonPrivateAddress},
		{addr: "10.1.2.3", port: 443, rule: hostRule, want: allowlists.ReasonPrivateAddress},
		// Own addresses: refused even when allowed.
		{addr: "127.0.0.1", port: 8080, guard: &Guard{
			AllowRanges: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
			Self:        []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:8080")},
		}, rule: cidrRule("127.0.0.1/32"), want: allowlists.ReasonSelf},
		{addr: "::ffff:127.0.0.1", port: 8080, guard: &Guard{Self: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:8080")}}, want: allowlists.ReasonSelf},
		{addr: "127.0.0.1", port: 8081, guard: &Guard{
			AllowRanges: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
			Self:        []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:8080")},
		}, want: allowlists.ReasonRule},
		{addr: "127.0.0.5", port: 8080, guard: &Guard{Self: []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:8080")}}, want: allowlists.ReasonSelf},
		{addr: "::1", port: 8080, guard: &Guard{Self: []netip.AddrPort{netip.MustParseAddrPort("[::]:8080")}}, want: allowlists.ReasonSelf},
		{addr: "8.8.4.4", port: 8080, guard: &Guard{
			Self:  []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:8080")},
			Local: []netip.Addr{netip.MustParseAddr("8.8.4.4")},
		}, want: allowlists.ReasonSelf},
		{addr: "8.8.4.4", port: 8080, guard: &Guard{Self: []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:8080")}}, want: allowlists.ReasonRule},
	} {
		g := tt.guard
		if g == nil {
			g = &zero
		}
		port := tt.port
		if port == 0 {
			port = 443
		}
		if got := g.Check(netip.MustParseAddr(tt.addr), port, tt.rule); got != tt.want {
			rule := "<nil>"
			if tt.rule != nil {
				rule = tt.rule.Pattern()
			}
			t.Errorf("Check(%s, %d, rule %s) with %+v = %s, want %s", tt.addr, port, rule, *g, got, tt.want)
		}
	}
}

// TestGuardThroughProxy: the guard applied to real requests.
func TestGuardThroughProxy(t *testing.T) {
	unguarded := func(r *Rules) { r.Guard.AllowRanges = nil }
	for _, tt := range []struct {
		name       string
		extraRules func(tlsPort int) string
		mutate     func(*Rules)
		target     func(h *harness) string
		wantStatus int
		wantLog    map[string]any
	}{
		{
			name: "pinned name in loopback", mutate: unguarded,
			target:     func(h *harness) string { return fmt.Sprintf("example.com:%d", h.tlsPort) },
			wantStatus: 403, wantLog: map[string]any{"decision": "deny", "reason": "private-address", "rule": "example.com"},
		},
		{
			name:       "cidr rule opens itself",
			extraRules: func(p int) string { return fmt.Sprintf("  - {cidr: 127.0.0.1/32, ports: [%d], purpose: x}", p) },
			mutate:     unguarded,
			target:     func(h *harness) string { return fmt.Sprintf("127.0.0.1:%d", h.tlsPort) },
			wantStatus: 200, wantLog: map[string]any{"decision": "allow", "reason": "rule", "rule": "127.0.0.1/32", "ip": "127.0.0.1"},
		},
		{
			name:       "cidr rule opens itself, another notation",
			extraRules: func(p int) string { return fmt.Sprintf("  - {cidr: 127.0.0.0/24, ports: [%d], purpose: x}", p) },
			mutate:     unguarded,
			target:     func(h *harness) string { return fmt.Sprintf("0x7f.1:%d", h.tlsPort) },
			wantStatus: 200, wantLog: map[string]any{"decision": "allow", "host": "127.0.0.1", "rule": "127.0.0.0/24"},
		},
		{
			name:       "cidr rule on another port",
			extraRules: func(p int) string { return fmt.Sprintf("  - {cidr: 127.0.0.1/32, ports: [%d], purpose: x}", p+1) },
			mutate:     unguarded,
			target:     func(h *harness) string { return fmt.Sprintf("127.0.0.1:%d", h.tlsPort) },
			wantStatus: 403, wantLog: map[string]any{"decision": "deny", "reason": "no-rule"},
		},
		{
			name:       "0.0.0.0/0 opens nothing private",
			extraRules: func(p int) string { return fmt.Sprintf("  - {cidr: 0.0.0.0/0, ports: [%d], purpose: x, broad: x}", p) },
			mutate:     unguarded,
			target:     func(h *harness) string { return fmt.Sprintf("127.0.0.1:%d", h.tlsPort) },
			wantStatus: 403, wantLog: map[string]any{"decision": "deny", "reason": "private-address", "rule": "0.0.0.0/0"},
		},
		{
			name:       "host * opens nothing private",
			extraRules: func(p int) string { return fmt.Sprintf("  - {host: \"*\", ports: [%d], purpose: x, broad: x}", p) },
			mutate:     unguarded,
			target:     func(h *harness) string { return fmt.Sprintf("127.0.0.1:%d", h.tlsPort) },
			wantStatus: 403, wantLog: map[string]any{"decision": "deny", "reason": "private-address"},
		},
		{
			name:       "cidr rule does not open IPv6 loopback",
			extraRules: func(p int) string { return fmt.Sprintf("  - {cidr: 127.0.0.1/32, ports: [%d], purpose: x}", p) },
			mutate:     unguarded,
			target:     func(h *harness) string { return fmt.Sprintf("[::1]:%d", h.tlsPort) },
			wantStatus: 403, wantLog: map[string]any{"decision": "deny", "reason": "no-rule"},
		},
		{
			name:       "IPv4-mapped literal is the IPv4 address",
			extraRules: func(p int) string { return fmt.Sprintf("  - {cidr: 127.0.0.1/32, ports: [%d], purpose: x}", p) },
			mutate:     unguarded,
			target:     func(h *harness) string { return fmt.Sprintf("[::ffff:127.0.0.1]:%d", h.tlsPort) },
			wantStatus: 200, wantLog: map[string]any{"decision": "allow", "host": "127.0.0.1", "ip": "127.0.0.1"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// The upstream ports are only known inside newHarness: build
			// the rules from a placeholder and let the harness tell us.
			var opts harnessOpts
			opts.mutate = tt.mutate
			h := newHarness(t, opts)
			if tt.extraRules != nil {
				pol, id := policyFrom(t, tt.extraRules(h.tlsPort)+fmt.Sprintf("\n  - {host: example.com, ports: [%d, %d], purpose: up}", h.tlsPort, h.httpPort), allowlists.Settings{})
				swapRules(h, func(r *Rules) { r.Policy, r.Default.Identity = pol, id })
			}
			c := dialRaw(t, h.addr)
			target := tt.target(h)
			resp, body := c.connect(t, target, "")
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("CONNECT %s: %d %q, want %d", target, resp.StatusCode, body, tt.wantStatus)
			}
			if tt.wantStatus == 403 {
				if resp.Header.Get("X-Egret-Reason") != tt.wantLog["reason"] || !strings.Contains(body, fmt.Sprint(tt.wantLog["reason"])) {
					t.Errorf("reason header %q body %q, want %v", resp.Header.Get("X-Egret-Reason"), body, tt.wantLog["reason"])
				}
			}
			lines := h.lines(1)
			wantFields(t, lines[0], tt.wantLog)
			wantFields(t, lines[0], map[string]any{"msg": "decision", "method": "CONNECT"})
		})
	}
}

// TestGuardSelf: egret never dials its own listening address, whatever
// allows it (reason self).
func TestGuardSelf(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	ap := netip.MustParseAddrPort(h.addr)
	self := int(ap.Port())
	pol, id := policyFrom(t, fmt.Sprintf(
		"  - {cidr: 127.0.0.1/32, ports: [%d], purpose: self}\n  - {host: self.example, ports: [%d], purpose: self by name}\n  - {host: example.com, ports: [%d], purpose: up}",
		self, self, h.httpPort), allowlists.Settings{})
	swapRules(h, func(r *Rules) {
		r.Policy, r.Default.Identity = pol, id
		r.Pins = map[string]netip.Addr{"self.example": netip.MustParseAddr("127.0.0.1"), "example.com": netip.MustParseAddr("127.0.0.1")}
		// Guard.AllowRanges 127.0.0.0/8 and Guard.Self are the harness's.
	})
	if len(h.srv.Rules().Guard.AllowRanges) == 0 || len(h.srv.Rules().Guard.Self) == 0 {
		t.Fatal("harness guard lacks AllowRanges or Self")
	}
	for _, tt := range []struct {
		name, method, target string
		wantHost             string
	}{
		{"IP literal", "CONNECT", h.addr, "127.0.0.1"},
		{"IPv4-mapped literal", "CONNECT", fmt.Sprintf("[::ffff:127.0.0.1]:%d", self), "127.0.0.1"},
		{"decimal literal", "CONNECT", fmt.Sprintf("2130706433:%d", self), "127.0.0.1"},
		{"pinned name", "CONNECT", fmt.Sprintf("self.example:%d", self), "self.example"},
		{"plain HTTP", "GET", fmt.Sprintf("http://%s/loop", h.addr), "127.0.0.1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := dialRaw(t, h.addr)
			var resp *http.Response
			var body string
			if tt.method == "CONNECT" {
				resp, body = c.connect(t, tt.target, "")
			} else {
				c.send(t, "GET "+tt.target+" HTTP/1.1\r\nHost: x\r\n\r\n")
				resp, body = c.response(t, "GET")
			}
			if resp.StatusCode != 403 || resp.Header.Get("X-Egret-Reason") != "self" {
				t.Fatalf("%s %s: %d %q %q, want 403 self", tt.method, tt.target, resp.StatusCode, resp.Header.Get("X-Egret-Reason"), body)
			}
			got := waitLines(t, h.logBuf, map[string]any{"msg": "decision", "host": tt.wantHost, "port": self, "method": tt.method})
			wantFields(t, got[len(got)-1], map[string]any{"decision": "deny", "reason": "self"})
		})
	}
	// The proxy is still serving: nothing looped.
	c := dialRaw(t, h.addr)
	resp, _ := c.connect(t, fmt.Sprintf("example.com:%d", h.httpPort), "")
	if resp.StatusCode != 200 {
		t.Fatalf("after the self tests: %d", resp.StatusCode)
	}
}

// TestDenyEntries: explicit deny entries win over every allow rule
// (DESIGN §6).
func TestDenyEntries(t *testing.T) {
	for _, tt := range []struct {
		name       string
		deny       []string
		extraRules string // with %[1]d = tls port, %[2]d = http port
		method     string
		target     string // with %[1]d = tls port, %[2]d = http port
		wantStatus int
		wantLog    map[string]any
	}{
		{
			name: "exact name over a host rule", deny: []string{"example.com"}, method: "CONNECT", target: "example.com:%[1]d",
			wantStatus: 403, wantLog: map[string]any{"decision": "deny", "reason": "deny-entry", "rule": "example.com", "source": "configuration"},
		},
		{
			name: "exact name, plain HTTP", deny: []string{"example.com"}, method: "GET", target: "http://example.com:%[2]d/x",
			wantStatus: 403, wantLog: map[string]any{"decision": "deny", "reason": "deny-entry", "rule": "example.com", "path": "/x"},
		},
		{
			name: "pattern over a wildcard rule", deny: []string{"secret.example.com"},
			extraRules: "  - {host: \"*.example.com\", ports: [%[1]d], purpose: wildcard}", method: "CONNECT", target: "secret.example.com:%[1]d",
			wantStatus: 403, wantLog: map[string]any{"decision": "deny", "reason": "deny-entry", "rule": "secret.example.com"},
		},
		{
			name: "wildcard deny entry", deny: []string{"*.example.com"}, method: "GET", target: "http://paths.example.com:%[2]d/allowed",
			wantStatus: 403, wantLog: map[string]any{"decision": "deny", "reason": "deny-entry", "rule": "*.example.com"},
		},
		{
			name: "name of another case", deny: []string{"example.com"}, method: "CONNECT", target: "EXAMPLE.com.:%[1]d",
			wantStatus: 403, wantLog: map[string]any{"decision": "deny", "reason": "deny-entry", "host": "example.com"},
		},
		{
			name: "CIDR over a cidr rule", deny: []string{"127.0.0.1/32"},
			extraRules: "  - {cidr: 127.0.0.0/8, ports: [%[1]d], purpose: loopback}", method: "CONNECT", target: "127.0.0.1:%[1]d",
			wantStatus: 403, wantLog: map[string]any{"decision": "deny", "reason": "deny-entry", "rule": "127.0.0.1/32"},
		},
		{
			name: "unrelated deny entry", deny: []string{"other.example"}, method: "CONNECT", target: "example.com:%[1]d",
			wantStatus: 200, wantLog: map[string]any{"decision": "allow", "reason": "rule"},
		},
		{
			name: "report mode: would-deny", deny: []string{"example.com"}, method: "CONNECT", target: "example.com:%[2]d",
			wantStatus: 200, wantLog: map[string]any{"decision": "would-deny", "reason": "deny-entry", "mode": "report"},
		},
		// DESIGN §6: "Explicit deny entries (hosts, patterns, CIDRs) ...
		// win over every allow rule": a denied CIDR is not reached through
		// a name that resolves into it either.
		{
			name: "CIDR over a name resolving into it", deny: []string{"127.0.0.1/32"}, method: "CONNECT", target: "example.com:%[1]d",
			wantStatus: 403, wantLog: map[string]any{"decision": "deny", "reason": "deny-entry", "rule": "127.0.0.1/32"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{})
			rules := fmt.Sprintf("  - {host: example.com, ports: [%[1]d, %[2]d], purpose: up}\n  - {host: paths.example.com, ports: [%[2]d], paths: [/allowed], purpose: path rule}", h.tlsPort, h.httpPort)
			if tt.extraRules != "" {
				rules += "\n" + fmt.Sprintf(tt.extraRules, h.tlsPort, h.httpPort)
			}
			pol, id := policyFrom(t, rules, allowlists.Settings{Deny: tt.deny})
			swapRules(h, func(r *Rules) {
				r.Policy, r.Default.Identity = pol, id
				r.Pins = map[string]netip.Addr{"example.com": netip.MustParseAddr("127.0.0.1"), "secret.example.com": netip.MustParseAddr("127.0.0.1"), "paths.example.com": netip.MustParseAddr("127.0.0.1")}
				if tt.wantLog["mode"] == "report" {
					r.Default.Mode = ModeReport
				}
			})
			target := fmt.Sprintf(tt.target, h.tlsPort, h.httpPort)
			c := dialRaw(t, h.addr)
			var status int
			var reason, body string
			if tt.method == "CONNECT" {
				resp, b := c.connect(t, target, "")
				status, reason, body = resp.StatusCode, resp.Header.Get("X-Egret-Reason"), b
			} else {
				c.send(t, "GET "+target+" HTTP/1.1\r\nHost: example.com\r\n\r\n")
				resp, b := c.response(t, "GET")
				status, reason, body = resp.StatusCode, resp.Header.Get("X-Egret-Reason"), b
			}
			if status != tt.wantStatus {
				t.Fatalf("%s %s: %d %q, want %d", tt.method, target, status, body, tt.wantStatus)
			}
			if status == 403 && (reason != "deny-entry" || !strings.Contains(body, "deny-entry")) {
				t.Errorf("reason %q body %q", reason, body)
			}
			lines := h.lines(1)
			wantFields(t, lines[0], tt.wantLog)
			wantFields(t, lines[0], map[string]any{"msg": "decision", "method": tt.method})
		})
	}
}

// In report mode a deny entry's verdict passes on as would-deny; the deny
// entry's CIDR must not then count as a cidr rule that opens the guarded
// range it names. Here loopback is guarded (no --allow-range): a deny
// entry for it may not make it reachable.
func TestReportModeDenyEntryNeverOpensAGuardedRange(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	pol, id := policyFrom(t, fmt.Sprintf("  - {host: example.com, ports: [%d], purpose: up}", h.tlsPort),
		allowlists.Settings{Deny: []string{"127.0.0.1/32"}})
	swapRules(h, func(r *Rules) {
		r.Policy, r.Default.Identity, r.Default.Mode = pol, id, ModeReport
		r.Guard.AllowRanges = nil
	})
	resp, _ := dialRaw(t, h.addr).connect(t, fmt.Sprintf("example.com:%d", h.tlsPort), "")
	if resp.StatusCode != 403 || resp.Header.Get("X-Egret-Reason") != "private-address" {
		t.Fatalf("CONNECT to a guarded address under a deny entry, report mode: %s %q", resp.Status, resp.Header.Get("X-Egret-Reason"))
	}
	wantFields(t, h.lines(1)[0], map[string]any{"decision": "deny", "reason": "private-address"})
}
