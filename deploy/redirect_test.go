package deploy_test

import (
	"encoding/json"
	"errors"
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The redirect scripts are applied inside network namespaces the tests
// create: once to check the rules are there and do what they should
// (a connection to port 443 lands on egret's port; egret's own does not),
// twice to check apply is idempotent, and undone to check that exactly
// the rule set from before is left, foreign rules included.

const egretUID = 65532

// backend is one of the two redirect scripts and how to read the rule
// set it works on.
type backend struct {
	script string
	tools  []string
	// seed installs rules egret did not create, which must survive.
	seed func(n *netns)
	// dump is the whole rule set, in a form that compares byte for byte.
	dump func(n *netns) string
	// checkHost and checkSegment look for egret's rules in the namespace.
	checkHost    func(t *testing.T, n *netns)
	checkSegment func(t *testing.T, n *netns, iface string)
	// checkDNS looks for the redirect of UDP and TCP 53 to port 8053 in
	// the chain of egret's for the mode (host: output, segment:
	// prerouting).
	checkDNS func(t *testing.T, n *netns, mode string)
}

var iptablesBackend = backend{
	script: "./iptables.sh",
	tools:  []string{"root", "ip", "iptables", "ip6tables", "iptables-save", "ip6tables-save", "iptables-restore", "ip6tables-restore", "setpriv", "bash"},
	seed: func(n *netns) {
		for _, ipt := range []string{"iptables", "ip6tables"} {
			n.run(ipt, "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "--dport", "8080", "-j", "REDIRECT", "--to-ports", "9999")
			n.run(ipt, "-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", "8443", "-j", "REDIRECT", "--to-ports", "9998")
			n.run(ipt, "-t", "nat", "-N", "OTHER_CHAIN")
			n.run(ipt, "-t", "nat", "-A", "OTHER_CHAIN", "-p", "tcp", "--dport", "443", "-j", "RETURN")
			n.run(ipt, "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
		}
	},
	dump: func(n *netns) string {
		return withoutComments(n.run("iptables-save")) + withoutComments(n.run("ip6tables-save"))
	},
	checkHost: func(t *testing.T, n *netns) {
		for _, save := range []string{"iptables-save", "ip6tables-save"} {
			loopback := "-A EGRET_OUTPUT -d 127.0.0.0/8 -j RETURN"
			if save == "ip6tables-save" {
				loopback = "-A EGRET_OUTPUT -d ::1/128 -j RETURN"
			}
			requireLines(t, save, n.run(save, "-t", "nat"),
				"-A OUTPUT -p tcp -m comment --comment egret -j EGRET_OUTPUT",
				"-A EGRET_OUTPUT -m owner --uid-owner 65532 -j RETURN",
				loopback,
				"-A EGRET_OUTPUT -p tcp -m multiport --dports 80,443 -j REDIRECT --to-ports 3129",
			)
		}
	},
	checkSegment: func(t *testing.T, n *netns, iface string) {
		for _, save := range []string{"iptables-save", "ip6tables-save"} {
			requireLines(t, save, n.run(save, "-t", "nat"),
				"-A PREROUTING -i "+iface+" -p tcp -m comment --comment egret -j EGRET_PREROUTING",
				"-A EGRET_PREROUTING -p tcp -m multiport --dports 80,443 -j REDIRECT --to-ports 3129",
			)
		}
	},
	checkDNS: func(t *testing.T, n *netns, mode string) {
		chain, jump := "EGRET_OUTPUT", "-A OUTPUT -p udp -m comment --comment egret -j EGRET_OUTPUT"
		if mode == "segment" {
			chain, jump = "EGRET_PREROUTING", "-A PREROUTING -i seg0 -p udp -m comment --comment egret -j EGRET_PREROUTING"
		}
		for _, save := range []string{"iptables-save", "ip6tables-save"} {
			requireLines(t, save, n.run(save, "-t", "nat"), jump,
				"-A "+chain+" -p udp -m udp --dport 53 -j REDIRECT --to-ports 8053",
				"-A "+chain+" -p tcp -m tcp --dport 53 -j REDIRECT --to-ports 8053",
			)
		}
	},
}

var nftablesBackend = backend{
	script: "./nftables.sh",
	tools:  []string{"root", "ip", "nft", "setpriv", "bash"},
	seed: func(n *netns) {
		n.run("nft", "add", "table", "inet", "other")
		n.run("nft", "add", "chain", "inet", "other", "out", "{ type nat hook output priority 0; }")
		n.run("nft", "add", "rule", "inet", "other", "out", "tcp", "dport", "8080", "redirect", "to", ":9999")
		n.run("nft", "add", "table", "ip", "filter2")
		n.run("nft", "add", "chain", "ip", "filter2", "in", "{ type filter hook input priority 0; }")
		n.run("nft", "add", "rule", "ip", "filter2", "in", "tcp", "dport", "22", "accept")
	},
	dump: func(n *netns) string { return n.run("nft", "list", "ruleset") },
	checkHost: func(t *testing.T, n *netns) {
		chain := nftChain(t, n, "output")
		if chain.Type != "nat" || chain.Hook != "output" || chain.Prio != -100 {
			t.Errorf("chain inet egret_redirect output: %+v, want a nat chain on hook output at priority -100", chain)
		}
		rules := nftRules(t, n, "output")
		if !slices.ContainsFunc(rules, func(r nftRule) bool { return r.matches("meta", "skuid", "65532") && r.has("return") }) {
			t.Errorf("no rule returns egret's own connections (meta skuid %d return): %s", egretUID, n.run("nft", "list", "table", "inet", "egret_redirect"))
		}
		requireRedirect(t, n, rules, "")
	},
	checkSegment: func(t *testing.T, n *netns, iface string) {
		chain := nftChain(t, n, "prerouting")
		if chain.Type != "nat" || chain.Hook != "prerouting" || chain.Prio != -100 {
			t.Errorf("chain inet egret_redirect prerouting: %+v, want a nat chain on hook prerouting at priority -100", chain)
		}
		requireRedirect(t, n, nftRules(t, n, "prerouting"), iface)
	},
	checkDNS: func(t *testing.T, n *netns, mode string) {
		chain := map[string]string{"host": "output", "segment": "prerouting"}[mode]
		for _, r := range nftRules(t, n, chain) {
			var to struct{ Port int }
			raw, ok := r.Expr[len(r.Expr)-1]["redirect"]
			if ok && json.Unmarshal(raw, &to) == nil && to.Port == 8053 &&
				r.matches("meta", "l4proto", `{"set":["tcp","udp"]}`) && r.matches("payload", "dport", "53") {
				return
			}
		}
		t.Errorf("no rule redirects meta l4proto { tcp, udp } th dport 53 to :8053:\n%s", n.run("nft", "list", "table", "inet", "egret_redirect"))
	},
}

func TestIptablesHostMode(t *testing.T)    { testHostMode(t, iptablesBackend) }
func TestIptablesHostDNS(t *testing.T)     { testHostDNS(t, iptablesBackend) }
func TestIptablesSegmentDNS(t *testing.T)  { testSegmentDNS(t, iptablesBackend) }
func TestNftablesHostDNS(t *testing.T)     { testHostDNS(t, nftablesBackend) }
func TestNftablesSegmentDNS(t *testing.T)  { testSegmentDNS(t, nftablesBackend) }
func TestIptablesSegmentMode(t *testing.T) { testSegmentMode(t, iptablesBackend) }
func TestNftablesHostMode(t *testing.T)    { testHostMode(t, nftablesBackend) }
func TestNftablesSegmentMode(t *testing.T) { testSegmentMode(t, nftablesBackend) }

// testHostMode redirects the namespace's own outgoing 80/443 to :3129:
// root's connections to 192.0.2.1:443 and [2001:db8::1]:443 land on
// egret's port, egret's uid's connection reaches the real destination.
func testHostMode(t *testing.T, b backend) {
	requireTools(t, b.tools...)
	n := newNetns(t)
	// The destinations are the namespace's own addresses: nothing leaves it.
	n.run("ip", "addr", "add", "192.0.2.1/32", "dev", "lo")
	n.run("ip", "addr", "add", "2001:db8::1/128", "dev", "lo")
	b.seed(n)
	before := b.dump(n)

	n.run(b.script, "apply")
	once := b.dump(n)
	n.run(b.script, "--mode", "host", "--uid", "65532", "--port", "3129", "apply")
	if twice := b.dump(n); twice != once {
		t.Errorf("apply twice differs from apply once:\n--- once\n%s--- twice\n%s", once, twice)
	}
	b.checkHost(t, n)

	egret := n.listen("[::]:3129")
	real4 := n.listen("192.0.2.1:443")
	real6 := n.listen("[2001:db8::1]:443")
	n.dial("192.0.2.1:443")
	if !accepts(t, egret) || !none(real4) {
		t.Error("root's connection to 192.0.2.1:443 was not redirected to :3129")
	}
	n.dial("[2001:db8::1]:443")
	if !accepts(t, egret) || !none(real6) {
		t.Error("root's connection to [2001:db8::1]:443 was not redirected to :3129")
	}
	n.dialAs(egretUID, "192.0.2.1", "443")
	if !accepts(t, real4) || !none(egret) {
		t.Error("egret's own connection (uid 65532) to 192.0.2.1:443 was redirected: it would loop")
	}
	n.dialAs(egretUID, "2001:db8::1", "443")
	if !accepts(t, real6) || !none(egret) {
		t.Error("egret's own connection (uid 65532) to [2001:db8::1]:443 was redirected: it would loop")
	}

	requireUndone(t, b, n, before)
}

// testHostDNS adds --dns-port 8053: root's DNS over UDP and TCP, to any
// resolver (one on 127.0.0.53 like systemd-resolved's too), lands on
// egret's DNS port; egret's own queries upstream (uid 65532) are not
// redirected, so they cannot loop. Applying again without --dns-port
// leaves exactly the plain redirect.
func testHostDNS(t *testing.T, b backend) {
	requireTools(t, b.tools...)
	n := newNetns(t)
	n.run("ip", "addr", "add", "192.0.2.1/32", "dev", "lo")
	n.run("ip", "addr", "add", "2001:db8::1/128", "dev", "lo")
	b.seed(n)
	before := b.dump(n)
	n.run(b.script, "apply")
	plain := b.dump(n)

	n.run(b.script, "--dns-port", "8053", "apply")
	once := b.dump(n)
	n.run(b.script, "--dns-port", "8053", "apply")
	if twice := b.dump(n); twice != once {
		t.Errorf("apply --dns-port twice differs from once:\n--- once\n%s--- twice\n%s", once, twice)
	}
	b.checkHost(t, n)
	b.checkDNS(t, n, "host")

	door, doorTCP := n.listenUDP("[::]:8053"), n.listen("[::]:8053")
	real4, real4TCP := n.listenUDP("192.0.2.1:53"), n.listen("192.0.2.1:53")
	real6 := n.listenUDP("[2001:db8::1]:53")
	resolved := n.listenUDP("127.0.0.53:53")
	for _, to := range []struct {
		addr string
		real *net.UDPConn
	}{{"192.0.2.1:53", real4}, {"[2001:db8::1]:53", real6}, {"127.0.0.53:53", resolved}} {
		n.sendUDP(to.addr)
		if !receives(t, door) || !silent(to.real) {
			t.Errorf("root's UDP query to %s was not redirected to :8053", to.addr)
		}
	}
	n.dial("192.0.2.1:53")
	if !accepts(t, doorTCP) || !none(real4TCP) {
		t.Error("root's TCP query to 192.0.2.1:53 was not redirected to :8053")
	}
	n.sendUDPAs(egretUID, "192.0.2.1", "53")
	if !receives(t, real4) || !silent(door) {
		t.Error("egret's own UDP query (uid 65532) was redirected: it would loop")
	}
	n.sendUDPAs(egretUID, "2001:db8::1", "53")
	if !receives(t, real6) || !silent(door) {
		t.Error("egret's own UDP query (uid 65532) to [2001:db8::1]:53 was redirected: it would loop")
	}
	n.dialAs(egretUID, "192.0.2.1", "53")
	if !accepts(t, real4TCP) || !none(doorTCP) {
		t.Error("egret's own TCP query (uid 65532) was redirected: it would loop")
	}

	n.run(b.script, "apply")
	if got := b.dump(n); got != plain {
		t.Errorf("apply without --dns-port after one with it:\n%s\nwant the plain redirect:\n%s", got, plain)
	}
	n.sendUDP("192.0.2.1:53")
	if !receives(t, real4) || !silent(door) {
		t.Error("DNS still redirected after apply without --dns-port")
	}
	requireUndone(t, b, n, before)
}

// testSegmentDNS: with --dns-port, the gateway redirects DNS arriving
// from the segment to its :8053; its own DNS is left alone.
func testSegmentDNS(t *testing.T, b backend) {
	requireTools(t, b.tools...)
	gw, client := segment(t)
	b.seed(gw)
	before := b.dump(gw)
	args := []string{b.script, "--mode", "segment", "--interface", "seg0", "--dns-port", "8053", "apply"}
	gw.run(args...)
	once := b.dump(gw)
	gw.run(args...)
	if twice := b.dump(gw); twice != once {
		t.Errorf("apply twice differs from apply once:\n--- once\n%s--- twice\n%s", once, twice)
	}
	b.checkDNS(t, gw, "segment")

	door, doorTCP := gw.listenUDP("[::]:8053"), gw.listen("[::]:8053")
	real4, real6 := gw.listenUDP("198.51.100.7:53"), gw.listenUDP("[2001:db8:7::7]:53")
	client.sendUDP("198.51.100.7:53")
	if !receives(t, door) || !silent(real4) {
		t.Error("the segment's UDP query to 198.51.100.7:53 was not redirected to the gateway's :8053")
	}
	client.sendUDP("[2001:db8:7::7]:53")
	if !receives(t, door) || !silent(real6) {
		t.Error("the segment's UDP query to [2001:db8:7::7]:53 was not redirected to the gateway's :8053")
	}
	client.dial("198.51.100.7:53")
	if !accepts(t, doorTCP) {
		t.Error("the segment's TCP query was not redirected to the gateway's :8053")
	}
	gw.sendUDP("198.51.100.7:53")
	if !receives(t, real4) || !silent(door) {
		t.Error("the gateway's own query was redirected; segment mode must only touch traffic from seg0")
	}
	requireUndone(t, b, gw, before)
}

// segment returns a gateway namespace and a client namespace routed
// through it over seg0 (the gateway's end), with the remote addresses
// 198.51.100.7 and 2001:db8:7::7 on the gateway's loopback.
func segment(t *testing.T) (gw, client *netns) {
	gw, client = newNetns(t), newNetns(t)
	gw.run("ip", "link", "add", "seg0", "type", "veth", "peer", "name", "up0", "netns", client.name)
	gw.run("ip", "addr", "add", "10.99.0.1/24", "dev", "seg0")
	gw.run("ip", "addr", "add", "fd99::1/64", "dev", "seg0", "nodad")
	gw.run("ip", "link", "set", "seg0", "up")
	gw.run("ip", "addr", "add", "198.51.100.7/32", "dev", "lo")
	gw.run("ip", "addr", "add", "2001:db8:7::7/128", "dev", "lo")
	client.run("ip", "addr", "add", "10.99.0.2/24", "dev", "up0")
	client.run("ip", "addr", "add", "fd99::2/64", "dev", "up0", "nodad")
	client.run("ip", "link", "set", "up0", "up")
	client.run("ip", "route", "add", "default", "via", "10.99.0.1")
	client.run("ip", "-6", "route", "add", "default", "via", "fd99::1")
	return gw, client
}

// testSegmentMode makes a gateway namespace redirect 80/443 arriving from
// a client namespace over a veth pair; the gateway's own traffic is left
// alone.
func testSegmentMode(t *testing.T, b backend) {
	requireTools(t, b.tools...)
	gw, client := segment(t)
	b.seed(gw)
	before := b.dump(gw)

	args := []string{"--mode", "segment", "--interface", "seg0"}
	gw.run(append([]string{b.script}, append(args, "apply")...)...)
	once := b.dump(gw)
	gw.run(append([]string{b.script}, append(args, "apply")...)...)
	if twice := b.dump(gw); twice != once {
		t.Errorf("apply twice differs from apply once:\n--- once\n%s--- twice\n%s", once, twice)
	}
	b.checkSegment(t, gw, "seg0")

	egret := gw.listen("[::]:3129")
	real4 := gw.listen("198.51.100.7:443")
	real6 := gw.listen("[2001:db8:7::7]:443")
	client.dial("198.51.100.7:443")
	if !accepts(t, egret) || !none(real4) {
		t.Error("the segment's connection to 198.51.100.7:443 was not redirected to the gateway's :3129")
	}
	client.dial("[2001:db8:7::7]:443")
	if !accepts(t, egret) || !none(real6) {
		t.Error("the segment's connection to [2001:db8:7::7]:443 was not redirected to the gateway's :3129")
	}
	gw.dial("198.51.100.7:443")
	if !accepts(t, real4) || !none(egret) {
		t.Error("the gateway's own connection was redirected; segment mode must only touch traffic from seg0")
	}

	requireUndone(t, b, gw, before)
}

// requireUndone undoes the redirect twice and requires the rule set from
// before apply, byte for byte.
func requireUndone(t *testing.T, b backend, n *netns, before string) {
	t.Helper()
	n.run(b.script, "undo")
	if after := b.dump(n); after != before {
		t.Errorf("undo did not restore the rule set:\n--- before apply\n%s--- after undo\n%s", before, after)
	}
	n.run(b.script, "undo")
	if after := b.dump(n); after != before {
		t.Errorf("a second undo changed the rule set:\n%s", after)
	}
}

// TestModeSwitchLeavesOneRedirect applies host mode, then segment mode:
// only the segment redirect may remain.
func TestModeSwitchLeavesOneRedirect(t *testing.T) {
	requireTools(t, iptablesBackend.tools...)
	n := newNetns(t)
	n.run("./iptables.sh", "apply")
	n.run("./iptables.sh", "--mode", "segment", "--interface", "seg0", "apply")
	n.run("./iptables.sh", "--mode", "segment", "--interface", "seg1", "apply")
	for _, save := range []string{"iptables-save", "ip6tables-save"} {
		rules := n.run(save, "-t", "nat")
		if strings.Contains(rules, "EGRET_OUTPUT") || strings.Contains(rules, "-i seg0") {
			t.Errorf("%s: an earlier mode's or interface's redirect survived:\n%s", save, rules)
		}
		requireLines(t, save, rules, "-A PREROUTING -i seg1 -p tcp -m comment --comment egret -j EGRET_PREROUTING")
	}
}

// TestScriptsRefuseBadOptions needs no root: options are checked before
// any rule is touched.
func TestScriptsRefuseBadOptions(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no command", nil, "usage:"},
		{"unknown command", []string{"remove"}, "unknown command remove"},
		{"unknown option", []string{"--prot", "3129", "apply"}, "unknown option --prot"},
		{"option without value", []string{"--port"}, "--port needs a value"},
		{"port not a number", []string{"--port", "http", "apply"}, "--port http: want a port number"},
		{"port out of range", []string{"--port", "70000", "apply"}, "--port 70000"},
		{"dns port not a number", []string{"--dns-port", "dns", "apply"}, "--dns-port dns: want a port number"},
		{"dns port without value", []string{"--dns-port"}, "--dns-port needs a value"},
		{"bad port list", []string{"--ports", "80,x", "apply"}, "x is not a port or a range"},
		{"backwards range", []string{"--ports", "90-80", "apply"}, "90-80 is not a port or a range"},
		{"bad mode", []string{"--mode", "router", "apply"}, "--mode router: want host or segment"},
		{"bad family", []string{"--family", "ip4", "apply"}, "--family ip4"},
		{"segment without interface", []string{"--mode", "segment", "apply"}, "segment mode needs --interface"},
		{"unknown user", []string{"--uid", "no-such-user-egret", "apply"}, "--uid no-such-user-egret: no such user"},
	}
	for _, script := range []string{"./iptables.sh", "./nftables.sh"} {
		for _, c := range cases {
			t.Run(script+"/"+c.name, func(t *testing.T) {
				out, err := exec.Command(script, c.args...).CombinedOutput()
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != 2 {
					t.Fatalf("exit %v, want 2; output:\n%s", err, out)
				}
				if !strings.Contains(string(out), c.want) {
					t.Errorf("output %q does not say %q", out, c.want)
				}
			})
		}
		if out, err := exec.Command(script, "--help").CombinedOutput(); err != nil || !strings.Contains(string(out), "--interface IF") || !strings.Contains(string(out), "--dns-port N") {
			t.Errorf("%s --help: %v\n%s", script, err, out)
		}
	}
}

func withoutComments(s string) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		if !strings.HasPrefix(line, "#") {
			b.WriteString(line)
		}
	}
	return b.String()
}

