package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/egret-proxy/egret/internal/testpki"
	"github.com/egret-proxy/egret/internal/tlsfiles"
	"github.com/pires/go-proxyproto"
)

// The HTTPS proxy listener with the clients that speak TLS to a proxy:
// curl, Go's net/http, Python's urllib3 and Node's undici, each with and
// without a client certificate, to an allowed and a denied name.

// frontDoor is an egret serving the explicit proxy over TLS too, whose
// clients are named by certificates from a client CA.
type frontDoor struct {
	*harness
	front, clients *testpki.CA
	// connector's subject names the client "connector"; backup's URI SAN
	// names "backup"; stranger is from a CA egret does not trust.
	connector, backup, stranger *testpki.Leaf
	originCA                    string // the TLS upstream's certificate, PEM
	conf                        *tls.Config
}

func newFrontDoor(t *testing.T, require bool, more ...func(*Rules)) *frontDoor {
	t.Helper()
	fd := &frontDoor{front: testpki.NewCA(t, "front"), clients: testpki.NewCA(t, "clients")}
	srv := fd.front.Server("egret")
	fd.connector = fd.clients.Client("connector", pkix.Name{CommonName: "connector-a", Organization: []string{"Example"}})
	fd.backup = fd.clients.Client("backup", pkix.Name{CommonName: "not-a-client-name"}, "spiffe://example.org/ns/ops/sa/backup")
	fd.stranger = testpki.NewCA(t, "stranger").Client("stranger", pkix.Name{CommonName: "connector-a", Organization: []string{"Example"}})
	files, err := tlsfiles.New(tlsfiles.Options{CertFile: srv.CertFile, KeyFile: srv.KeyFile,
		ClientCAFile: fd.clients.File, RequireClientCert: require})
	if err != nil {
		t.Fatal(err)
	}
	fd.conf = files.Config()
	fd.harness = newHarness(t, harnessOpts{tls: fd.conf, mutate: func(r *Rules) {
		connector, backup := r.Default, r.Default
		connector.Name, connector.CertSubject = "connector", "CN=connector-a,O=Example"
		backup.Name, backup.CertSANs = "backup", []string{"spiffe://example.org/ns/ops/sa/backup"}
		r.Clients = []Client{connector, backup}
		// Far longer than any test here: a refusal must not wait for it.
		r.Limits.ReadHeaderTimeout = time.Minute
		for _, m := range more {
			m(r)
		}
	}})
	fd.originCA = writeUpstreamCA(t, fd.harness)
	return fd
}

func (fd *frontDoor) proxyURL() string { return "https://" + fd.tlsAddr }
func (fd *frontDoor) allowedURL(path string) string {
	return fmt.Sprintf("https://example.com:%d%s", fd.tlsPort, path)
}
func (fd *frontDoor) deniedURL() string { return fmt.Sprintf("https://denied.example:%d/", fd.tlsPort) }

// certCases are the three ways a client comes: with the certificate that
// names connector, with the one whose SAN names backup, and with none.
func (fd *frontDoor) certCases() []struct {
	name     string
	leaf     *testpki.Leaf
	identity string
} {
	return []struct {
		name     string
		leaf     *testpki.Leaf
		identity string
	}{
		{"subject", fd.connector, "connector"},
		{"uri-san", fd.backup, "backup"},
		{"no-cert", nil, "default"},
	}
}

// checkLog waits for identity's allowed tunnel to example.com, its close
// line, and its deny of denied.example.
func (fd *frontDoor) checkLog(t *testing.T, identity string) {
	t.Helper()
	waitLines(t, fd.logBuf, map[string]any{"decision": "allow", "identity": identity, "method": "CONNECT", "listener": "explicit"})
	waitLines(t, fd.logBuf, map[string]any{"msg": "close", "identity": identity, "host": "example.com"})
	waitLines(t, fd.logBuf, map[string]any{"decision": "deny", "identity": identity, "host": "denied.example", "reason": "no-rule"})
}

