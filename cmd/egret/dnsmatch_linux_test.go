package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/egret-proxy/egret/internal/netnstest"
)

// The DNS door and the transparent listener of one egret serve, end to
// end: a client in a namespace resolves example.com through egret's DNS
// door, then connects to the answer; the redirect sends the connection to
// the transparent listener, whose line says "dns":"match". The same name
// on an address the door never handed out says "dns":"mismatch" (and is
// still allowed: --require-dns-match is off).
func TestServeDNSDoorFeedsTheTransparentMatch(t *testing.T) {
	netnstest.Require(t, "nft", "dig", "curl")
	bin := egretBinary(t)
	tb := netnstest.New(t)
	const other = "192.0.2.11"
	netnstest.Run(t, "ip", "netns", "exec", tb.Gateway, "ip", "addr", "add", other+"/32", "dev", "lo")
	script, err := filepath.Abs(filepath.Join("..", "..", "deploy", "nftables.sh"))
	if err != nil {
		t.Fatal(err)
	}
	netnstest.Run(t, "ip", "netns", "exec", tb.Gateway, script, "--mode", "segment", "--interface", "vgw", "--port", "3129", "apply")

	// The upstream egret dials: HTTPS on the answered address, in the gateway.
	const page = "upstream for the dns match"
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, page) }))
	netnstest.In(t, tb.Gateway, func() {
		l, err := net.Listen("tcp4", net.JoinHostPort(netnstest.Remote4, "443"))
		if err != nil {
			t.Fatal(err)
		}
		srv.Listener.Close()
		srv.Listener = l
	})
	srv.StartTLS()
	t.Cleanup(srv.Close)

	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "allowlists"), 0o755)
	policy := "product: local\ntitle: the test upstream\nsource: test\nproxy:\n  - {host: example.com, ports: [443], purpose: test upstream}\n"
	os.WriteFile(filepath.Join(dir, "allowlists", "local.yaml"), []byte(policy), 0o644)
	stdout, stderr := &lockedBuffer{}, &lockedBuffer{}
	cmd := netnstest.Cmd(tb.Gateway, bin, "serve", "--transparent", ":3129", "--listen", "127.0.0.1:3128", "--admin", "",
		"--dns", ":8053", "--dns-upstream", "127.0.0.1:9",
		"--allowlists", filepath.Join(dir, "allowlists"), "--product", "local",
		"--resolve", "example.com="+netnstest.Remote4, "--allow-range", netnstest.Remote4+"/32")
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	s := &served{t: t, cmd: cmd, stdout: stdout, stderr: stderr}
	s.waitFor(func() bool { return strings.Count(stderr.String(), "transparent listener on") == 2 }, "the transparent listeners")

	answer := netnstest.Run(t, "ip", "netns", "exec", tb.Client, "dig", "+short", "+tries=3", "+time=2",
		"-p", "8053", "@"+netnstest.Remote4, "example.com", "A")
	if strings.TrimSpace(answer) != netnstest.Remote4 {
		t.Fatalf("dig example.com through egret's DNS door: %q\n%s", answer, stderr.String())
	}
	for _, c := range []struct{ addr, dns string }{{netnstest.Remote4, "match"}, {other, "mismatch"}} {
		body, code := tb.Curl("-k", "--resolve", "example.com:443:"+c.addr, "https://example.com/")
		if code != 0 || body != page {
			t.Errorf("curl example.com at %s: exit %d, body %q\negret:\n%s", c.addr, code, body, stderr.String())
		}
		s.waitFor(func() bool {
			for line := range strings.Lines(stdout.String()) {
				if strings.Contains(line, `"listener":"transparent"`) && strings.Contains(line, `"msg":"decision"`) &&
					strings.Contains(line, `"dns":"`+c.dns+`"`) && strings.Contains(line, `"decision":"allow"`) {
					return true
				}
			}
			return false
		}, "a transparent decision line with dns "+c.dns)
	}
	if !strings.Contains(stdout.String(), `"listener":"dns"`) {
		t.Errorf("no DNS decision line:\n%s", stdout.String())
	}
}
