package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/egret-proxy/egret/allowlists"
)

// harness is a running egret explicit listener on loopback with real TLS
// and plain HTTP upstreams behind it. The upstreams answer for the name
// example.com (the httptest certificate's name), pinned to 127.0.0.1.
type harness struct {
	t        *testing.T
	srv      *Server
	addr     string // the proxy's listen address
	tlsAddr  string // the HTTPS proxy listener's address, with opts.tls
	tlsUp    *httptest.Server
	httpUp   *httptest.Server
	tlsPort  int
	httpPort int
	logBuf   *syncBuffer
	lastHost chan http.Header // headers the plain upstream saw
}

type harnessOpts struct {
	extraRules string       // more YAML proxy rules (indented under proxy:)
	mutate     func(*Rules) // adjust the rules before serving
	log        io.Writer    // decision log writer (default: a buffer)
	server     []Option     // NewServer options
	// tls, when set, also serves the explicit proxy over TLS with it, on
	// h.tlsAddr.
	tls *tls.Config
}

func newHarness(t *testing.T, opts harnessOpts) *harness {
	t.Helper()
	h := &harness{t: t, logBuf: &syncBuffer{}, lastHost: make(chan http.Header, 16)}
	h.tlsUp = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tls upstream: %s %s", r.Method, r.URL.Path)
	}))
	t.Cleanup(h.tlsUp.Close)
	h.httpUp = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hdr := r.Header.Clone()
		hdr.Set("Host", r.Host)
		select {
		case h.lastHost <- hdr:
		default:
		}
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "http upstream: %s %s %s", r.Method, r.URL.RequestURI(), body)
	}))
	t.Cleanup(h.httpUp.Close)
	h.tlsPort = portOf(t, h.tlsUp.Listener.Addr())
	h.httpPort = portOf(t, h.httpUp.Listener.Addr())

	doc := fmt.Sprintf(`
product: test
source: test
proxy:
  - {host: example.com, ports: [%d, %d], purpose: the test upstreams}
  - {host: paths.example.com, ports: [%d], paths: [/allowed], purpose: path rule}
%s`, h.tlsPort, h.httpPort, h.httpPort, opts.extraRules)
	f, err := allowlists.ParseFile("test.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	cat, err := allowlists.NewCatalog(f)
	if err != nil {
		t.Fatal(err)
	}
	pol, _, err := allowlists.Compile(cat, allowlists.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	id, err := pol.Identity("default", "test")
	if err != nil {
		t.Fatal(err)
	}
	loop := netip.MustParseAddr("127.0.0.1")
	r := &Rules{
		Policy:  pol,
		Default: Client{Name: "default", Identity: id},
		Guard:   Guard{AllowRanges: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}},
		Pins:    map[string]netip.Addr{"example.com": loop, "paths.example.com": loop, "denied.example": loop},
	}
	if opts.mutate != nil {
		opts.mutate(r)
	}
	var w io.Writer = h.logBuf
	if opts.log != nil {
		w = opts.log
	}
	h.srv = NewServer(NewDecisionLog(w, nil), r, opts.server...)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	r.Guard.Self = []netip.AddrPort{netip.MustParseAddrPort(h.addr)}
	go h.srv.ServeExplicit(ln)
	t.Cleanup(func() { ln.Close() })
	if opts.tls != nil {
		tln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		h.tlsAddr = tln.Addr().String()
		r.Guard.Self = append(r.Guard.Self, netip.MustParseAddrPort(h.tlsAddr))
		go h.srv.ServeExplicitTLS(tln, opts.tls)
		t.Cleanup(func() { tln.Close() })
	}
	return h
}

func portOf(t *testing.T, a net.Addr) int {
	t.Helper()
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		t.Fatal(err)
	}
	return int(ap.Port())
}

// client returns an HTTP client that uses the proxy (with optional
// credentials) and trusts the TLS upstream.
func (h *harness) client(user, pass string) *http.Client {
	pu := &url.URL{Scheme: "http", Host: h.addr}
	if user != "" {
		pu.User = url.UserPassword(user, pass)
	}
	pool := x509.NewCertPool()
	pool.AddCert(h.tlsUp.Certificate())
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			Proxy:           http.ProxyURL(pu),
			TLSClientConfig: &tls.Config{RootCAs: pool},
		},
	}
}

// raw sends bytes to the proxy on a fresh connection and returns the first
// response.
func (h *harness) raw(req string) *http.Response {
	h.t.Helper()
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		h.t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		h.t.Fatalf("reading the response to %q: %v", req, err)
	}
	return resp
}

// lines returns the decision log lines parsed, waiting up to 5 s for at
// least n of them (close lines are written after the response).
func (h *harness) lines(n int) []map[string]any {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		out := parseLines(h.t, h.logBuf.String())
		if len(out) >= n || time.Now().After(deadline) {
			if len(out) < n {
				h.t.Fatalf("decision log has %d lines, want %d:\n%s", len(out), n, h.logBuf.String())
			}
			return out
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func parseLines(t *testing.T, s string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("decision log line is not JSON: %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// wantFields checks fields of a decision log line.
func wantFields(t *testing.T, line map[string]any, want map[string]any) {
	t.Helper()
	for k, v := range want {
		got, ok := line[k]
		if !ok {
			t.Errorf("log line lacks %q: %v", k, line)
			continue
		}
		if fmt.Sprint(got) != fmt.Sprint(v) {
			t.Errorf("log %s = %v, want %v (line %v)", k, got, v, line)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the server's writes and the
// test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
