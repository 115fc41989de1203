package proxy

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/egret-proxy/egret/certs"
)

// interceptHarness is a running egret with interception configured: an
// egret CA for svc, both, bad and hosts.example.com, an upstream whose
// certificate comes from a test root egret trusts (--upstream-ca), and an
// upstream whose certificate egret does not trust.
type interceptHarness struct {
	*harness
	egretCA   *x509.Certificate // parsed from ca.pem, as a workload would
	caPath    string            // ca.pem
	upLeaf    []byte            // the upstream's own certificate (DER)
	upPort    int
	badPort   int
	clientCAs *x509.CertPool // trusted by the test's clients: egret's CA and the upstream root

	mu   sync.Mutex
	seen []string // "Host path" of every request the good upstream served
}

const interceptRules = `
  - {host: svc.example.com, ports: [%[1]d], paths: [/allowed, /maven2], purpose: path rule}
  - {host: open.example.com, ports: [%[1]d], purpose: no paths}
  - {host: both.example.com, ports: [%[1]d], paths: [/only], purpose: path rule}
  - {host: both.example.com, ports: [%[1]d], purpose: the rule without paths decides}
  - {host: outside.example.net, ports: [%[1]d], paths: [/allowed], purpose: path rule the CA does not cover}
  - {host: api.hosts.example.com, ports: [%[1]d], purpose: "no paths, but --intercept-host"}
  - {host: bad.example.com, ports: [%[2]d], paths: [/allowed], purpose: upstream with an untrusted certificate}
`

func newInterceptHarness(t *testing.T, mode Mode) *interceptHarness {
	t.Helper()
	ih := &interceptHarness{}
	upRoot, upRootKey := newTestRoot(t)
	leafCert := newTestLeaf(t, upRoot, upRootKey,
		"svc.example.com", "open.example.com", "both.example.com", "outside.example.net", "api.hosts.example.com")
	ih.upLeaf = leafCert.Certificate[0]
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ih.mu.Lock()
		ih.seen = append(ih.seen, r.Host+" "+r.URL.RequestURI())
		ih.mu.Unlock()
		fmt.Fprintf(w, "upstream: %s %s", r.Method, r.URL.RequestURI())
	}))
	up.TLS = &tls.Config{Certificates: []tls.Certificate{leafCert}}
	up.StartTLS()
	t.Cleanup(up.Close)
	bad := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the untrusted upstream was sent %s %s", r.Method, r.URL)
	}))
	t.Cleanup(bad.Close)
	ih.upPort, ih.badPort = portOf(t, up.Listener.Addr()), portOf(t, bad.Listener.Addr())

	dir := filepath.Join(t.TempDir(), "ca")
	var patterns []certs.HostPattern
	for _, s := range []string{"svc.example.com", "both.example.com", "bad.example.com", "*.hosts.example.com", "paths.example.com"} {
		p, err := certs.ParseHostPattern(s)
		if err != nil {
			t.Fatal(err)
		}
		patterns = append(patterns, p)
	}
	if _, err := certs.Init(dir, patterns, false); err != nil {
		t.Fatal(err)
	}
	ca, err := certs.LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	minter, err := certs.NewMinter(ca, 16)
	if err != nil {
		t.Fatal(err)
	}
	hostsPattern, _ := certs.ParseHostPattern("*.hosts.example.com")
	upRoots := x509.NewCertPool()
	upRoots.AddCert(upRoot)
	ih.caPath = filepath.Join(dir, certs.CertFile)
	ih.egretCA = readCertPEM(t, ih.caPath)
	ih.clientCAs = x509.NewCertPool()
	ih.clientCAs.AddCert(ih.egretCA)
	ih.clientCAs.AddCert(upRoot)

	loop := netip.MustParseAddr("127.0.0.1")
	ih.harness = newHarness(t, harnessOpts{
		extraRules: fmt.Sprintf(interceptRules, ih.upPort, ih.badPort),
		mutate: func(r *Rules) {
			for _, n := range []string{"svc.example.com", "open.example.com", "both.example.com", "outside.example.net", "api.hosts.example.com", "bad.example.com"} {
				r.Pins[n] = loop
			}
			r.Default.Mode = mode
			r.Intercept = &Intercept{Minter: minter, Hosts: []certs.HostPattern{hostsPattern}, UpstreamRoots: upRoots}
		},
	})
	return ih
}

