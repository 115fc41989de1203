package dns

import (
	"net/netip"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/egret-proxy/egret/internal/netnstest"
)

// Sets in a namespace of its own: elements get the answer's TTL, a later
// shorter answer does not cut an element's life, the other family's set
// and unknown sets are skipped, a set without the timeout flag is never
// filled, and a table loaded after egret started is found.
func TestSetsOverNetlink(t *testing.T) {
	netnstest.Require(t, "nft")
	ns := "egret-dnssets-" + strings.ReplaceAll(t.Name(), "/", "-")
	netnstest.Run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })

	var sets *Sets
	var err error
	netnstest.In(t, ns, func() { sets, err = OpenSets("egret") })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sets.Close() })
	if _, err := sets.Check(); err == nil {
		t.Fatal("Check found a table that is not loaded")
	}
	load := netnstest.Cmd(ns, "nft", "-f", "-")
	load.Stdin = strings.NewReader(`table inet egret {
	set t_n1_v4 { type ipv4_addr; flags timeout; }
	set t_n1_v6 { type ipv6_addr; flags timeout; }
	set t_n2_v4 { type ipv4_addr; }
}
`)
	if out, err := load.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
	sets.listed = time.Time{} // the table was loaded just now: no need to wait SetsRefresh
	v4, v6 := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8::10")
	if err := sets.Add([]string{"t_n1_v4", "t_n1_v6", "t_n9_v4"}, []netip.Addr{v4, v6}, 300*time.Second); err != nil {
		t.Fatal(err)
	}
	list := func(set string) string {
		return netnstest.Run(t, "ip", "netns", "exec", ns, "nft", "list", "set", "inet", "egret", set)
	}
	if out := list("t_n1_v4"); !strings.Contains(out, "192.0.2.10 timeout 5m") || strings.Contains(out, "2001:db8") {
		t.Errorf("v4 set:\n%s", out)
	}
	if out := list("t_n1_v6"); !strings.Contains(out, "2001:db8::10 timeout 5m") {
		t.Errorf("v6 set:\n%s", out)
	}
	// A shorter TTL later keeps the element at least as long as promised.
	if err := sets.Add([]string{"t_n1_v4"}, []netip.Addr{v4}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if out := list("t_n1_v4"); !regexp.MustCompile(`192\.0\.2\.10 timeout (4m5\d|5m)s?`).MatchString(out) {
		t.Errorf("a 10 s answer cut the element's 5 m:\n%s", out)
	}
	// A set without the timeout flag would keep an element for ever.
	if err := sets.Add([]string{"t_n2_v4"}, []netip.Addr{v4}, time.Minute); err == nil || !strings.Contains(err.Error(), "no timeout flag") {
		t.Errorf("a set without timeout: %v", err)
	}
	if out := list("t_n2_v4"); strings.Contains(out, "192.0.2.10") {
		t.Errorf("filled a set without timeout:\n%s", out)
	}
	if n, err := sets.Check(); err != nil || n != 3 {
		t.Errorf("Check = %d, %v", n, err)
	}
}
