//go:build linux

package export

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/egret-proxy/egret/allowlists"
	"github.com/egret-proxy/egret/internal/netnstest"
)

var netnsSeq atomic.Int32

// freshNetns creates an empty network namespace, deleted when the test
// ends: its iptables tables and ipsets are its own.
func freshNetns(t *testing.T, what string) string {
	t.Helper()
	ns := fmt.Sprintf("egret-%s-%d-%d", what, os.Getpid()%100000, netnsSeq.Add(1))
	netnstest.Run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	return ns
}

// restoreIn feeds input to a restore tool (ipset restore,
// iptables-restore, ...) inside namespace ns.
func restoreIn(t *testing.T, ns, input string, tool ...string) {
	t.Helper()
	cmd := netnstest.Cmd(ns, tool...)
	cmd.Stdin = strings.NewReader(input)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s\n--- input:\n%s", tool, err, out, numbered(input))
	}
}

// skipReasonRE is what an iptables or ipset export may leave out: a rule
// whose destination is an unset variable, or one whose set name ipset
// cannot take.
var skipReasonRE = regexp.MustCompile(`^destination \$\{[a-z0-9_]+\} has no value|longer than the 31 characters ipset allows$`)

// Every embedded product, egress only, both directions, and with every
// variable set, pins and a segment, is input the real tools take, in a
// namespace of its own: ipset restore, then iptables-restore and
// ip6tables-restore. The last shape is loaded for real (--test does not
// check which chains an owner match is reachable from) twice, and the
// second load leaves the same table as the first.
func TestIptablesEveryProductLoads(t *testing.T) {
	netnstest.Require(t, "ipset", "iptables-restore", "ip6tables-restore", "iptables-save", "ip6tables-save")
	ns := freshNetns(t, "iptchk")
	p0, withVars := compile(t, nil), compile(t, everyVariableSet(t))
	for _, prod := range p0.Catalog().Names() {
		for _, c := range []struct {
			name string
			p    *allowlists.Policy
			o    Options
		}{
			{"egress", p0, Options{}},
			{"both", p0, Options{Direction: Both, Options: []string{"basic"}}},
			{"vars+segment", withVars, Options{Direction: Both, Segment: "eth1", Pins: pinsFor(t, "time1.google.com", "0.pool.ntp.org", "repo.cliqrtech.com")}},
		} {
			sets, skips := render(t, WriteIpset, c.p, []string{prod}, c.o)
			restoreIn(t, ns, sets, "ipset", "restore")
			for _, f := range []struct{ format, tool string }{{"iptables", "iptables"}, {"ip6tables", "ip6tables"}} {
				out, s := render(t, Formats[f.format], c.p, []string{prod}, c.o)
				skips = append(skips, s...)
				restoreIn(t, ns, out, f.tool+"-restore", "--test")
				if c.name == "vars+segment" {
					restoreIn(t, ns, out, f.tool+"-restore")
					first := netnstest.Run(t, "ip", "netns", "exec", ns, f.tool+"-save", "-t", "filter")
					restoreIn(t, ns, out, f.tool+"-restore")
					if again := netnstest.Run(t, "ip", "netns", "exec", ns, f.tool+"-save", "-t", "filter"); stripSaveHeader(again) != stripSaveHeader(first) {
						t.Errorf("%s %s: a second load changed the table:\n%s\n--- first:\n%s", prod, f.format, again, first)
					}
				}
			}
			for _, s := range skips {
				if !skipReasonRE.MatchString(s.Reason) {
					t.Errorf("%s %s: unexpected skip %s", prod, c.name, s)
				}
			}
		}
	}
}