// tunnel opens CONNECT name:port through egret and completes a TLS
// handshake trusting clientCAs.
func (ih *interceptHarness) tunnel(name string, port int) (*tls.Conn, *bufio.Reader) {
	t := ih.t
	t.Helper()
	c, err := net.Dial("tcp", ih.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	authority := net.JoinHostPort(name, fmt.Sprint(port))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", authority, authority)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil) // egret sends nothing after the 200 until the client speaks
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT %s: %v %v", authority, resp, err)
	}
	tc := tls.Client(c, &tls.Config{ServerName: name, RootCAs: ih.clientCAs})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS through the tunnel to %s: %v", authority, err)
	}
	return tc, bufio.NewReader(tc)
}

// do sends a raw request inside a tunnel and reads the response.
func do(t *testing.T, tc *tls.Conn, br *bufio.Reader, req string) (*http.Response, string) {
	t.Helper()
	if _, err := io.WriteString(tc, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("response to %q: %v", req, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

// issuedByEgret reports whether the tunnel's peer certificate chains to
// egret's CA rather than being the upstream's own.
func (ih *interceptHarness) issuedByEgret(tc *tls.Conn) bool {
	st := tc.ConnectionState()
	chain := st.VerifiedChains[0]
	return chain[len(chain)-1].Equal(ih.egretCA) && !bytes.Equal(st.PeerCertificates[0].Raw, ih.upLeaf)
}

// line waits up to 5 s for a decision log line for which match holds.
func (ih *interceptHarness) line(desc string, match func(map[string]any) bool) map[string]any {
	ih.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, l := range parseLines(ih.t, ih.logBuf.String()) {
			if match(l) {
				return l
			}
		}
		if time.Now().After(deadline) {
			ih.t.Fatalf("no decision log line %s in:\n%s", desc, ih.logBuf.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func requestLine(method, path string) func(map[string]any) bool {
	return func(l map[string]any) bool {
		return l["msg"] == "decision" && l["method"] == method && l["path"] == path
	}
}

func TestInterceptAllowsPathsUnderPrefixes(t *testing.T) {
	ih := newInterceptHarness(t, ModeEnforce)
	tc, br := ih.tunnel("svc.example.com", ih.upPort)
	if !ih.issuedByEgret(tc) {
		t.Fatal("the client did not see egret's leaf in an intercepted tunnel")
	}
	host := fmt.Sprintf("svc.example.com:%d", ih.upPort)
	for _, path := range []string{"/allowed", "/allowed/x?q=1", "/maven2/org/x.jar", "/%61llowed/x"} {
		resp, body := do(t, tc, br, "GET "+path+" HTTP/1.1\r\nHost: "+host+"\r\n\r\n")
		if resp.StatusCode != 200 || body != "upstream: GET "+path {
			t.Errorf("GET %s: %d %q", path, resp.StatusCode, body)
		}
	}
	l := ih.line("for GET /maven2/org/x.jar", requestLine("GET", "/maven2/org/x.jar"))
	wantFields(t, l, map[string]any{
		"decision": "allow", "reason": "rule", "rule": "svc.example.com", "product": "test",
		"host": "svc.example.com", "port": ih.upPort, "sni": "svc.example.com", "listener": "explicit", "ip": "127.0.0.1",
	})
	connect := ih.line("for the CONNECT", func(l map[string]any) bool { return l["method"] == "CONNECT" })
	if _, unenforced := connect["paths"]; unenforced {
		t.Errorf("an intercepted tunnel is logged with paths unenforced: %v", connect)
	}
	ih.mu.Lock()
	defer ih.mu.Unlock()
	for _, s := range ih.seen {
		if !strings.HasPrefix(s, host+" ") {
			t.Errorf("upstream saw Host %q, want %s", s, host)
		}
	}
}

func TestInterceptDeniesPathsOutsidePrefixes(t *testing.T) {
	ih := newInterceptHarness(t, ModeEnforce)
	tc, br := ih.tunnel("svc.example.com", ih.upPort)
	host := fmt.Sprintf("svc.example.com:%d", ih.upPort)
	for _, tt := range []struct{ raw, logged string }{
		{"/other", "/other"},
		{"/allowedx", "/allowedx"},
		{"/allowed/../secret", "/secret"},
		{"/allowed/%2e%2e/secret", "/secret"},
		{"/allowed%2fx", "/allowed%2fx"},
		{"/", "/"},
	} {
		resp, body := do(t, tc, br, "GET "+tt.raw+" HTTP/1.1\r\nHost: "+host+"\r\n\r\n")
		if resp.StatusCode != 403 || resp.Header.Get("X-Egret-Reason") != "path" || !strings.Contains(body, "(path)") {
			t.Errorf("GET %s: %d %q %q, want 403 path", tt.raw, resp.StatusCode, resp.Header.Get("X-Egret-Reason"), body)
		}
		l := ih.line("for GET "+tt.raw, requestLine("GET", tt.logged))
		wantFields(t, l, map[string]any{
			"decision": "deny", "reason": "path", "rule": "svc.example.com", "host": "svc.example.com",
			"sni": "svc.example.com", "path": tt.logged, "status": 403,
		})
	}
	// The tunnel carries on: the next request is decided on its own.
	if resp, _ := do(t, tc, br, "GET /allowed HTTP/1.1\r\nHost: "+host+"\r\n\r\n"); resp.StatusCode != 200 {
		t.Errorf("allowed request after denials: %d", resp.StatusCode)
	}
	ih.mu.Lock()
	defer ih.mu.Unlock()
	if len(ih.seen) != 1 {
		t.Errorf("upstream saw %q, want only the allowed request", ih.seen)
	}
}

func TestInterceptDeniesFrontedHost(t *testing.T) {
	ih := newInterceptHarness(t, ModeEnforce)
	tc, br := ih.tunnel("svc.example.com", ih.upPort)
	p := ih.upPort
	for _, tt := range []struct{ name, req, loggedHost string }{
		{"other allowed name", fmt.Sprintf("GET /allowed HTTP/1.1\r\nHost: open.example.com:%d\r\n\r\n", p), "open.example.com"},
		{"absolute URL", fmt.Sprintf("GET https://open.example.com:%d/allowed HTTP/1.1\r\nHost: svc.example.com:%d\r\n\r\n", p, p), "open.example.com"},
		{"other port", fmt.Sprintf("GET /allowed HTTP/1.1\r\nHost: svc.example.com:%d\r\n\r\n", p+1), "svc.example.com"},
		{"no port means 443", "GET /allowed HTTP/1.1\r\nHost: svc.example.com\r\n\r\n", "svc.example.com"},
		{"no Host", "GET /allowed HTTP/1.1\r\n\r\n", ""},
	} {
		resp, _ := do(t, tc, br, tt.req)
		if resp.StatusCode != 403 || resp.Header.Get("X-Egret-Reason") != "host-mismatch" {
			t.Errorf("%s: %d %q, want 403 host-mismatch", tt.name, resp.StatusCode, resp.Header.Get("X-Egret-Reason"))
		}
	}
	l := ih.line("for the fronted Host", func(l map[string]any) bool {
		return l["reason"] == "host-mismatch" && l["host"] == "open.example.com"
	})
	wantFields(t, l, map[string]any{"decision": "deny", "sni": "svc.example.com", "path": "/allowed", "method": "GET"})
	// Same name in another spelling is the same name.
	req := fmt.Sprintf("GET /allowed HTTP/1.1\r\nHost: SVC.Example.COM.:%d\r\n\r\n", p)
	if resp, _ := do(t, tc, br, req); resp.StatusCode != 200 {
		t.Errorf("Host in another spelling: %d", resp.StatusCode)
	}
	ih.mu.Lock()
	defer ih.mu.Unlock()
	if len(ih.seen) != 1 {
		t.Errorf("upstream saw %q, want only the last request", ih.seen)
	}
}

// A tunnel whose deciding rule has no paths is spliced: the client sees
// the upstream's own certificate. That holds for a name that also has a
// rule with paths (the rule without paths decides), and a path rule's
// name outside the CA's constraints stays spliced with paths unenforced.
func TestInterceptLeavesOtherTunnelsUntouched(t *testing.T) {
	ih := newInterceptHarness(t, ModeEnforce)
	for _, tt := range []struct{ name, paths string }{
		{"open.example.com", ""},
		{"both.example.com", ""},
		{"outside.example.net", "unenforced"},
	} {
		tc, br := ih.tunnel(tt.name, ih.upPort)
		got := sha256.Sum256(tc.ConnectionState().PeerCertificates[0].Raw)
		if want := sha256.Sum256(ih.upLeaf); got != want {
			t.Errorf("%s: the client saw certificate %x, want the upstream's own %x", tt.name, got[:8], want[:8])
		}
		resp, body := do(t, tc, br, fmt.Sprintf("GET /anything HTTP/1.1\r\nHost: %s:%d\r\n\r\n", tt.name, ih.upPort))
		if resp.StatusCode != 200 || body != "upstream: GET /anything" {
			t.Errorf("%s: %d %q", tt.name, resp.StatusCode, body)
		}
		l := ih.line("for CONNECT "+tt.name, func(l map[string]any) bool { return l["method"] == "CONNECT" && l["host"] == tt.name })
		if fmt.Sprint(l["paths"]) != tt.paths && !(tt.paths == "" && l["paths"] == nil) {
			t.Errorf("%s: paths %v, want %q", tt.name, l["paths"], tt.paths)
		}
	}
	if n := len(parseLines(t, ih.logBuf.String())); n > 3+3 { // a decision and at most a close line per tunnel
		t.Errorf("%d log lines: requests inside a spliced tunnel were decided:\n%s", n, ih.logBuf.String())
	}
}

func TestInterceptHostPatternFromFlag(t *testing.T) {
	ih := newInterceptHarness(t, ModeEnforce)
	tc, br := ih.tunnel("api.hosts.example.com", ih.upPort)
	if !ih.issuedByEgret(tc) {
		t.Fatal("a name matching --intercept-host was not intercepted")
	}
	resp, _ := do(t, tc, br, fmt.Sprintf("GET /v1/things HTTP/1.1\r\nHost: api.hosts.example.com:%d\r\n\r\n", ih.upPort))
	if resp.StatusCode != 200 {
		t.Fatalf("GET: %d", resp.StatusCode)
	}
	wantFields(t, ih.line("for GET /v1/things", requestLine("GET", "/v1/things")), map[string]any{
		"decision": "allow", "rule": "api.hosts.example.com", "sni": "api.hosts.example.com",
	})
}

func TestInterceptRefusesUntrustedUpstream(t *testing.T) {
	ih := newInterceptHarness(t, ModeEnforce)
	tc, br := ih.tunnel("bad.example.com", ih.badPort)
	resp, body := do(t, tc, br, fmt.Sprintf("GET /allowed HTTP/1.1\r\nHost: bad.example.com:%d\r\n\r\n", ih.badPort))
	if resp.StatusCode != 502 || resp.Header.Get("X-Egret-Reason") != "upstream-tls" || strings.Contains(body, "x509") {
		t.Fatalf("GET through an untrusted upstream: %d %q %q, want 502 upstream-tls without internals", resp.StatusCode, resp.Header.Get("X-Egret-Reason"), body)
	}
	l := ih.line("closing the refused request", func(l map[string]any) bool { return l["msg"] == "close" && l["method"] == "GET" })
	wantFields(t, l, map[string]any{"reason": "upstream-tls", "status": 502, "sni": "bad.example.com", "path": "/allowed"})
	if !strings.Contains(fmt.Sprint(l["error"]), "certificate") {
		t.Errorf("close line error %v does not say why", l["error"])
	}
}

func TestInterceptClientNotTrustingCA(t *testing.T) {
	ih := newInterceptHarness(t, ModeEnforce)
	c, err := net.Dial("tcp", ih.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	authority := fmt.Sprintf("svc.example.com:%d", ih.upPort)
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", authority, authority)
	if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	tc := tls.Client(c, &tls.Config{ServerName: "svc.example.com", RootCAs: x509.NewCertPool()})
	if err := tc.Handshake(); err == nil {
		t.Fatal("a client trusting nothing accepted egret's leaf")
	}
	l := ih.line("closing the tunnel", func(l map[string]any) bool { return l["msg"] == "close" && l["method"] == "CONNECT" })
	if !strings.Contains(fmt.Sprint(l["error"]), "client TLS handshake") {
		t.Errorf("close line %v does not say the handshake failed", l)
	}
}

// A client may send its ClientHello in the same write as the CONNECT,
// before egret's 200: those bytes must reach the TLS server.
func TestInterceptClientHelloWithConnect(t *testing.T) {
	ih := newInterceptHarness(t, ModeEnforce)
	c, err := net.Dial("tcp", ih.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	authority := fmt.Sprintf("svc.example.com:%d", ih.upPort)
	early := &eagerConn{Conn: c, br: bufio.NewReader(c),
		prefix: []byte(fmt.Sprintf("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", authority, authority))}
	tc := tls.Client(early, &tls.Config{ServerName: "svc.example.com", RootCAs: ih.clientCAs})
	br := bufio.NewReader(tc)
	resp, body := do(t, tc, br, "GET /allowed HTTP/1.1\r\nHost: "+authority+"\r\n\r\n")
	if resp.StatusCode != 200 || body != "upstream: GET /allowed" {
		t.Fatalf("GET: %d %q", resp.StatusCode, body)
	}
	if !early.sentTogether {
		t.Fatal("the CONNECT and the ClientHello did not go in one write")
	}
}

// eagerConn sends prefix (a CONNECT) in the same write as the first bytes
// written (the ClientHello), and reads past the proxy's response first.
type eagerConn struct {
	net.Conn
	br           *bufio.Reader
	prefix       []byte
	sentTogether bool
	readResponse bool
}

func (c *eagerConn) Write(p []byte) (int, error) {
	if c.prefix != nil {
		buf := append(c.prefix, p...)
		c.prefix = nil
		if _, err := c.Conn.Write(buf); err != nil {
			return 0, err
		}
		c.sentTogether = true
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func (c *eagerConn) Read(p []byte) (int, error) {
	if !c.readResponse {
		c.readResponse = true
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			return 0, err
		}
		if resp.StatusCode != 200 {
			return 0, fmt.Errorf("CONNECT: %s", resp.Status)
		}
	}
	return c.br.Read(p)
}

// curl (another TLS stack) trusting only ca.pem accepts egret's leaf: the
// name-constrained CA works beyond Go.
func TestInterceptWithCurl(t *testing.T) {
	ih := newInterceptHarness(t, ModeEnforce)
	base := fmt.Sprintf("https://svc.example.com:%d", ih.upPort)
	out, errOut, code := runCurl(t, "-x", "http://"+ih.addr, "--cacert", ih.caPath, base+"/allowed/x")
	if code != 0 || out != "upstream: GET /allowed/x" {
		t.Fatalf("curl allowed path: exit %d, %q %q", code, out, errOut)
	}
	out, errOut, code = runCurl(t, "-x", "http://"+ih.addr, "--cacert", ih.caPath, "-o", "/dev/null", "-w", "%{http_code}", base+"/other")
	if code != 0 || out != "403" {
		t.Fatalf("curl denied path: exit %d, %q %q", code, out, errOut)
	}
}

// Plain HTTP sent through a CONNECT to a path rule's name is decided
// request by request too, without TLS.
func TestInterceptPlainHTTPInConnect(t *testing.T) {
	ih := newInterceptHarness(t, ModeEnforce)
	authority := fmt.Sprintf("paths.example.com:%d", ih.httpPort)
	c, err := net.Dial("tcp", ih.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", authority, authority)
	br := bufio.NewReader(c)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	for path, want := range map[string]int{"/allowed/x": 200, "/other": 403} {
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, authority)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want || (want == 200 && string(body) != "http upstream: GET /allowed/x ") {
			t.Errorf("GET %s: %d %q, want %d", path, resp.StatusCode, body, want)
		}
	}
	l := ih.line("for GET /other", requestLine("GET", "/other"))
	wantFields(t, l, map[string]any{"decision": "deny", "reason": "path", "host": "paths.example.com"})
	if _, ok := l["sni"]; ok {
		t.Errorf("plain HTTP logged with sni: %v", l)
	}
}

func TestInterceptReportModeForwardsWouldDeny(t *testing.T) {
	ih := newInterceptHarness(t, ModeReport)
	tc, br := ih.tunnel("svc.example.com", ih.upPort)
	resp, body := do(t, tc, br, fmt.Sprintf("GET /other HTTP/1.1\r\nHost: svc.example.com:%d\r\n\r\n", ih.upPort))
	if resp.StatusCode != 200 || body != "upstream: GET /other" {
		t.Fatalf("report mode: %d %q", resp.StatusCode, body)
	}
	wantFields(t, ih.line("for GET /other", requestLine("GET", "/other")), map[string]any{
		"decision": "would-deny", "reason": "path", "mode": "report", "sni": "svc.example.com",
	})
}

func newTestRoot(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test upstream root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert, key
}

func newTestLeaf(t *testing.T, root *x509.Certificate, rootKey *ecdsa.PrivateKey, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root, key.Public(), rootKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func readCertPEM(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("%s: no CERTIFICATE block", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}
