package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSystemdGatewayDropIn runs the gateway drop-in's ExecStartPre lines
// as systemd would, in a namespace of the test's own with a segment
// interface: the shipped redirect script and `egret export` of the
// configuration's products, piped into nft. The redirect's table and the
// exported filter table stand side by side, a restart (the lines run
// again) leaves one of each, and undoing the redirect leaves the filter.
func TestSystemdGatewayDropIn(t *testing.T) {
	requireTools(t, "root", "ip", "nft", "go")
	opts := unitOptions(t, "systemd/gateway/gateway.conf")
	pre := opts["Service.ExecStartPre"]
	if len(pre) != 2 {
		t.Fatalf("ExecStartPre %q: want the redirect, then the export", pre)
	}
	if start := opts["Service.ExecStart"]; len(start) != 2 || !strings.Contains(start[1], "--nft-sets egret") || !strings.Contains(start[1], "--dns ") {
		t.Errorf("ExecStart %q: the DNS door must fill the exported table's sets (--dns, --nft-sets egret)", start)
	}

	dir := t.TempDir()
	bin := filepath.Join(dir, "egret")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/egret").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	conf := filepath.Join(dir, "egret.yaml")
	if err := os.WriteFile(conf, []byte("product: [dt-cloud-connector-2g]\nvariables:\n  lan_dhcp_server: 192.168.50.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	script, _ := filepath.Abs("nftables.sh")
	local := strings.NewReplacer(
		"/usr/local/lib/egret/nftables.sh", script,
		"/usr/local/bin/egret", bin,
		"/etc/egret/egret.yaml", conf,
		"ETH1", "seg0",
	)
	n := newNetns(t)
	n.run("ip", "link", "add", "seg0", "type", "veth", "peer", "name", "seg1")
	n.run("ip", "link", "set", "seg0", "up")
	for round := 1; round <= 2; round++ { // start, then a restart
		for _, line := range pre {
			cmd := strings.Fields(local.Replace(strings.TrimPrefix(line, "+")))
			if cmd[0] == "/bin/sh" { // sh -c '…': one argument after -c
				body := strings.TrimSuffix(strings.TrimPrefix(local.Replace(line[strings.Index(line, "'"):]), "'"), "'")
				cmd = []string{"/bin/sh", "-c", body}
			}
			if out, err := n.try(cmd...); err != nil {
				t.Fatalf("round %d: %v: %v\n%s", round, cmd, err, out)
			}
		}
		tables := n.run("nft", "list", "tables")
		if strings.Count(tables, "table inet egret\n") != 1 || strings.Count(tables, "table inet egret_redirect\n") != 1 {
			t.Fatalf("round %d: nft list tables:\n%s", round, tables)
		}
	}
	filter := n.run("nft", "list", "table", "inet", "egret")
	for _, want := range []string{
		`iifname "seg0" jump egress`,
		"ip daddr 192.168.50.1 udp dport 53 accept", // the DHCP server as resolver, from the configuration's variables
		"set dt_cloud_connector_2g_n1_v4",           // time{1,2,3,4}.google.com, for the DNS door
		`log prefix "egret drop " drop`,
	} {
		if !strings.Contains(filter, want) {
			t.Errorf("exported table lacks %q:\n%s", want, filter)
		}
	}
	if redirect := n.run("nft", "list", "table", "inet", "egret_redirect"); !strings.Contains(redirect, "redirect to :3129") {
		t.Errorf("redirect table:\n%s", redirect)
	}
	if out, err := n.try(script, "undo"); err != nil {
		t.Fatalf("undo: %v\n%s", err, out)
	}
	if tables := n.run("nft", "list", "tables"); strings.TrimSpace(tables) != "table inet egret" {
		t.Errorf("after undo of the redirect, nft list tables:\n%s", tables)
	}
}
