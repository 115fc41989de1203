//go:build linux

// Package netnstest builds small networks of Linux network namespaces for
// tests: a client namespace whose default route leads through a gateway
// namespace, joined by a veth pair. Tests put a redirect (iptables or
// nftables) in the gateway and egret's transparent listener behind it, so
// that a client which knows nothing of egret is redirected for real.
//
// Only addresses inside the namespaces a Testbed creates are used:
//
//	client ns   vcl  10.253.N.2/30, fd53:N::2/64 ── default route ──┐
//	gateway ns  vgw  10.253.N.1/30, fd53:N::1/64                      │
//	            lo   "remote" 192.0.2.10/32, 2001:db8::10/128  ◄──────┘
//
// Everything, rules included, goes away with the namespaces when the test
// ends.
package netnstest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// The "remote" addresses a client connects to; they live on the gateway's
// loopback, so nothing leaves the namespaces even without a redirect.
const (
	Remote4 = "192.0.2.10"
	Remote6 = "2001:db8::10"
)

// Require fails under CI (which installs the tools, and runs as root) and
// skips elsewhere when the test cannot create namespaces and rules.
func Require(t testing.TB, tools ...string) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, tool := range append([]string{"ip"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("this test needs %v; .ci/run installs them", missing)
	}
	t.Skipf("needs %v", missing)
}

// Run runs a command and fails the test if it fails; it returns the
// combined output.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

var seq atomic.Int32

// Testbed is a client namespace and a gateway namespace.
type Testbed struct {
	t       testing.TB
	Gateway string // namespace names
	Client  string
	// Client addresses, as the gateway sees them.
	ClientAddr4, ClientAddr6 string
	// The gateway's addresses on the client's link.
	GatewayAddr4, GatewayAddr6 string
}

// New creates the two namespaces and deletes them when the test ends.
func New(t testing.TB) *Testbed {
	t.Helper()
	n := seq.Add(1)
	id := fmt.Sprintf("%d-%d", os.Getpid()%100000, n)
	tb := &Testbed{t: t, Gateway: "egret-gw-" + id, Client: "egret-cl-" + id}
	sub := 1 + (os.Getpid()+int(n))%250
	gw4, cl4 := fmt.Sprintf("10.253.%d.1", sub), fmt.Sprintf("10.253.%d.2", sub)
	gw6, cl6 := fmt.Sprintf("fd53:%x::1", sub), fmt.Sprintf("fd53:%x::2", sub)
	tb.ClientAddr4, tb.ClientAddr6 = cl4, cl6
	tb.GatewayAddr4, tb.GatewayAddr6 = gw4, gw6
	for _, ns := range []string{tb.Gateway, tb.Client} {
		Run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	}
	vgw, vcl := "vgw"+id, "vcl"+id // unique while both ends are created in this namespace
	Run(t, "ip", "link", "add", vgw, "netns", tb.Gateway, "type", "veth", "peer", "name", vcl, "netns", tb.Client)
	for _, cmd := range [][]string{
		{tb.Gateway, "ip", "link", "set", "lo", "up"},
		{tb.Gateway, "ip", "link", "set", vgw, "name", "vgw", "up"},
		{tb.Gateway, "ip", "addr", "add", gw4 + "/30", "dev", "vgw"},
		{tb.Gateway, "ip", "addr", "add", gw6 + "/64", "dev", "vgw", "nodad"},
		{tb.Gateway, "ip", "addr", "add", Remote4 + "/32", "dev", "lo"},
		{tb.Gateway, "ip", "addr", "add", Remote6 + "/128", "dev", "lo"},
		{tb.Client, "ip", "link", "set", "lo", "up"},
		{tb.Client, "ip", "link", "set", vcl, "name", "vcl", "up"},
		{tb.Client, "ip", "addr", "add", cl4 + "/30", "dev", "vcl"},
		{tb.Client, "ip", "addr", "add", cl6 + "/64", "dev", "vcl", "nodad"},
		{tb.Client, "ip", "route", "add", "default", "via", gw4},
		{tb.Client, "ip", "-6", "route", "add", "default", "via", gw6},
	} {
		Run(t, "ip", append([]string{"netns", "exec", cmd[0]}, cmd[1:]...)...)
	}
	return tb
}

// Cmd returns cmd to be run inside namespace ns.
func Cmd(ns string, cmd ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns}, cmd...)...)
}

