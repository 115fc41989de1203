//go:build linux

package export

import (
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/egret-proxy/egret/allowlists"
	"github.com/egret-proxy/egret/internal/netnstest"
)

// nftIn runs nft -f on ruleset inside namespace ns (check only with -c).
func nftIn(t *testing.T, ns, ruleset string, args ...string) {
	t.Helper()
	cmd := netnstest.Cmd(ns, append([]string{"nft"}, append(args, "-f", "-")...)...)
	cmd.Stdin = strings.NewReader(ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft %v: %v\n%s\n--- ruleset:\n%s", args, err, out, numbered(ruleset))
	}
}

// Every embedded product, in every shape an operator can ask for, is a
// ruleset nft accepts (checked by the kernel in a namespace of its own),
// and loading it twice replaces the first load.
func TestNftablesEveryProductLoads(t *testing.T) {
	netnstest.Require(t, "nft")
	ns := fmt.Sprintf("egret-nftchk-%d", time.Now().UnixNano()%100000)
	netnstest.Run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })

	p0 := compile(t, nil)
	withVars := compile(t, everyVariableSet(t))
	for _, prod := range p0.Catalog().Names() {
		for _, c := range []struct {
			name string
			p    *allowlists.Policy
			o    Options
		}{
			{"egress", p0, Options{}},
			{"both", p0, Options{Direction: Both, Options: []string{"basic"}}},
			{"vars+segment", withVars, Options{Direction: Both, Segment: "eth1", Pins: pinsFor(t, "time1.google.com", "0.pool.ntp.org")}},
		} {
			out, _ := render(t, WriteNftables, c.p, []string{prod}, c.o)
			nftIn(t, ns, out, "-c")
			if c.name == "vars+segment" {
				nftIn(t, ns, out)
				nftIn(t, ns, out) // a second load replaces the first
			}
		}
	}
	listed := netnstest.Run(t, "ip", "netns", "exec", ns, "nft", "list", "tables")
	if strings.Count(listed, "table inet egret") != 1 {
		t.Fatalf("after loading every product, nft list tables:\n%s", listed)
	}
}

func pinsFor(t *testing.T, names ...string) map[string][]netip.Addr {
	t.Helper()
	pins := map[string][]netip.Addr{}
	for i, n := range names {
		pins[n] = []netip.Addr{mustAddr(t, fmt.Sprintf("203.0.113.%d", i+1)), mustAddr(t, fmt.Sprintf("2001:db8:1::%d", i+1))}
	}
	return pins
}

// A rule of each document, loaded into a real kernel: the documented row
// passes and a row the document does not have is dropped, with real
// packets (socat in the client namespace, sockets in the gateway).
func TestNftablesRealPackets(t *testing.T) {
	netnstest.Require(t, "nft", "socat", "setpriv")
	tb := netnstest.New(t)
	const other = "192.0.2.11" // a second far address, on the gateway's loopback too
	netnstest.Run(t, "ip", "netns", "exec", tb.Gateway, "ip", "addr", "add", other+"/32", "dev", "lo")
	far := newFarEnd(t, tb.Gateway)

	type probe struct {
		proto, addr string
		port        int
		uid         int // 0: root, else the uid socat runs as
		pass        bool
	}
	cases := []struct {
		doc, product string
		vars         map[string]string
		pins         []string // names pinned to Remote4
		probes       []probe
	}{
		{"000", "netapp-connector-aws", map[string]string{"ad_forest": netnstest.Remote4 + "/32"}, nil, []probe{
			{"tcp", netnstest.Remote4, 389, 0, true},  // Active Directory: LDAP
			{"udp", netnstest.Remote4, 464, 0, true},  // Kerberos key administration
			{"tcp", netnstest.Remote4, 390, 0, false}, // no such row
			{"udp", other, 464, 0, false},             // not the forest
			{"tcp", other, 8080, 0, false},            // the basic "all outbound" rows are left out
			{"tcp", other, 443, 0, false},             // HTTPS: only through egret
			{"tcp", other, 443, 65532, true},          // egret itself
		}},
		{"001", "netapp-cvo-aws", map[string]string{"dns_server": netnstest.Remote4, "smtp_server": netnstest.Remote4}, nil, []probe{
			{"udp", netnstest.Remote4, 53, 0, true},   // DNS
			{"tcp", netnstest.Remote4, 25, 0, true},   // SMTP alerts
			{"udp", netnstest.Remote4, 514, 0, false}, // syslog server not set
			{"tcp", other, 25, 0, false},
		}},
		{"002", "cisco-cloudcenter-ccm", map[string]string{"mon": netnstest.Remote4}, nil, []probe{
			{"tcp", netnstest.Remote4, 8881, 0, true},
			{"tcp", netnstest.Remote4, 4560, 0, true},
			{"tcp", netnstest.Remote4, 8882, 0, false},
			{"tcp", other, 80, 0, false}, // the documented 0.0.0.0/0 on 80/443 is egret's
		}},
		{"003", "dt-cloud-connector-2g", nil, []string{"time1.google.com"}, []probe{
			{"udp", netnstest.Remote4, 123, 0, true}, // NTP to the pinned time1.google.com
			{"udp", other, 123, 0, false},            // NTP elsewhere
			{"udp", netnstest.Remote4, 124, 0, false},
		}},
		{"004", "azure-cassandra-mi", map[string]string{"vnet": netnstest.Remote4 + "/32"}, nil, []probe{
			{"tcp", netnstest.Remote4, 9042, 0, true}, // CQL inside the VNet
			{"tcp", netnstest.Remote4, 7001, 0, true},
			{"tcp", netnstest.Remote4, 9043, 0, false},
			{"tcp", other, 9042, 0, false},
		}},
	}
	for _, c := range cases {
		t.Run(c.doc+"/"+c.product, func(t *testing.T) {
			pins := map[string][]netip.Addr{}
			for _, n := range c.pins {
				pins[n] = []netip.Addr{mustAddr(t, netnstest.Remote4)}
			}
			out, _ := render(t, WriteNftables, compile(t, c.vars), []string{c.product}, Options{Pins: pins})
			nftIn(t, tb.Client, out)
			for _, pr := range c.probes {
				before := dropCount(t, tb.Client)
				got := far.reach(t, tb.Client, pr.proto, pr.addr, pr.port, pr.uid)
				if got != pr.pass {
					t.Errorf("%s %s:%d (uid %d): passed=%v, want %v", pr.proto, pr.addr, pr.port, pr.uid, got, pr.pass)
				}
				if !pr.pass && dropCount(t, tb.Client) <= before {
					t.Errorf("%s %s:%d: not counted by the table's drop rule", pr.proto, pr.addr, pr.port)
				}
			}
		})
	}
}