func TestHTTPSProxyGoClient(t *testing.T) {
	fd := newFrontDoor(t, false)
	for _, cc := range fd.certCases() {
		t.Run(cc.name, func(t *testing.T) {
			roots := fd.front.Pool() // one pool for the proxy and the origin: Go's Transport uses TLSClientConfig for both
			roots.AddCert(fd.tlsUp.Certificate())
			conf := &tls.Config{RootCAs: roots}
			if cc.leaf != nil {
				conf.Certificates = []tls.Certificate{cc.leaf.TLS}
			}
			pu, _ := url.Parse(fd.proxyURL())
			client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(pu), TLSClientConfig: conf}}
			defer client.CloseIdleConnections()
			resp, err := client.Get(fd.allowedURL("/go-" + cc.name))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "tls upstream: GET /go-"+cc.name {
				t.Fatalf("allowed: %d %q", resp.StatusCode, body)
			}
			// A plain request through the TLS proxy (absolute form).
			resp, err = client.Get(fmt.Sprintf("http://example.com:%d/go-plain", fd.httpPort))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("plain request: %d", resp.StatusCode)
			}
			if _, err = client.Get(fd.deniedURL()); err == nil || !strings.Contains(err.Error(), "Forbidden") {
				t.Fatalf("denied CONNECT: err %v, want the 403 Forbidden", err)
			}
			resp, err = client.Get("http://denied.example/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 403 || resp.Header.Get("X-Egret-Reason") != "no-rule" {
				t.Fatalf("denied plain request: %d %v", resp.StatusCode, resp.Header)
			}
			fd.checkLog(t, cc.identity)
			waitLines(t, fd.logBuf, map[string]any{"decision": "allow", "identity": cc.identity, "method": "GET", "path": "/go-plain"})
		})
	}
}

func TestHTTPSProxyCurl(t *testing.T) {
	fd := newFrontDoor(t, false)
	for _, cc := range fd.certCases() {
		t.Run(cc.name, func(t *testing.T) {
			args := []string{"--proxy", fd.proxyURL(), "--proxy-cacert", fd.front.File, "--cacert", fd.originCA}
			if cc.leaf != nil {
				args = append(args, "--proxy-cert", cc.leaf.CertFile, "--proxy-key", cc.leaf.KeyFile)
			}
			out, errOut, code := runCurl(t, append(args, fd.allowedURL("/curl-"+cc.name))...)
			if code != 0 || out != "tls upstream: GET /curl-"+cc.name {
				t.Fatalf("allowed: exit %d, stdout %q, stderr %q", code, out, errOut)
			}
			out, errOut, code = runCurl(t, append(args, "-w", "%{http_connect}", fd.deniedURL())...)
			if code != 56 || out != "403" {
				t.Fatalf("denied: exit %d (want 56), CONNECT status %q (want 403), stderr %q", code, out, errOut)
			}
			fd.checkLog(t, cc.identity)
		})
	}
	t.Run("stranger's certificate", func(t *testing.T) {
		_, errOut, code := runCurl(t, "--proxy", fd.proxyURL(), "--proxy-cacert", fd.front.File, "--cacert", fd.originCA,
			"--proxy-cert", fd.stranger.CertFile, "--proxy-key", fd.stranger.KeyFile, fd.allowedURL("/stranger"))
		if code == 0 {
			t.Fatal("a certificate from an untrusted CA was let through")
		}
		// curl sees the unknown_ca alert, or (TLS 1.3 lets it send its
		// CONNECT first) the reset of the closed connection.
		t.Logf("curl: %s", errOut)
		waitLines(t, fd.logBuf, map[string]any{"decision": "deny", "reason": "auth", "listener": "explicit",
			"error": "client certificate not verified: x509: certificate signed by unknown authority"})
	})
	t.Run("plain HTTP to the TLS port", func(t *testing.T) {
		out, _, code := runCurl(t, "--proxy", "http://"+fd.tlsAddr, "-w", "%{http_code}", "-o", "/dev/null",
			fmt.Sprintf("http://example.com:%d/", fd.httpPort))
		if code != 0 || out != "400" {
			t.Fatalf("exit %d, status %q; want 400", code, out)
		}
		waitLines(t, fd.logBuf, map[string]any{"decision": "deny", "reason": "bad-request", "status": 400,
			"error": "plain HTTP sent to the HTTPS proxy listener"})
	})
}

