package main

import (
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
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
//
// With --transparent-tproxy the same client is delivered by a TPROXY rule
// (LISTENERS.md's recipe) instead, and a connection straight to egret's
// port is refused as self.
func TestServeTransparentGateway(t *testing.T) {
	for _, delivery := range []string{"redirect", "tproxy"} {
		for _, firewall := range []string{"iptables", "nftables"} {
			t.Run(delivery+"/"+firewall, func(t *testing.T) {
				if firewall == "iptables" {
					netnstest.Require(t, "curl", "iptables", "ip6tables")
				} else {
					netnstest.Require(t, "curl", "nft")
				}
				testServeTransparentGateway(t, firewall, delivery == "tproxy")
			})
		}
	}
}

func testServeTransparentGateway(t *testing.T, firewall string, tproxy bool) {
	bin := egretBinary(t)
	tb := netnstest.New(t)
	delivery := []string{}
	if tproxy {
		tb.TProxy(firewall, 3129, 80, 443)
		delivery = []string{"--transparent-tproxy"}
	} else {
		// The redirect is the one operators install: deploy/<firewall>.sh in
		// segment mode on the gateway's interface towards the client.
		script, err := filepath.Abs(filepath.Join("..", "..", "deploy", firewall+".sh"))
		if err != nil {
			t.Fatal(err)
		}
		netnstest.Run(t, "ip", "netns", "exec", tb.Gateway, script, "--mode", "segment", "--interface", "vgw", "--port", "3129", "apply")
	}

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
	cmd := netnstest.Cmd(tb.Gateway, append([]string{bin, "serve", "--transparent", ":3129", "--listen", "127.0.0.1:3128",
		"--admin", "127.0.0.1:9090", "--allowlists", filepath.Join(dir, "allowlists"), "--product", "local",
		"--allow-range", "127.0.0.0/8", "--resolve", "example.com=127.0.0.1"}, delivery...)...)
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
	if tproxy != strings.Contains(stderr.String(), "(TPROXY)") {
		t.Errorf("stderr does not name the delivery:\n%s", stderr.String())
	}

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

	// Straight to egret's own port: not a destination egret proxies to.
	if out, code := tb.Curl("http://" + tb.GatewayAddr4 + ":3129/"); code == 0 {
		t.Errorf("a request straight to egret's port got an answer: %q", out)
	}
	want := map[string]string{ // host/method → decision
		"example.com TLS": "allow", "example.com GET": "allow",
		"denied.example TLS": "deny", "denied.example GET": "deny",
		tb.GatewayAddr4 + " ": "deny", // reason self: egret's own address
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
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		var ev struct{ Msg, Decision, Listener, Client, Host, Method, Reason string }
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("decision log line %q: %v", line, err)
		}
		if ev.Msg != "decision" {
			continue
		}
		key := ev.Host + " " + ev.Method
		if ev.Listener != "transparent" || !strings.HasPrefix(ev.Client, tb.ClientAddr4+":") || want[key] != ev.Decision ||
			(ev.Host == tb.GatewayAddr4) != (ev.Reason == "self") {
			t.Errorf("unexpected decision line %s", line)
		}
		delete(want, key)
	}
	if len(want) > 0 {
		t.Errorf("no decision line for %v:\n%s", want, stdout.String())
	}
}

// TestTProxyNeedsCapability: without CAP_NET_ADMIN and CAP_NET_RAW (both
// dropped from the bounding set, so even root lacks them after exec) the
// kernel refuses IP_TRANSPARENT, and egret refuses to start, naming both.
func TestTProxyNeedsCapability(t *testing.T) {
	netnstest.Require(t, "setpriv")
	bin := egretBinary(t)
	cmd := exec.Command("setpriv", "--bounding-set=-net_admin,-net_raw", bin, "serve", "--listen", "127.0.0.1:0", "--admin", "",
		"--transparent", "127.0.0.1:0", "--transparent-tproxy")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("want exit 2, got %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "setsockopt IP_TRANSPARENT: operation not permitted (a TPROXY listener needs CAP_NET_ADMIN or CAP_NET_RAW)") {
		t.Errorf("stderr does not say why:\n%s", out)
	}
}
