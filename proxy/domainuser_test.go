package proxy

import (
	"context"
	"encoding/pem"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The NetApp Connector's domain user (documented as `domain%92user`) and
// passwords holding ':', '%' and characters beyond ASCII, as real clients
// send them.

// connectorPassword has every character that trips a Basic implementation:
// ':' (the user/password separator), '%' (percent-decoding), 'ö' (in
// ISO-8859-1 and UTF-8) and '€' (in UTF-8 only).
const connectorPassword = "p:ss%41wörd€"

// domainUserHarness serves one client whose configured username is
// configured (`corp\svc` or `corp%92svc`) and whose password is password.
func domainUserHarness(t *testing.T, configured, password string) *harness {
	return newHarness(t, harnessOpts{mutate: func(r *Rules) {
		c := connectorClient(t, r)
		c.Username, c.CheckPassword = configured, checkSecret(password)
		r.Clients = []Client{c}
	}})
}

// TestDomainUserFormsMatchEachOther sends the credential in each form a
// Connector may use, against each form an operator may configure.
func TestDomainUserFormsMatchEachOther(t *testing.T) {
	received := map[string]string{
		"backslash":               `corp\svc`,
		"literal %92":             "corp%92svc",
		"byte 0x92 (URL-decoded)": "corp\x92svc",
		"U+0092 in UTF-8":         "corp\u0092svc",
	}
	for _, configured := range []string{`corp\svc`, "corp%92svc"} {
		h := domainUserHarness(t, configured, connectorPassword)
		for form, user := range received {
			t.Run(configured+"/"+form, func(t *testing.T) {
				resp := h.raw(fmt.Sprintf("CONNECT example.com:%d HTTP/1.1\r\nHost: example.com:%d\r\nProxy-Authorization: %s\r\n\r\n",
					h.tlsPort, h.tlsPort, basicAuth(user, connectorPassword)))
				if resp.StatusCode != 200 {
					t.Fatalf("status %d, want 200", resp.StatusCode)
				}
			})
		}
		t.Run(configured+"/another user", func(t *testing.T) {
			resp := h.raw(fmt.Sprintf("CONNECT example.com:%d HTTP/1.1\r\nProxy-Authorization: %s\r\n\r\n",
				h.tlsPort, basicAuth("corp/svc", connectorPassword)))
			if resp.StatusCode != 407 {
				t.Fatalf("status %d, want 407", resp.StatusCode)
			}
		})
		if n := len(linesWith(h.lines(5), map[string]any{"decision": "allow", "identity": "connector"})); n != len(received) {
			t.Errorf("configured %q: %d allow lines for the connector, want %d:\n%s", configured, n, len(received), h.logBuf.String())
		}
	}
}

// TestBasicPasswordEncodings: the password in UTF-8 (what the challenge's
// charset asks for) and in ISO-8859-1 (what Java sends without it) both
// match the configured UTF-8 password; a wrong one does not.
func TestBasicPasswordEncodings(t *testing.T) {
	const latin1Able = "p:ss%41wörd"
	h := domainUserHarness(t, `corp\svc`, latin1Able)
	for _, tt := range []struct {
		name, password string
		want           int
	}{
		{"UTF-8", latin1Able, 200},
		{"ISO-8859-1", "p:ss%41w\xf6rd", 200},
		{"percent-decoded", "p:ssAwörd", 407},
		{"wrong byte", "p:ss%41w\xf7rd", 407},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp := h.raw(fmt.Sprintf("CONNECT example.com:%d HTTP/1.1\r\nProxy-Authorization: %s\r\n\r\n",
				h.tlsPort, basicAuth(`corp\svc`, tt.password)))
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.want)
			}
		})
	}
}

