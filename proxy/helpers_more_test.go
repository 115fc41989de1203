package proxy

import (
	"bufio"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/egret-proxy/egret/allowlists"
)

// Helpers shared by the *_more_test.go files.

// basicAuth returns a Basic Proxy-Authorization value.
func basicAuth(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// checkSecret compares in constant time, as Client.CheckPassword must.
func checkSecret(want string) func(string) bool {
	return func(got string) bool {
		return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
	}
}

// connectorClient is the credentialed client of the auth tests.
func connectorClient(t *testing.T, r *Rules) Client {
	t.Helper()
	id, err := r.Policy.Identity("connector", "test")
	if err != nil {
		t.Fatal(err)
	}
	return Client{Name: "connector", Username: "connector", CheckPassword: checkSecret("secret"), Identity: id}
}

// recompile returns the harness policy compiled again with settings, and
// the default identity in it.
func recompile(t *testing.T, pol *allowlists.Policy, s allowlists.Settings) (*allowlists.Policy, allowlists.Identity) {
	t.Helper()
	p, _, err := allowlists.Compile(pol.Catalog(), s)
	if err != nil {
		t.Fatal(err)
	}
	id, err := p.Identity("default", "test")
	if err != nil {
		t.Fatal(err)
	}
	return p, id
}

// policyFrom compiles a one-product policy from YAML proxy rules (each
// line "  - {...}") and returns it with the identity "default".
func policyFrom(t *testing.T, rules string, s allowlists.Settings) (*allowlists.Policy, allowlists.Identity) {
	t.Helper()
	doc := "product: test\nsource: test\nproxy:\n" + rules + "\n"
	f, err := allowlists.ParseFile("more.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	cat, err := allowlists.NewCatalog(f)
	if err != nil {
		t.Fatal(err)
	}
	p, _, err := allowlists.Compile(cat, s)
	if err != nil {
		t.Fatal(err)
	}
	id, err := p.Identity("default", "test")
	if err != nil {
		t.Fatal(err)
	}
	return p, id
}

// swapRules installs a copy of the rules in force, adjusted by change.
func swapRules(h *harness, change func(*Rules)) {
	nr := *h.srv.Rules()
	change(&nr)
	h.srv.SetRules(&nr)
}

// rawConn is a client connection to the proxy with a deadline.
type rawConn struct {
	net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{Conn: c, br: bufio.NewReader(c)}
}

func (c *rawConn) send(t *testing.T, s string) {
	t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatal(err)
	}
}

// response reads one response to a request with the given method and its
// whole body.
func (c *rawConn) response(t *testing.T, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading a response: %v", err)
	}
	if method == http.MethodConnect && resp.StatusCode == 200 {
		return resp, ""
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading a body: %v", err)
	}
	resp.Body.Close()
	return resp, string(body)
}

// connect sends CONNECT target (with extra header lines, each ending in
// \r\n) and reads the answer.
func (c *rawConn) connect(t *testing.T, target, extra string) (*http.Response, string) {
	t.Helper()
	c.send(t, "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\n"+extra+"\r\n")
	return c.response(t, http.MethodConnect)
}

// closedWithin reports whether the peer closes c (read returns EOF or a
// reset) within d; bytes read meanwhile are returned.
func closedWithin(c net.Conn, r io.Reader, d time.Duration) (bool, string) {
	c.SetReadDeadline(time.Now().Add(d))
	var got strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return false, got.String()
			}
			return true, got.String()
		}
	}
}

// linesWith returns the log lines whose fields have the given values.
func linesWith(lines []map[string]any, want map[string]any) []map[string]any {
	var out []map[string]any
next:
	for _, l := range lines {
		for k, v := range want {
			if fmt.Sprint(l[k]) != fmt.Sprint(v) {
				continue next
			}
		}
		out = append(out, l)
	}
	return out
}

// waitLines waits up to 5 s for at least one log line (in buf) with the
// given fields and returns all such lines.
func waitLines(t *testing.T, buf *syncBuffer, want map[string]any) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := linesWith(parseLines(t, buf.String()), want)
		if len(got) > 0 {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("no decision log line with %v in:\n%s", want, buf.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// freePort returns a loopback port nothing listens on (listen, close).
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := portOf(t, l.Addr())
	l.Close()
	return p
}

// silentUpstream accepts connections, reads what they send and never
// answers. It returns its port.
func silentUpstream(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go io.Copy(io.Discard, c)
		}
	}()
	return portOf(t, l.Addr())
}

func bufioReader(s string) *bufio.Reader { return bufio.NewReader(strings.NewReader(s)) }
