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

// The built binary behind a real redirect, with a real browser:
// `egret serve --transparent :3129 [--ech outer-sni]` in a gateway
// namespace (deploy/nftables.sh in segment mode), headless Chromium in the
// client namespace. Chromium offers GREASE ECH in every hello: the page
// loads with --ech outer-sni and is denied ech without it. Chromium
// resolves nothing (--host-resolver-rules); egret resolves example.com
// with --resolve.
func TestServeECHOuterSNIWithChromium(t *testing.T) {
	netnstest.Require(t, "nft", netnstest.Chromium)
	bin := egretBinary(t)
	tb := netnstest.New(t)
	script, err := filepath.Abs(filepath.Join("..", "..", "deploy", "nftables.sh"))
	if err != nil {
		t.Fatal(err)
	}
	netnstest.Run(t, "ip", "netns", "exec", tb.Gateway, script, "--mode", "segment", "--interface", "vgw", "--port", "3129", "apply")
	up := upstream443In(t, tb.Gateway)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "allowlists"), 0o755)
	policy := "product: local\ntitle: the test upstream\nsource: test\nproxy:\n  - {host: example.com, ports: [443], purpose: test upstream}\n"
	os.WriteFile(filepath.Join(dir, "allowlists", "local.yaml"), []byte(policy), 0o644)

	for _, tc := range []struct {
		name   string
		flags  []string
		loads  bool
		reason string
	}{
		{"--ech outer-sni", []string{"--ech", "outer-sni"}, true, "rule"},
		{"default ech deny", nil, false, "ech"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"serve", "--transparent", ":3129", "--listen", "127.0.0.1:3128", "--admin", "",
				"--allowlists", filepath.Join(dir, "allowlists"), "--product", "local",
				"--allow-range", "127.0.0.0/8", "--resolve", "example.com=127.0.0.1"}, tc.flags...)
			stdout, stderr := &lockedBuffer{}, &lockedBuffer{}
			cmd := netnstest.Cmd(tb.Gateway, append([]string{bin}, args...)...)
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

			load := func() string { return netnstest.ChromiumDOM(t, tb.Client, "example.com", "https://example.com/ech") }
			var dom string
			if tc.loads {
				dom = netnstest.ChromiumRetry(t, load)
			} else {
				dom = load()
			}
			if got := strings.Contains(dom, up); got != tc.loads {
				t.Errorf("page loaded: %v, want %v; DOM:\n%s\negret:\n%s", got, tc.loads, dom, stderr.String())
			}
			want := `"reason":"` + tc.reason + `"`
			s.waitFor(func() bool {
				for line := range strings.Lines(stdout.String()) {
					if strings.Contains(line, `"msg":"decision"`) && strings.Contains(line, `"sni":"example.com"`) && strings.Contains(line, want) &&
						strings.Contains(line, `"ech":"outer-sni"`) == tc.loads {
						return true
					}
				}
				return false
			}, "the browser's decision line with "+want)
		})
	}
}

// upstream443In serves HTTPS on 127.0.0.1:443 inside namespace ns and
// returns the text of its page.
func upstream443In(t *testing.T, ns string) string {
	t.Helper()
	const page = "upstream for the browser"
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, page) }))
	netnstest.In(t, ns, func() {
		l, err := net.Listen("tcp4", "127.0.0.1:443")
		if err != nil {
			t.Fatal(err)
		}
		srv.Listener.Close()
		srv.Listener = l
	})
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return page
}
