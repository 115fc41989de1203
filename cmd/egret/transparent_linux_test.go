package main

import (
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/egret-proxy/egret/internal/netnstest"
)

// The built binary as a gateway: `egret serve --transparent :3129` runs in
// a gateway namespace whose 80/443 from the client namespace are
// redirected to it by deploy/iptables.sh or deploy/nftables.sh; curl in the client namespace, configured with no
// proxy, reaches https://example.com and http://example.com on their own
// ports and is refused denied.example. The upstreams listen on 80 and 443
// of the gateway's loopback; egret resolves example.com there (--resolve).
func TestServeTransparentGateway(t *testing.T) {
	for _, firewall := range []string{"iptables", "nftables"} {
		t.Run(firewall, func(t *testing.T) {
			if firewall == "iptables" {
				netnstest.Require(t, "curl", "iptables", "ip6tables")
			} else {
				netnstest.Require(t, "curl", "nft")
			}
			testServeTransparentGateway(t, firewall)
		})
	}
}

func testServeTransparentGateway(t *testing.T, firewall string) {
	bin := egretBinary(t)
	tb := netnstest.New(t)
	// The redirect is the one operators install: deploy/<firewall>.sh in
	// segment mode on the gateway's interface towards the client.
	script, err := filepath.Abs(filepath.Join("..", "..", "deploy", firewall+".sh"))
	if err != nil {
		t.Fatal(err)
	}
	netnstest.Run(t, "ip", "netns", "exec", tb.Gateway, script, "--mode", "segment", "--interface", "vgw", "--port", "3129", "apply")

	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "upstream %s %s", r.Host, r.URL.Path)
	})
	tlsUp, plainUp := httptest.NewUnstartedServer(handler), httptest.NewUnstartedServer(handler)
	netnstest.In(t, tb.Gateway, func() {
		for _, u := range []struct {
			s    *httptest.Server
			port string
		}{{tlsUp, "443"}, {plainUp, "80"}} {
			l, err := net.Listen("tcp4", "127.0.0.1:"+u.port)
			if err != nil {
				t.Fatal(err)
			}
			u.s.Listener.Close()
			u.s.Listener = l
		}
	})
	tlsUp.StartTLS()
	plainUp.Start()
	t.Cleanup(tlsUp.Close)
	t.Cleanup(plainUp.Close)

	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "allowlists"), 0o755)
	policy := "product: local\ntitle: the test upstreams\nsource: test\nproxy:\n  - {host: example.com, ports: [80, 443], purpose: test upstreams}\n"
	os.WriteFile(filepath.Join(dir, "allowlists", "local.yaml"), []byte(policy), 0o644)
	caFile := filepath.Join(dir, "upstream.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsUp.Certificate().Raw}), 0o644)

	stdout, stderr := &lockedBuffer{}, &lockedBuffer{}
	cmd := netnstest.Cmd(tb.Gateway, bin, "serve", "--transparent", ":3129", "--listen", "127.0.0.1:3128",
		"--admin", "127.0.0.1:9090", "--allowlists", filepath.Join(dir, "allowlists"), "--product", "local",
		"--allow-range", "127.0.0.0/8", "--resolve", "example.com=127.0.0.1")
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	s := &served{t: t, cmd: cmd, stdout: stdout, stderr: stderr}
	s.waitFor(func() bool { return strings.Count(stderr.String(), "transparent listener on") == 2 }, "the IPv4 and IPv6 transparent listeners")

	if out, code := tb.Curl("--cacert", caFile, "--resolve", "example.com:443:"+netnstest.Remote4, "https://example.com/tls"); code != 0 || out != "upstream example.com /tls" {
		t.Errorf("https://example.com: exit %d, %q\n%s", code, out, stderr.String())
	}
	if out, code := tb.Curl("--resolve", "example.com:80:"+netnstest.Remote4, "http://example.com/plain"); code != 0 || out != "upstream example.com /plain" {
		t.Errorf("http://example.com: exit %d, %q", code, out)
	}
	if _, code := tb.Curl("--cacert", caFile, "--resolve", "denied.example:443:"+netnstest.Remote4, "https://denied.example/"); code == 0 {
		t.Error("https://denied.example got through")
	}
	if out, _ := tb.Curl("-i", "--resolve", "denied.example:80:"+netnstest.Remote4, "http://denied.example/"); !strings.HasPrefix(out, "HTTP/1.1 403") {
		t.Errorf("http://denied.example: %q", out)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("egret did not exit on SIGTERM")
	}

	// The decisions, one JSON line each, from the client namespace.
	want := map[string]string{ // host/method → decision
		"example.com TLS": "allow", "example.com GET": "allow",
		"denied.example TLS": "deny", "denied.example GET": "deny",
	}
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		var ev struct{ Msg, Decision, Listener, Client, Host, Method string }
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("decision log line %q: %v", line, err)
		}
		if ev.Msg != "decision" {
			continue
		}
		key := ev.Host + " " + ev.Method
		if ev.Listener != "transparent" || !strings.HasPrefix(ev.Client, tb.ClientAddr4+":") || want[key] != ev.Decision {
			t.Errorf("unexpected decision line %s", line)
		}
		delete(want, key)
	}
	if len(want) > 0 {
		t.Errorf("no decision line for %v:\n%s", want, stdout.String())
	}
}
