package main

import (
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/egret-proxy/egret/allowlists"
	"github.com/egret-proxy/egret/dns"
	"github.com/egret-proxy/egret/internal/netnstest"
)

// The DNS door fills the exported table's sets: in a client namespace the
// `egret export --format nftables` table of dt-cloud-connector-2g is
// loaded and `egret serve --dns --nft-sets egret` runs, with the
// document's NTP name time1.google.com pinned to an address of the
// gateway namespace. Before the client resolves it, NTP there is
// dropped; after dig asks egret, UDP 123 to that address passes while to
// another address it is dropped; once the element's timeout (the capped
// TTL, 2 s) has run out it is dropped again.
func TestServeDNSFillsNftSets(t *testing.T) {
	netnstest.Require(t, "nft", "socat", "dig")
	bin := egretBinary(t)
	tb := netnstest.New(t)
	const other = "192.0.2.11"
	netnstest.Run(t, "ip", "netns", "exec", tb.Gateway, "ip", "addr", "add", other+"/32", "dev", "lo")

	table, err := exec.Command(bin, "export", "--product", "dt-cloud-connector-2g", "--format", "nftables").Output()
	if err != nil {
		t.Fatalf("egret export: %v", err)
	}
	load := netnstest.Cmd(tb.Client, "nft", "-f", "-")
	load.Stdin = strings.NewReader(string(table))
	if out, err := load.CombinedOutput(); err != nil {
		t.Fatalf("nft -f: %v\n%s", err, out)
	}
	set := ntpSet(t, "time1.google.com")

	stderr := &lockedBuffer{}
	serve := netnstest.Cmd(tb.Client, bin, "serve", "--listen", "127.0.0.1:3128", "--admin", "",
		"--dns", "127.0.0.1:53", "--dns-upstream", "127.0.0.1:9", "--nft-sets", "egret", "--dns-max-ttl", "2s",
		"--product", "dt-cloud-connector-2g", "--resolve", "time1.google.com="+netnstest.Remote4,
		"--allow-range", netnstest.Remote4+"/32")
	serve.Stdout, serve.Stderr = &lockedBuffer{}, stderr
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { serve.Process.Kill(); serve.Wait() })
	waitUntil(t, func() bool { return strings.Contains(stderr.String(), "fills the") }, "egret serve to open the sets\n"+stderr.String())

	ntp := newNTPServers(t, tb.Gateway, netnstest.Remote4, other)
	if ntp.reach(t, tb.Client, netnstest.Remote4) {
		t.Fatal("NTP passed before any answer filled the set")
	}
	out := netnstest.Run(t, "ip", "netns", "exec", tb.Client, "dig", "+short", "+tries=1", "@127.0.0.1", "time1.google.com", "A")
	if strings.TrimSpace(out) != netnstest.Remote4 {
		t.Fatalf("dig time1.google.com: %q", out)
	}
	listed := netnstest.Run(t, "ip", "netns", "exec", tb.Client, "nft", "list", "set", "inet", "egret", set)
	if !strings.Contains(listed, netnstest.Remote4+" timeout 2s") {
		t.Errorf("set %s after the answer:\n%s", set, listed)
	}
	if !ntp.reach(t, tb.Client, netnstest.Remote4) {
		t.Error("NTP to the answered address was dropped")
	}
	if ntp.reach(t, tb.Client, other) {
		t.Error("NTP to an address no answer gave passed")
	}
	waitUntil(t, func() bool {
		out := netnstest.Run(t, "ip", "netns", "exec", tb.Client, "nft", "list", "set", "inet", "egret", set)
		return !strings.Contains(out, netnstest.Remote4)
	}, "the element to time out")
	if ntp.reach(t, tb.Client, netnstest.Remote4) {
		t.Error("NTP passed after the element timed out")
	}
}

// ntpSet is the IPv4 set of the dt-cloud-connector-2g network rule that
// names host.
func ntpSet(t *testing.T, host string) string {
	t.Helper()
	cat, err := allowlists.LoadCatalog()
	if err != nil {
		t.Fatal(err)
	}
	pol, _, err := allowlists.Compile(cat, allowlists.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	sets := dns.SetsFor(pol, []string{"dt-cloud-connector-2g"}, host)
	if len(sets) == 0 {
		t.Fatalf("no set names %s", host)
	}
	return sets[0]
}

func waitUntil(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ntpServers are UDP sockets on port 123 in a namespace that report what
// reaches them.
type ntpServers struct {
	got map[string]chan string
	seq int
}

func newNTPServers(t *testing.T, ns string, addrs ...string) *ntpServers {
	s := &ntpServers{got: map[string]chan string{}}
	for _, a := range addrs {
		var pc net.PacketConn
		var err error
		netnstest.In(t, ns, func() { pc, err = net.ListenPacket("udp4", net.JoinHostPort(a, "123")) })
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		ch := make(chan string, 16)
		go func() {
			buf := make([]byte, 512)
			for {
				n, _, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				ch <- string(buf[:n])
			}
		}()
		s.got[a] = ch
	}
	return s
}

// reach reports whether a datagram socat sends from namespace ns to
// addr:123 arrives (within 1.5 s).
func (s *ntpServers) reach(t *testing.T, ns, addr string) bool {
	t.Helper()
	s.seq++
	token := fmt.Sprintf("ntp-probe-%d", s.seq)
	cmd := netnstest.Cmd(ns, "socat", "-u", "STDIN", "UDP4-SENDTO:"+addr+":123")
	cmd.Stdin = strings.NewReader(token)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Logf("socat to %s: %v %s", addr, err, out) // a dropped datagram can fail the send (EPERM)
		return false
	}
	deadline := time.After(1500 * time.Millisecond)
	for {
		select {
		case got := <-s.got[addr]:
			if got == token {
				return true
			}
		case <-deadline:
			return false
		}
	}
}