// Redirect makes the gateway redirect TCP arriving from the client to
// ports to the local port to, with "iptables" (and ip6tables) REDIRECT or
// an "nftables" redirect in a table of its own.
func (tb *Testbed) Redirect(firewall string, to int, ports ...int) {
	tb.t.Helper()
	list := portList(ports)
	tb.prerouting(firewall,
		[]string{"-t", "nat", "-A", "PREROUTING", "-i", "vgw", "-p", "tcp", "-m", "multiport", "--dports", strings.Join(list, ","),
			"-j", "REDIRECT", "--to-ports", fmt.Sprint(to)},
		"type nat hook prerouting priority dstnat",
		fmt.Sprintf(`iifname "vgw" tcp dport { %s } redirect to :%d`, strings.Join(list, ", "), to))
}

// TProxy makes the gateway deliver TCP arriving from the client to ports
// to the local port to by TPROXY, with "iptables" (and ip6tables) or
// "nftables": the rule marks what it delivers, and the mark routes the
// packets to the local host (table 100) whatever their destination
// address. The listener on port to must have IP_TRANSPARENT.
func (tb *Testbed) TProxy(firewall string, to int, ports ...int) {
	tb.t.Helper()
	for family, local := range map[string]string{"-4": "0.0.0.0/0", "-6": "::/0"} {
		Run(tb.t, "ip", "netns", "exec", tb.Gateway, "ip", family, "rule", "add", "fwmark", "1", "lookup", "100")
		Run(tb.t, "ip", "netns", "exec", tb.Gateway, "ip", family, "route", "add", "local", local, "dev", "lo", "table", "100")
	}
	list := portList(ports)
	tb.prerouting(firewall,
		[]string{"-t", "mangle", "-A", "PREROUTING", "-i", "vgw", "-p", "tcp", "-m", "multiport", "--dports", strings.Join(list, ","),
			"-j", "TPROXY", "--on-port", fmt.Sprint(to), "--tproxy-mark", "0x1/0x1"},
		"type filter hook prerouting priority mangle",
		fmt.Sprintf(`iifname "vgw" meta l4proto tcp tcp dport { %s } tproxy to :%d meta mark set 1 accept`, strings.Join(list, ", "), to))
}

// prerouting installs one rule for packets arriving at the gateway: with
// "iptables" the arguments ipt (for iptables and ip6tables alike), with
// "nftables" rule in a prerouting chain of the given type, in a table of
// its own.
func (tb *Testbed) prerouting(firewall string, ipt []string, chain, rule string) {
	tb.t.Helper()
	switch firewall {
	case "iptables":
		for _, cmd := range []string{"iptables", "ip6tables"} {
			Run(tb.t, "ip", append([]string{"netns", "exec", tb.Gateway, cmd}, ipt...)...)
		}
	case "nftables":
		ruleset := fmt.Sprintf("table inet egret_test {\n\tchain prerouting {\n\t\t%s; policy accept;\n\t\t%s\n\t}\n}\n", chain, rule)
		cmd := Cmd(tb.Gateway, "nft", "-f", "-")
		cmd.Stdin = strings.NewReader(ruleset)
		if out, err := cmd.CombinedOutput(); err != nil {
			tb.t.Fatalf("nft: %v\n%s", err, out)
		}
	default:
		tb.t.Fatalf("unknown firewall %q", firewall)
	}
}

func portList(ports []int) []string {
	list := make([]string, len(ports))
	for i, p := range ports {
		list[i] = fmt.Sprint(p)
	}
	return list
}

// Curl runs curl in the client namespace (never through a proxy) and
// returns its stdout and exit code.
func (tb *Testbed) Curl(args ...string) (string, int) {
	tb.t.Helper()
	cmd := Cmd(tb.Client, append([]string{"curl", "-sS", "--max-time", "10", "--noproxy", "*"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout = &out
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), ee.ExitCode()
	} else if err != nil {
		tb.t.Fatal(err)
	}
	return out.String(), 0
}

// In runs fn on an OS thread switched into namespace ns, so that the
// sockets fn opens (listen, dial) live there; they stay there when used
// from other goroutines. The thread is switched back afterwards, or left
// locked, and so discarded by the runtime, if that fails.
func In(t testing.TB, ns string, fn func()) {
	t.Helper()
	target, err := os.Open(filepath.Join("/run/netns", ns))
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	runtime.LockOSThread()
	home, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer home.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	fn()
	if err := unix.Setns(int(home.Fd()), unix.CLONE_NEWNET); err != nil {
		t.Fatalf("back to the test's namespace: %v", err)
	}
	runtime.UnlockOSThread()
}