// requireLines requires each of want as a whole line of rules.
func requireLines(t *testing.T, what, rules string, want ...string) {
	t.Helper()
	lines := strings.Split(rules, "\n")
	for _, w := range want {
		if !slices.Contains(lines, w) {
			t.Errorf("%s lacks the rule\n  %s\nin:\n%s", what, w, rules)
		}
	}
}

// nft -j output, as much of it as the checks need.
type nftObject struct {
	Chain *nftChainInfo `json:"chain"`
	Rule  *nftRule      `json:"rule"`
}

type nftChainInfo struct {
	Family, Table, Name, Type, Hook string
	Prio                            int
}

type nftRule struct {
	Chain string
	Expr  []map[string]json.RawMessage
}

// nftMatch is one `match` expression: left == right.
type nftMatch struct {
	Left  map[string]json.RawMessage
	Right json.RawMessage
}

// has reports whether the rule has an expression of kind (return, redirect).
func (r nftRule) has(kind string) bool {
	return slices.ContainsFunc(r.Expr, func(e map[string]json.RawMessage) bool { _, ok := e[kind]; return ok })
}

// matches reports whether the rule compares left (meta, payload) key with
// right, as JSON.
func (r nftRule) matches(left, key, right string) bool {
	for _, e := range r.Expr {
		var m nftMatch
		if raw, ok := e["match"]; !ok || json.Unmarshal(raw, &m) != nil {
			continue
		}
		var sel struct{ Key, Field string }
		if raw, ok := m.Left[left]; ok && json.Unmarshal(raw, &sel) == nil &&
			(sel.Key == key || sel.Field == key) && compactJSON(m.Right) == right {
			return true
		}
	}
	return false
}