func TestHTTPSProxyRequireClientCert(t *testing.T) {
	fd := newFrontDoor(t, true)
	base := []string{"--proxy", fd.proxyURL(), "--proxy-cacert", fd.front.File, "--cacert", fd.originCA}
	out, errOut, code := runCurl(t, append(base, "--proxy-cert", fd.connector.CertFile, "--proxy-key", fd.connector.KeyFile, fd.allowedURL("/required"))...)
	if code != 0 || out != "tls upstream: GET /required" {
		t.Fatalf("with a certificate: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	_, errOut, code = runCurl(t, append(base, fd.allowedURL("/none"))...)
	// curl sees the certificate_required alert, or (TLS 1.3 lets it send
	// its CONNECT first) the reset of the closed connection.
	if code == 0 || !strings.Contains(errOut, "certificate required") && !strings.Contains(errOut, "reset") {
		t.Fatalf("without a certificate: exit %d, stderr %q; want the certificate_required alert", code, errOut)
	}
	waitLines(t, fd.logBuf, map[string]any{"decision": "deny", "reason": "auth", "error": "no client certificate (required)", "listener": "explicit"})
	waitLines(t, fd.logBuf, map[string]any{"decision": "allow", "identity": "connector"})
	if strings.Contains(fd.logBuf.String(), `"path":"/none"`) {
		t.Error("a request without a certificate was read")
	}
}

// TestHTTPSProxyGarbage: bytes that are no TLS handshake are refused and
// logged at once (the read-header timeout is far longer than the test).
func TestHTTPSProxyGarbage(t *testing.T) {
	fd := newFrontDoor(t, false)
	c, err := net.Dial("tcp", fd.tlsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	c.Write([]byte("\x00\x01\x02\x03\x04\x05garbage that is no TLS record\r\n\r\n"))
	if _, err := io.ReadAll(bufio.NewReader(c)); err != nil {
		t.Fatalf("the connection was not closed: %v", err)
	}
	waitLines(t, fd.logBuf, map[string]any{"decision": "deny", "reason": "bad-request", "listener": "explicit"})
}

// TestHTTPSProxyCredentials: Basic credentials travel inside the TLS
// session, and decide as on the plain listener when no certificate names
// the client.
func TestHTTPSProxyCredentials(t *testing.T) {
	fd := newFrontDoor(t, false, func(r *Rules) {
		svc := connectorClient(t, r)
		svc.Name, svc.Username, svc.CheckPassword = "svc", `corp\svc`, checkSecret(connectorPassword)
		r.Clients = append(r.Clients, svc)
	})
	base := []string{"--proxy", fd.proxyURL(), "--proxy-cacert", fd.front.File, "--cacert", fd.originCA}
	user := []string{"--proxy-user", `corp\svc:` + strings.ReplaceAll(connectorPassword, "%", "%25")}
	if out, errOut, code := runCurl(t, append(append(base, user...), fd.allowedURL("/creds"))...); code != 0 {
		t.Fatalf("with credentials: exit %d %q %q", code, out, errOut)
	}
	waitLines(t, fd.logBuf, map[string]any{"decision": "allow", "identity": "svc"})
	out, _, code := runCurl(t, append(base, "-w", "%{http_connect}", fd.allowedURL("/nocreds"))...)
	if code != 56 || out != "407" {
		t.Fatalf("without credentials or certificate: exit %d, status %q; want 407", code, out)
	}
	// A certificate comes first in the identity order.
	cert := []string{"--proxy-cert", fd.connector.CertFile, "--proxy-key", fd.connector.KeyFile}
	if out, errOut, code := runCurl(t, append(append(append(base, user...), cert...), fd.allowedURL("/both"))...); code != 0 {
		t.Fatalf("with both: exit %d %q %q", code, out, errOut)
	}
	lines := waitLines(t, fd.logBuf, map[string]any{"msg": "decision", "decision": "allow", "identity": "connector"})
	if len(lines) != 1 {
		t.Errorf("%d allows for connector, want the one with both", len(lines))
	}
	if strings.Contains(fd.logBuf.String(), "wörd") {
		t.Error("the password is in the log")
	}
}

// scriptClient runs an HTTPS-proxy client script that takes PROXY_URL
// PROXY_CA CLIENT_CERT CLIENT_KEY ORIGIN_CA URL... and prints one line per
// URL.
func scriptClient(t *testing.T, fd *frontDoor, argv []string, leaf *testpki.Leaf, urls ...string) []string {
	t.Helper()
	cert, key := "", ""
	if leaf != nil {
		cert, key = leaf.CertFile, leaf.KeyFile
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := append(append(argv[1:], fd.proxyURL(), fd.front.File, cert, key, fd.originCA), urls...)
	cmd := exec.CommandContext(ctx, argv[0], args...)
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(strings.ToLower(kv), "="); !strings.HasSuffix(k, "_proxy") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s%s", argv[0], err, out, stderr.String())
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// checkScriptLines checks a script's three lines: the allowed tunnel, the
// allowed plain request, the denied name.
func checkScriptLines(t *testing.T, got []string, tunnelPath string, denied func(string) bool) {
	t.Helper()
	if len(got) != 3 {
		t.Fatalf("printed %q, want 3 lines", got)
	}
	if got[0] != "200 tls upstream: GET "+tunnelPath {
		t.Errorf("allowed tunnel: %q", got[0])
	}
	if !strings.HasPrefix(got[1], "200 http upstream: GET ") {
		t.Errorf("allowed plain request: %q", got[1])
	}
	if !denied(got[2]) {
		t.Errorf("denied name: %q", got[2])
	}
}

// TestHTTPSProxyScriptClients runs Python's urllib3 and Node's undici,
// each as a program of its own in testdata, through the HTTPS listener.
func TestHTTPSProxyScriptClients(t *testing.T) {
	for _, client := range []struct {
		name   string
		argv   func(*testing.T) []string
		script string
	}{
		{"python", func(t *testing.T) []string { return []string{pythonWithUrllib3(t)} }, filepath.Join("testdata", "python", "https_proxy_client.py")},
		{"node", func(t *testing.T) []string { return []string{nodeWithUndici(t)} }, filepath.Join("testdata", "node", "https_proxy_client.mjs")},
	} {
		t.Run(client.name, func(t *testing.T) {
			argv := append(client.argv(t), client.script)
			fd := newFrontDoor(t, false)
			for _, cc := range fd.certCases() {
				t.Run(cc.name, func(t *testing.T) {
					path := "/" + client.name + "-" + cc.name
					got := scriptClient(t, fd, argv, cc.leaf,
						fd.allowedURL(path), fmt.Sprintf("http://example.com:%d/%s-plain", fd.httpPort, client.name), fd.deniedURL())
					checkScriptLines(t, got, path, func(s string) bool {
						return strings.HasPrefix(s, "ERROR") && strings.Contains(s, "403")
					})
					fd.checkLog(t, cc.identity)
				})
			}
		})
	}
}

// pythonWithUrllib3 finds a python3 whose urllib3 speaks TLS to a proxy
// (1.26 and later): the one on PATH, else Debian's (python3-urllib3).
func pythonWithUrllib3(t *testing.T) string {
	for _, p := range []string{"python3", "/usr/bin/python3"} {
		path, err := exec.LookPath(p)
		if err != nil {
			continue
		}
		out, err := exec.Command(path, "-c", "import urllib3, sys; v = tuple(int(x) for x in urllib3.__version__.split('.')[:2]); sys.exit(0 if v >= (1, 26) else 1)").CombinedOutput()
		if err == nil {
			return path
		}
		t.Logf("%s: no urllib3 >= 1.26: %s", path, out)
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no python3 with urllib3 >= 1.26 (Debian: python3-urllib3); .ci/run installs it")
	}
	t.Skip("no python3 with urllib3 >= 1.26")
	return ""
}

// nodeWithUndici returns node once testdata/node has its undici (npm ci
// installs the locked version when it is missing).
func nodeWithUndici(t *testing.T) string {
	node, nerr := exec.LookPath("node")
	npm, perr := exec.LookPath("npm")
	if nerr != nil || perr != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("node and npm are needed (Debian: nodejs, npm); .ci/run installs them")
		}
		t.Skip("node or npm is not installed")
	}
	dir := filepath.Join("testdata", "node")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "undici", "package.json")); err != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
		}
	}
	return node
}

// TestHTTPSProxyBehindProxyProtocol: behind a load balancer the PROXY
// header comes first, then the TLS handshake; the header's client is
// logged, and a client certificate still names the identity.
func TestHTTPSProxyBehindProxyProtocol(t *testing.T) {
	fd := newFrontDoor(t, false)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go fd.srv.ServeExplicitTLS(AcceptProxyProtocol(ln, []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, 5*time.Second), fd.conf)
	raw, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	hdr := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP("10.0.1.7"), Port: 40000}, ln.Addr().(*net.TCPAddr))
	if _, err := hdr.WriteTo(raw); err != nil {
		t.Fatal(err)
	}
	c := tls.Client(raw, &tls.Config{RootCAs: fd.front.Pool(), ServerName: "127.0.0.1", Certificates: []tls.Certificate{fd.connector.TLS}})
	fmt.Fprintf(c, "CONNECT example.com:%d HTTP/1.1\r\n\r\n", fd.tlsPort)
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "CONNECT"})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT over TLS behind PROXY: %v %v", resp, err)
	}
	waitLines(t, fd.logBuf, map[string]any{"decision": "allow", "listener": "explicit", "client": "10.0.1.7:40000", "identity": "connector"})
}