var dropCounterRE = regexp.MustCompile(`counter packets (\d+) bytes \d+ log prefix "egret drop " drop`)

func dropCount(t *testing.T, ns string) int {
	t.Helper()
	out := netnstest.Run(t, "ip", "netns", "exec", ns, "nft", "list", "chain", "inet", "egret", "egress")
	m := dropCounterRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no drop counter in:\n%s", out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// farEnd is the far side of the probes: TCP listeners and UDP sockets in
// the gateway namespace that record what reached them.
type farEnd struct {
	t   *testing.T // the test that owns the sockets (not a subtest: they outlive each)
	ns  string
	mu  sync.Mutex
	tcp map[string]bool
	udp map[string]chan string
}

func newFarEnd(t *testing.T, ns string) *farEnd {
	return &farEnd{t: t, ns: ns, tcp: map[string]bool{}, udp: map[string]chan string{}}
}

func (f *farEnd) listen(t *testing.T, proto, addr string, port int) chan string {
	t.Helper()
	hp := net.JoinHostPort(addr, strconv.Itoa(port))
	f.mu.Lock()
	defer f.mu.Unlock()
	if proto == "tcp" {
		if !f.tcp[hp] {
			var ln net.Listener
			var err error
			netnstest.In(t, f.ns, func() { ln, err = net.Listen("tcp4", hp) })
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
			f.t.Cleanup(func() { ln.Close() })
			f.tcp[hp] = true
		}
		return nil
	}
	if ch := f.udp[hp]; ch != nil {
		return ch
	}
	var pc net.PacketConn
	var err error
	netnstest.In(t, f.ns, func() { pc, err = net.ListenPacket("udp4", hp) })
	if err != nil {
		t.Fatal(err)
	}
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
	f.t.Cleanup(func() { pc.Close() })
	f.udp[hp] = ch
	return ch
}

var probeSeq int

// reach reports whether a socat in namespace ns, as uid, gets to
// addr:port: a TCP connection accepted, or a UDP datagram received.
func (f *farEnd) reach(t *testing.T, ns, proto, addr string, port, uid int) bool {
	t.Helper()
	ch := f.listen(t, proto, addr, port)
	probeSeq++
	token := fmt.Sprintf("probe-%d", probeSeq)
	argv := []string{"socat", "-u", "STDIN"}
	if proto == "tcp" {
		argv = append(argv, fmt.Sprintf("TCP4:%s:%d,connect-timeout=2", addr, port))
	} else {
		argv = append(argv, fmt.Sprintf("UDP4-SENDTO:%s:%d", addr, port))
	}
	if uid != 0 {
		argv = append([]string{"setpriv", "--reuid", strconv.Itoa(uid), "--regid", strconv.Itoa(uid), "--clear-groups"}, argv...)
	}
	cmd := netnstest.Cmd(ns, argv...)
	cmd.Stdin = strings.NewReader(token)
	out, err := cmd.CombinedOutput()
	if proto == "tcp" {
		return err == nil
	}
	if err != nil {
		t.Logf("socat %s: %v %s", proto, err, out) // a dropped datagram can fail the send (EPERM)
		return false
	}
	deadline := time.After(1500 * time.Millisecond)
	for {
		select {
		case got := <-ch:
			if got == token {
				return true
			}
		case <-deadline:
			return false
		}
	}
}

// On a segment gateway the table filters what it forwards: a client in
// the segment reaches a third namespace (the "internet") only on the
// documented rows, and the DNS door's sets decide the named ones.
func TestNftablesSegmentGatewayForwards(t *testing.T) {
	netnstest.Require(t, "nft", "socat")
	tb := netnstest.New(t)
	srv := tb.Gateway + "-srv"
	netnstest.Run(t, "ip", "netns", "add", srv)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", srv).Run() })
	const gwSide, srvAddr, otherAddr = "198.51.100.1", "198.51.100.2", "198.51.100.3"
	vg, vs := "vfw"+tb.Gateway[len("egret-gw-"):], "vsr"+tb.Gateway[len("egret-gw-"):]
	netnstest.Run(t, "ip", "link", "add", vg, "netns", tb.Gateway, "type", "veth", "peer", "name", vs, "netns", srv)
	for _, c := range [][]string{
		{tb.Gateway, "ip", "link", "set", vg, "name", "vnet", "up"},
		{tb.Gateway, "ip", "addr", "add", gwSide + "/29", "dev", "vnet"},
		{tb.Gateway, "sysctl", "-qw", "net.ipv4.ip_forward=1"},
		{srv, "ip", "link", "set", "lo", "up"},
		{srv, "ip", "link", "set", vs, "name", "vnet", "up"},
		{srv, "ip", "addr", "add", srvAddr + "/29", "dev", "vnet"},
		{srv, "ip", "addr", "add", otherAddr + "/29", "dev", "vnet"},
		{srv, "ip", "route", "add", "default", "via", gwSide},
	} {
		netnstest.Run(t, "ip", append([]string{"netns", "exec", c[0]}, c[1:]...)...)
	}
	far := newFarEnd(t, srv)
	pins := map[string][]netip.Addr{"time2.google.com": {mustAddr(t, srvAddr)}}
	out, _ := render(t, WriteNftables, compile(t, nil), []string{"dt-cloud-connector-2g"}, Options{Pins: pins, Segment: "vgw"})
	nftIn(t, tb.Gateway, out)
	for _, pr := range []struct {
		proto, addr string
		port        int
		pass        bool
	}{
		{"udp", srvAddr, 123, true},    // NTP to the pinned time2.google.com
		{"udp", otherAddr, 123, false}, // NTP to an address no answer gave
		{"tcp", srvAddr, 443, false},   // HTTPS past egret: the redirect's, not the filter's
		{"udp", srvAddr, 53, false},
	} {
		before := dropCount(t, tb.Gateway)
		if got := far.reach(t, tb.Client, pr.proto, pr.addr, pr.port, 0); got != pr.pass {
			t.Errorf("forwarded %s %s:%d: passed=%v, want %v", pr.proto, pr.addr, pr.port, got, pr.pass)
		}
		if !pr.pass && dropCount(t, tb.Gateway) <= before {
			t.Errorf("forwarded %s %s:%d: not counted by the drop rule", pr.proto, pr.addr, pr.port)
		}
	}
}

// Set names fit ipset's 31 characters and never collide, across every
// rule of every embedded product.
func TestSetNamesFitAndAreUnique(t *testing.T) {
	p := compile(t, nil)
	seen := map[string]allowlists.ID{}
	for _, prod := range p.Catalog().Names() {
		for _, r := range p.NetworkRules(prod) {
			for _, fam := range []int{4, 6} {
				name := SetName(r.ID, fam)
				if len(name) > maxSetName {
					t.Errorf("%s: set %s is %d characters", r.ID, name, len(name))
				}
				if other, dup := seen[name]; dup {
					t.Errorf("set %s names both %s and %s", name, other, r.ID)
				}
				seen[name] = r.ID
			}
		}
	}
	if got := SetName(allowlists.ID{Product: "cisco-cloudcenter-package-store", Kind: allowlists.KindNetwork, N: 2}, 4); got != "cisc_clou_pack_stor_n2_v4" {
		t.Errorf("long product: %s", got)
	}
	if got := SetName(allowlists.ID{Product: "dt-cloud-connector", Kind: allowlists.KindNetwork, N: 3}, 6); got != "dt_cloud_connector_n3_v6" {
		t.Errorf("short product: %s", got)
	}
}