// stripSaveHeader drops the lines of iptables-save output that carry the
// time.
func stripSaveHeader(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(l, "#") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// A variable set to a range puts the range in the file of its family
// only; one set to a name makes the rule match the name's sets, the v4
// set in iptables and the v6 one in ip6tables; an unset one is a comment
// and a Skip.
func TestIptablesVariablesBecomeRules(t *testing.T) {
	p := compile(t, map[string]string{"ad_forest": "198.51.100.0/24", "dns_server": "dc1.example.com", "ontap_ha_partner_lifs": "2001:db8:5::/64"})
	prod := []string{"netapp-cvo-aws"}
	v4, skips4 := render(t, WriteIptables, p, prod, Options{})
	v6, _ := render(t, WriteIp6tables, p, prod, Options{})
	sets, _ := render(t, WriteIpset, p, prod, Options{})
	for _, c := range []struct {
		out, want string
		present   bool
	}{
		{v4, "-d 198.51.100.0/24", true},
		{v6, "-d 198.51.100.0/24", false},
		{v4, "-d 2001:db8:5::/64", false},
		{v6, "-d 2001:db8:5::/64", true},
		{v4, "-m set --match-set netapp_cvo_aws_n", true},
		{v6, "-m set --match-set netapp_cvo_aws_n", true},
		{v4, "_v6 dst", false},
		{v6, "_v4 dst", false},
		{v4, "#   an IPv6 range: in the ip6tables export", true},
		{v4, "#   not expressed: destination ${syslog_server} has no value", true},
		{sets, "hash:ip family inet timeout 0 -exist", true},
		{sets, "hash:ip family inet6 timeout 0 -exist", true},
	} {
		if strings.Contains(c.out, c.want) != c.present {
			t.Errorf("%q present=%v, want %v in:\n%s", c.want, !c.present, c.present, c.out)
		}
	}
	for _, l := range strings.Split(v4, "\n") {
		if strings.Contains(l, "--match-set") && !strings.Contains(l, "-p udp --dport 53") {
			t.Errorf("the DNS server row's rule: %s", l)
		}
	}
	if !hasSkip(skips4, "netapp-cvo-aws/n", "${syslog_server}") {
		t.Errorf("no skip for the unset syslog_server: %v", skips4)
	}
}

func hasSkip(skips []Skip, idPrefix, inReason string) bool {
	for _, s := range skips {
		if strings.HasPrefix(s.ID.String(), idPrefix) && strings.Contains(s.Reason, inReason) {
			return true
		}
	}
	return false
}

func TestMultiportGroups(t *testing.T) {
	ports := func(n int, r bool) []portSpan {
		var s []portSpan
		for i := 0; i < n; i++ {
			lo := uint16(1000 + 10*i)
			hi := lo
			if r {
				hi = lo + 5
			}
			s = append(s, portSpan{lo, hi})
		}
		return s
	}
	sizes := func(g [][]portSpan) []int {
		var n []int
		for _, x := range g {
			n = append(n, len(x))
		}
		return n
	}
	for _, c := range []struct {
		name  string
		spans []portSpan
		want  []int
	}{
		{"one port", ports(1, false), []int{1}},
		{"fifteen ports fit", ports(15, false), []int{15}},
		{"sixteen ports split", ports(16, false), []int{15, 1}},
		{"seven ranges fit", ports(7, true), []int{7}},
		{"eight ranges split", ports(8, true), []int{7, 1}},
		{"a range that would be the 16th port", append(ports(14, false), portSpan{1, 2}), []int{14, 1}},
		{"thirty-one ports", ports(31, false), []int{15, 15, 1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := sizes(multiportGroups(c.spans)); fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("groups %v, want %v", got, c.want)
			}
		})
	}
}

// A row with more ports than one multiport match takes is split into
// rules iptables-restore accepts, which together carry every port.
func TestIptablesSplitsMultiport(t *testing.T) {
	netnstest.Require(t, "iptables-restore")
	var ranges []allowlists.PortRange
	for i := uint16(0); i < 12; i++ {
		ranges = append(ranges, allowlists.PortRange{Lo: 2000 + 10*i, Hi: 2000 + 10*i + i%2*5})
	}
	rs := &Ruleset{Products: []string{"test"}, Options: Options{Direction: Egress, Name: "egret", EgretUID: 65532}}
	rs.Entries = []Entry{{
		ID: allowlists.ID{Product: "test", Kind: allowlists.KindNetwork, N: 1}, Protocol: "udp", Direction: "egress",
		Ports: ranges, CIDR: netip.MustParsePrefix("192.0.2.0/24"), Source: "test", Purpose: "many ports",
	}}
	out, err := renderRuleset(WriteIptables, rs)
	if err != nil {
		t.Fatal(err)
	}
	var dports []string
	for _, m := range regexp.MustCompile(`-m multiport --dports (\S+) -d 192.0.2.0/24`).FindAllStringSubmatch(out, -1) {
		dports = append(dports, m[1])
	}
	want := "2000,2010:2015,2020,2030:2035,2040,2050:2055,2060,2070:2075,2080,2090:2095,2100,2110:2115"
	if len(dports) != 2 || strings.Join(dports, ",") != want {
		t.Fatalf("multiport matches %q, want two covering %s\n%s", dports, want, out)
	}
	restoreIn(t, freshNetns(t, "iptmp"), out, "iptables-restore", "--test")
}

func renderRuleset(write Writer, rs *Ruleset) (string, error) {
	var b strings.Builder
	_, err := write(&b, rs)
	return b.String(), err
}

