package proxy

import (
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

// TestAuthMore covers client identification by credentials, by source
// address and by default (DESIGN §5), for CONNECT and plain HTTP.
func TestAuthMore(t *testing.T) {
	type tc struct {
		name       string
		mutate     func(t *testing.T, r *Rules)
		auth       string // Proxy-Authorization value, "" for none
		wantStatus int
		wantLog    map[string]any
	}
	withConnector := func(t *testing.T, r *Rules) { r.Clients = []Client{connectorClient(t, r)} }
	for _, tt := range []tc{
		{
			name: "no credentials", mutate: withConnector, wantStatus: 407,
			wantLog: map[string]any{"decision": "deny", "reason": "auth", "mode": "enforce"},
		},
		{
			name: "wrong password", mutate: withConnector, auth: basicAuth("connector", "wrong-pw-XYZ"), wantStatus: 407,
			wantLog: map[string]any{"decision": "deny", "reason": "auth"},
		},
		{
			name: "unknown user", mutate: withConnector, auth: basicAuth("nobody", "secret"), wantStatus: 407,
			wantLog: map[string]any{"decision": "deny", "reason": "auth"},
		},
		{
			name: "not Basic", mutate: withConnector, auth: "Bearer secret", wantStatus: 407,
			wantLog: map[string]any{"decision": "deny", "reason": "auth"},
		},
		{
			name: "bad base64", mutate: withConnector, auth: "Basic !!!secret", wantStatus: 407,
			wantLog: map[string]any{"decision": "deny", "reason": "auth"},
		},
		{
			name: "right password", mutate: withConnector, auth: basicAuth("connector", "secret"), wantStatus: 200,
			wantLog: map[string]any{"decision": "allow", "reason": "rule", "identity": "connector", "products": []any{"test"}},
		},
		{
			name: "lower-case scheme", mutate: withConnector, auth: "basic " + strings.TrimPrefix(basicAuth("connector", "secret"), "Basic "), wantStatus: 200,
			wantLog: map[string]any{"decision": "allow", "identity": "connector"},
		},
		{
			name: "auth optional, no credentials",
			mutate: func(t *testing.T, r *Rules) {
				withConnector(t, r)
				r.AuthOptional = true
			},
			wantStatus: 200,
			wantLog:    map[string]any{"decision": "allow", "identity": "default"},
		},
		{
			name: "auth optional, wrong password",
			mutate: func(t *testing.T, r *Rules) {
				withConnector(t, r)
				r.AuthOptional = true
			},
			auth: basicAuth("connector", "wrong-pw-XYZ"), wantStatus: 407,
			wantLog: map[string]any{"decision": "deny", "reason": "auth"},
		},
		{
			name: "source CIDR, no credentials",
			mutate: func(t *testing.T, r *Rules) {
				withConnector(t, r)
				id, err := r.Policy.Identity("local", "test")
				if err != nil {
					t.Fatal(err)
				}
				r.Clients = append(r.Clients, Client{Name: "local", Sources: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Identity: id})
			},
			wantStatus: 200,
			wantLog:    map[string]any{"decision": "allow", "identity": "local"},
		},
		{
			name: "source CIDR, right credentials win",
			mutate: func(t *testing.T, r *Rules) {
				withConnector(t, r)
				id, err := r.Policy.Identity("local", "test")
				if err != nil {
					t.Fatal(err)
				}
				r.Clients = append(r.Clients, Client{Name: "local", Sources: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Identity: id})
			},
			auth: basicAuth("connector", "secret"), wantStatus: 200,
			wantLog: map[string]any{"decision": "allow", "identity": "connector"},
		},
		{
			name: "source CIDR only, credentials ignored",
			mutate: func(t *testing.T, r *Rules) {
				id, err := r.Policy.Identity("local", "test")
				if err != nil {
					t.Fatal(err)
				}
				r.Clients = []Client{{Name: "local", Sources: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Identity: id}}
			},
			auth: basicAuth("someone", "secret"), wantStatus: 200,
			wantLog: map[string]any{"decision": "allow", "identity": "local"},
		},
		{
			name: "source CIDR not matching, no credentials",
			mutate: func(t *testing.T, r *Rules) {
				withConnector(t, r)
				id, err := r.Policy.Identity("office", "test")
				if err != nil {
					t.Fatal(err)
				}
				r.Clients = append(r.Clients, Client{Name: "office", Sources: []netip.Prefix{netip.MustParsePrefix("10.0.1.0/24")}, Identity: id})
			},
			wantStatus: 407,
			wantLog:    map[string]any{"decision": "deny", "reason": "auth"},
		},
	} {
		for _, method := range []string{"CONNECT", "GET"} {
			t.Run(tt.name+"/"+method, func(t *testing.T) {
				h := newHarness(t, harnessOpts{mutate: func(r *Rules) { tt.mutate(t, r) }})
				c := dialRaw(t, h.addr)
				extra := ""
				if tt.auth != "" {
					extra = "Proxy-Authorization: " + tt.auth + "\r\n"
				}
				var resp *http.Response
				var body string
				if method == "CONNECT" {
					resp, body = c.connect(t, fmt.Sprintf("example.com:%d", h.tlsPort), extra)
				} else {
					c.send(t, fmt.Sprintf("GET http://example.com:%d/auth HTTP/1.1\r\nHost: example.com\r\n%s\r\n", h.httpPort, extra))
					resp, body = c.response(t, method)
				}
				want := tt.wantStatus
				if want == 200 && method == "GET" {
					if body != "http upstream: GET /auth " {
						t.Errorf("body %q", body)
					}
				}
				if resp.StatusCode != want {
					t.Fatalf("status %d, want %d (%q)", resp.StatusCode, want, body)
				}
				if want == 407 {
					if got := resp.Header.Get("Proxy-Authenticate"); got != `Basic realm="egret", charset="UTF-8"` {
						t.Errorf("Proxy-Authenticate %q", got)
					}
					if got := resp.Header.Get("X-Egret-Reason"); got != "auth" {
						t.Errorf("X-Egret-Reason %q", got)
					}
				}
				lines := h.lines(1)
				wantFields(t, lines[0], tt.wantLog)
				wantFields(t, lines[0], map[string]any{"msg": "decision", "method": method, "host": "example.com"})
				if want == 200 {
					seen := ""
					if method == "GET" {
						seen = fmt.Sprint((<-h.lastHost).Get("Proxy-Authorization"))
					}
					if seen != "" {
						t.Errorf("upstream saw Proxy-Authorization %q", seen)
					}
				}
				c.Close()
				// Passwords (and their encodings) never reach the log.
				h.lines(1)
				log := h.logBuf.String()
				for _, secret := range []string{"secret", "wrong-pw-XYZ", strings.TrimPrefix(tt.auth, "Basic ")} {
					if secret != "" && strings.Contains(log, secret) {
						t.Errorf("decision log contains %q:\n%s", secret, log)
					}
				}
			})
		}
	}
}

// TestAuthChallengeThenCredentialsOnOneConnection: a client that waits for
// the 407 challenge sends its credentials on the same connection.
func TestAuthChallengeThenCredentialsOnOneConnection(t *testing.T) {
	h := newHarness(t, harnessOpts{mutate: func(r *Rules) { r.Clients = []Client{connectorClient(t, r)} }})
	c := dialRaw(t, h.addr)
	target := fmt.Sprintf("example.com:%d", h.httpPort)
	resp, _ := c.connect(t, target, "")
	if resp.StatusCode != 407 {
		t.Fatalf("first CONNECT: %d, want 407", resp.StatusCode)
	}
	resp, _ = c.connect(t, target, "Proxy-Authorization: "+basicAuth("connector", "secret")+"\r\n")
	if resp.StatusCode != 200 {
		t.Fatalf("second CONNECT: %d, want 200", resp.StatusCode)
	}
	c.send(t, "GET /through HTTP/1.1\r\nHost: example.com\r\n\r\n")
	if resp, body := c.response(t, "GET"); resp.StatusCode != 200 || body != "http upstream: GET /through " {
		t.Fatalf("through the tunnel: %d %q", resp.StatusCode, body)
	}
	lines := h.lines(2)
	wantFields(t, lines[0], map[string]any{"decision": "deny", "reason": "auth", "identity": ""})
	wantFields(t, lines[1], map[string]any{"decision": "allow", "identity": "connector", "method": "CONNECT"})
	if strings.Contains(h.logBuf.String(), "secret") {
		t.Errorf("password in the log: %s", h.logBuf.String())
	}
}

// TestAuthHTTPClient uses Go's proxy client, which sends the proxy URL's
// credentials with CONNECT and with plain requests.
func TestAuthHTTPClient(t *testing.T) {
	h := newHarness(t, harnessOpts{mutate: func(r *Rules) { r.Clients = []Client{connectorClient(t, r)} }})
	for _, tt := range []struct {
		user, pass string
		url        string
		wantStatus int
	}{
		{"connector", "secret", fmt.Sprintf("https://example.com:%d/a", h.tlsPort), 200},
		{"connector", "secret", fmt.Sprintf("http://example.com:%d/a", h.httpPort), 200},
		{"connector", "nope", fmt.Sprintf("http://example.com:%d/a", h.httpPort), 407},
		{"", "", fmt.Sprintf("http://example.com:%d/a", h.httpPort), 407},
	} {
		resp, err := h.client(tt.user, tt.pass).Get(tt.url)
		if tt.wantStatus == 407 && strings.HasPrefix(tt.url, "https") {
			continue
		}
		if err != nil {
			t.Errorf("%s as %q: %v", tt.url, tt.user, err)
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.wantStatus {
			t.Errorf("%s as %q/%q: %d, want %d", tt.url, tt.user, tt.pass, resp.StatusCode, tt.wantStatus)
		}
	}
	lines := h.lines(4)
	if got := linesWith(lines, map[string]any{"msg": "decision", "identity": "connector", "decision": "allow"}); len(got) != 2 {
		t.Errorf("%d allow lines for connector, want 2:\n%s", len(got), h.logBuf.String())
	}
	if got := linesWith(lines, map[string]any{"msg": "decision", "reason": "auth"}); len(got) != 2 {
		t.Errorf("%d auth lines, want 2:\n%s", len(got), h.logBuf.String())
	}
	for _, s := range []string{"secret", "nope"} {
		if strings.Contains(h.logBuf.String(), s) {
			t.Errorf("log contains %q", s)
		}
	}
}