// TestCurlDomainUser is what an operator types: the proxy URL with the user
// and password percent-encoded (curl decodes them, sending the byte 0x92),
// --proxy-user with a backslash (curl percent-decodes it too, so '%' is
// written %25), and the literal %92 form in a hand-made header.
func TestCurlDomainUser(t *testing.T) {
	for _, configured := range []string{`corp\svc`, "corp%92svc"} {
		h := domainUserHarness(t, configured, connectorPassword)
		ca := writeUpstreamCA(t, h)
		target := fmt.Sprintf("https://example.com:%d/domain-user", h.tlsPort)
		proxyURL := "http://corp%92svc:" + url.QueryEscape(connectorPassword) + "@" + h.addr
		literal := "Proxy-Authorization: " + basicAuth("corp%92svc", connectorPassword)
		for _, tt := range []struct {
			name string
			args []string
			code int
		}{
			{"proxy URL", []string{"-x", proxyURL, target}, 0},
			{"--proxy-user", []string{"-x", "http://" + h.addr, "--proxy-user", `corp\svc:` + strings.ReplaceAll(connectorPassword, "%", "%25"), target}, 0},
			{"literal %92 header", []string{"-x", "http://" + h.addr, "--proxy-header", literal, target}, 0},
			{"wrong password", []string{"-x", "http://" + h.addr, "--proxy-user", `corp\svc:p:ss`, target}, 56},
		} {
			t.Run(configured+"/"+tt.name, func(t *testing.T) {
				out, errOut, code := runCurl(t, append([]string{"--cacert", ca}, tt.args...)...)
				if code != tt.code {
					t.Fatalf("curl exit %d, want %d; stdout %q stderr %q", code, tt.code, out, errOut)
				}
				if code == 0 && out != "tls upstream: GET /domain-user" {
					t.Errorf("stdout %q", out)
				}
				if code != 0 && !strings.Contains(errOut, "407") {
					t.Errorf("stderr %q lacks 407", errOut)
				}
			})
		}
		waitLines(t, h.logBuf, map[string]any{"decision": "allow", "identity": "connector", "method": "CONNECT"})
	}
}

func writeUpstreamCA(t *testing.T, h *harness) string {
	t.Helper()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: h.tlsUp.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return ca
}

// TestJavaHttpClient runs the JDK's standard java.net.http.HttpClient (the
// client a Java appliance or agent uses) through egret: a CONNECT tunnel
// and a plain request with the domain user and the awkward password, and a
// denied name. The JDK speaks plain HTTP to its proxy (it has no https://
// proxy), so this is the plain listener.
func TestJavaHttpClient(t *testing.T) {
	java, err := exec.LookPath("java")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("java is not installed (Debian: default-jdk-headless)")
		}
		t.Skip("java is not installed")
	}
	h := domainUserHarness(t, "corp%92svc", connectorPassword)
	ca := writeUpstreamCA(t, h)
	host, port, _ := strings.Cut(h.addr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, java,
		"-Djdk.http.auth.tunneling.disabledSchemes=", // allow Basic on CONNECT
		"-Djava.net.useSystemProxies=false",
		filepath.Join("testdata", "java", "ProxyClient.java"),
		host, port, `corp\svc`, connectorPassword, ca,
		fmt.Sprintf("https://example.com:%d/java-tunnel", h.tlsPort),
		fmt.Sprintf("http://example.com:%d/java-plain", h.httpPort),
		"https://denied.example/",
	)
	for _, kv := range os.Environ() { // no options or proxies from the environment
		if k, _, _ := strings.Cut(kv, "="); k != "JAVA_TOOL_OPTIONS" && k != "_JAVA_OPTIONS" && k != "JDK_JAVA_OPTIONS" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "LC_ALL=C.UTF-8") // the password argument is UTF-8
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("java: %v\n%s%s", err, out, stderr.String())
	}
	got := strings.Split(strings.TrimSpace(string(out)), "\n")
	want := []string{
		"200 tls upstream: GET /java-tunnel",
		"200 http upstream: GET /java-plain ",
		"ERROR", // the JDK reports a refused CONNECT as an IOException naming the status
	}
	if len(got) != len(want) {
		t.Fatalf("java printed %q, want %d lines", got, len(want))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], strings.TrimSpace(want[i])) {
			t.Errorf("line %d: %q, want %q", i, got[i], want[i])
		}
	}
	if !strings.Contains(got[2], "403") {
		t.Errorf("the denied CONNECT: %q does not name 403", got[2])
	}
	waitLines(t, h.logBuf, map[string]any{"decision": "allow", "identity": "connector", "method": "CONNECT", "port": h.tlsPort})
	waitLines(t, h.logBuf, map[string]any{"decision": "allow", "identity": "connector", "method": "GET", "path": "/java-plain"})
	waitLines(t, h.logBuf, map[string]any{"decision": "deny", "reason": "no-rule", "identity": "connector", "host": "denied.example"})
}