// The iptables and ipset exports, loaded into a real kernel, pass the
// documented rows and drop the rest, with real packets from the client
// namespace to the gateway's addresses: a named row through its ipset
// (pinned, and as the DNS door fills it, with a timeout), a range row,
// and egret's own uid on the proxy ports.
func TestIptablesRealPackets(t *testing.T) {
	netnstest.Require(t, "ipset", "iptables-restore", "iptables-save", "socat", "setpriv")
	tb := netnstest.New(t)
	const other = "192.0.2.11" // a second far address, on the gateway's loopback too
	netnstest.Run(t, "ip", "netns", "exec", tb.Gateway, "ip", "addr", "add", other+"/32", "dev", "lo")
	type probe struct {
		proto, addr string
		port, uid   int // uid 0: root, else the uid socat runs as
		pass        bool
	}
	// The far end's sockets close when the subtest that opened them ends,
	// so each subtest has its own.
	check := func(t *testing.T, far *farEnd, probes []probe) {
		t.Helper()
		for _, pr := range probes {
			before := iptDropCount(t, tb.Client)
			if got := far.reach(t, tb.Client, pr.proto, pr.addr, pr.port, pr.uid); got != pr.pass {
				t.Errorf("%s %s:%d (uid %d): passed=%v, want %v", pr.proto, pr.addr, pr.port, pr.uid, got, pr.pass)
			}
			if !pr.pass && iptDropCount(t, tb.Client) <= before {
				t.Errorf("%s %s:%d: not counted by the chain's DROP", pr.proto, pr.addr, pr.port)
			}
		}
	}
	load := func(t *testing.T, product string, vars map[string]string, pins map[string][]netip.Addr) {
		t.Helper()
		p := compile(t, vars)
		sets, _ := render(t, WriteIpset, p, []string{product}, Options{Pins: pins})
		rules, _ := render(t, WriteIptables, p, []string{product}, Options{Pins: pins})
		restoreIn(t, tb.Client, sets, "ipset", "restore")
		restoreIn(t, tb.Client, rules, "iptables-restore")
	}

	t.Run("003/dt-cloud-connector-2g", func(t *testing.T) {
		far := newFarEnd(t, tb.Gateway)
		load(t, "dt-cloud-connector-2g", nil, map[string][]netip.Addr{"time1.google.com": {mustAddr(t, netnstest.Remote4)}})
		check(t, far, []probe{
			{"udp", netnstest.Remote4, 123, 0, true},  // NTP to the pinned time1.google.com
			{"udp", other, 123, 0, false},             // NTP to an address no name gave
			{"udp", netnstest.Remote4, 124, 0, false}, // no such row
			{"tcp", other, 443, 0, false},             // HTTPS: only through egret
			{"tcp", other, 443, 65532, true},          // egret itself
		})
		// The DNS door adds what it answers with the answer's TTL: the
		// address passes until the timeout, and not after.
		set := SetName(allowlists.ID{Product: "dt-cloud-connector-2g", Kind: allowlists.KindNetwork, N: 1}, 4)
		netnstest.Run(t, "ip", "netns", "exec", tb.Client, "ipset", "add", set, other, "timeout", "1")
		check(t, far, []probe{{"udp", other, 123, 0, true}})
		time.Sleep(1200 * time.Millisecond)
		check(t, far, []probe{{"udp", other, 123, 0, false}})
	})
	t.Run("000/netapp-connector-aws", func(t *testing.T) {
		far := newFarEnd(t, tb.Gateway)
		load(t, "netapp-connector-aws", map[string]string{"ad_forest": netnstest.Remote4 + "/32"}, nil)
		check(t, far, []probe{
			{"tcp", netnstest.Remote4, 389, 0, true},  // Active Directory: LDAP
			{"udp", netnstest.Remote4, 464, 0, true},  // Kerberos key administration
			{"tcp", netnstest.Remote4, 390, 0, false}, // no such row
			{"udp", other, 464, 0, false},             // not the forest
			{"tcp", other, 443, 0, false},             // HTTPS: only through egret
			{"tcp", other, 443, 65532, true},          // egret itself
			{"udp", other, 53, 65532, true},           // egret's resolver
			{"udp", other, 53, 0, false},              // anyone else's
		})
	})
}

var iptDropRE = regexp.MustCompile(`(?m)^\[(\d+):\d+\] -A EGRET-EGRESS -j DROP$`)

func iptDropCount(t *testing.T, ns string) int {
	t.Helper()
	out := netnstest.Run(t, "ip", "netns", "exec", ns, "iptables-save", "-c", "-t", "filter")
	m := iptDropRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no DROP at the end of EGRET-EGRESS in:\n%s", out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}
