package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServeBehindHAProxy is the gateway behind a load balancer: a real
// HAProxy in TCP mode with `send-proxy-v2` in front of the built binary,
// as an AWS NLB or a Kubernetes LoadBalancer with PROXY protocol would be.
// The client connects from 127.0.0.2, HAProxy from 127.0.0.1; egret must
// identify, decide and log the client by 127.0.0.2, and refuse a PROXY
// header from anyone but the load balancer and a connection from the load
// balancer without one.
func TestServeBehindHAProxy(t *testing.T) {
	haproxy, err := exec.LookPath("haproxy")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("haproxy is not installed (Debian: haproxy)")
		}
		t.Skip("haproxy is not installed")
	}
	if out, err := exec.Command(haproxy, "-c", "-f", filepath.Join(repoRoot, "deploy", "haproxy", "haproxy.cfg")).CombinedOutput(); err != nil {
		t.Errorf("deploy/haproxy/haproxy.cfg: %v\n%s", err, out)
	}
	_, port := upstream(t)
	config := "product: []\nclients:\n  - {name: behind-lb, sources: [127.0.0.2/32], products: [local]}\n"
	s := startServe(t, config, port, "--proxy-protocol-from", "127.0.0.1/32")

	lb := freeAddr(t)
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`global
  maxconn 100
defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend lb
  bind %s
  default_backend egret
backend egret
  server egret %s send-proxy-v2 source 127.0.0.1
`, lb, s.proxy)), 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	hp := exec.CommandContext(ctx, haproxy, "-db", "-f", cfg)
	var hpOut strings.Builder
	hp.Stdout, hp.Stderr = &hpOut, &hpOut
	if err := hp.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hp.Process.Kill(); hp.Wait() })
	s.waitFor(func() bool {
		c, err := net.DialTimeout("tcp", lb, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, "haproxy listening")

	from := func(ip string) *net.Dialer {
		return &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	}
	connect := func(c net.Conn, target string) int {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
		resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "CONNECT"})
		if err != nil {
			t.Fatalf("CONNECT %s: %v\nhaproxy: %s", target, err, hpOut.String())
		}
		return resp.StatusCode
	}

	// Through the load balancer: the real client is 127.0.0.2.
	c, err := from("127.0.0.2").Dial("tcp", lb)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	clientAddr := c.LocalAddr().String()
	if got := connect(c, fmt.Sprintf("example.com:%d", port)); got != 200 {
		t.Fatalf("through HAProxy: %d, want 200\n%s", got, s.stdout.String())
	}
	s.waitFor(func() bool {
		return strings.Contains(s.stdout.String(), `"client":"`+clientAddr+`","identity":"behind-lb"`)
	}, "an allow line with the real client "+clientAddr+" and its identity")

	// Straight to egret from 127.0.0.2 with a forged header: refused.
	c2, err := from("127.0.0.2").Dial("tcp", s.proxy)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	fmt.Fprintf(c2, "PROXY TCP4 10.0.1.7 127.0.0.1 40000 3128\r\n")
	if got := connect(c2, fmt.Sprintf("example.com:%d", port)); got != 400 {
		t.Errorf("a PROXY header from outside --proxy-protocol-from: %d, want 400", got)
	}
	// From the load balancer's address without a header: refused too.
	c3, err := from("127.0.0.1").Dial("tcp", s.proxy)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if got := connect(c3, fmt.Sprintf("example.com:%d", port)); got != 400 {
		t.Errorf("no PROXY header from the load balancer: %d, want 400", got)
	}
	s.waitFor(func() bool { return strings.Count(s.stdout.String(), `"reason":"bad-request"`) == 2 }, "two bad-request lines")
	if strings.Contains(s.stdout.String(), "10.0.1.7") {
		t.Errorf("the forged client address reached the log:\n%s", s.stdout.String())
	}
	for _, want := range []string{"proxyproto"} {
		if !strings.Contains(s.stdout.String(), want) {
			t.Errorf("the refusals do not say why (%q):\n%s", want, s.stdout.String())
		}
	}
}