func compactJSON(raw json.RawMessage) string {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return ""
	}
	out, _ := json.Marshal(v)
	return string(out)
}

func nftObjects(t *testing.T, n *netns) []nftObject {
	t.Helper()
	var doc struct{ Nftables []nftObject }
	out := n.run("nft", "-j", "list", "table", "inet", "egret_redirect")
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("nft -j list table inet egret_redirect: %v\n%s", err, out)
	}
	return doc.Nftables
}

func nftChain(t *testing.T, n *netns, name string) nftChainInfo {
	t.Helper()
	for _, o := range nftObjects(t, n) {
		if o.Chain != nil && o.Chain.Name == name {
			return *o.Chain
		}
	}
	t.Fatalf("no chain %s in table inet egret_redirect", name)
	return nftChainInfo{}
}

func nftRules(t *testing.T, n *netns, chain string) []nftRule {
	t.Helper()
	var rules []nftRule
	for _, o := range nftObjects(t, n) {
		if o.Rule != nil && o.Rule.Chain == chain {
			rules = append(rules, *o.Rule)
		}
	}
	return rules
}

// requireRedirect requires a rule redirecting TCP 80 and 443 (arriving on
// iface, if not empty) to port 3129.
func requireRedirect(t *testing.T, n *netns, rules []nftRule, iface string) {
	t.Helper()
	for _, r := range rules {
		var to struct{ Port int }
		raw, ok := r.Expr[len(r.Expr)-1]["redirect"]
		if !ok || json.Unmarshal(raw, &to) != nil || to.Port != 3129 {
			continue
		}
		if !r.matches("payload", "dport", `{"set":[80,443]}`) {
			continue
		}
		if iface != "" && !r.matches("meta", "iifname", `"`+iface+`"`) {
			continue
		}
		return
	}
	t.Errorf("no rule redirects tcp dport {80, 443} (iifname %q) to :3129:\n%s", iface, n.run("nft", "list", "table", "inet", "egret_redirect"))
}
