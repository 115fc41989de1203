package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/egret-proxy/egret/telemetry"
	"github.com/egret-proxy/egret/telemetry/telemetrytest"
	mdns "github.com/miekg/dns"
)

// dnsAsk sends one query to the door and returns the answer's rcode and
// A addresses.
func dnsAsk(t *testing.T, addr, proto, name string, qtype uint16) (string, []string) {
	t.Helper()
	c := &mdns.Client{Net: proto, Timeout: 5 * time.Second}
	r, _, err := c.Exchange(new(mdns.Msg).SetQuestion(name, qtype), addr)
	if err != nil {
		t.Fatalf("%s %s: %v", proto, name, err)
	}
	var addrs []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*mdns.A); ok {
			addrs = append(addrs, a.A.String())
		}
	}
	return mdns.RcodeToString[r.Rcode], addrs
}

// dnsLines are the decision lines of the DNS door in a log.
func dnsLines(t *testing.T, log string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(log), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["listener"] == "dns" {
			out = append(out, m)
		}
	}
	return out
}

// egret serve --dns: the door answers with the configured products,
// logs to the same decision log, counts in egret_decisions_total, and
// after a reload decides with the new products and dns_ settings.
func TestServeDNSDoor(t *testing.T) {
	_, port := upstream(t)
	dnsAddr := freeAddr(t)
	s := startServe(t, "product: [local]\ndns_upstream: 127.0.0.1:9\n", port, "--dns", dnsAddr)
	s.waitFor(func() bool { return strings.Contains(s.stderr.String(), "DNS door on "+dnsAddr) }, "the DNS door")

	for _, proto := range []string{"udp", "tcp"} {
		rcode, addrs := dnsAsk(t, dnsAddr, proto, "example.com.", mdns.TypeA)
		if rcode != "NOERROR" || len(addrs) != 1 || addrs[0] != "127.0.0.1" {
			t.Errorf("%s: pinned and allowed example.com: %s %v", proto, rcode, addrs)
		}
	}
	if rcode, _ := dnsAsk(t, dnsAddr, "udp", "example.org.", mdns.TypeA); rcode != "REFUSED" {
		t.Errorf("denied example.org: %s", rcode)
	}
	if rcode, _ := dnsAsk(t, dnsAddr, "udp", "example.com.", mdns.TypeTXT); rcode != "REFUSED" {
		t.Errorf("TXT: %s", rcode)
	}
	var lines []map[string]any
	s.waitFor(func() bool { lines = dnsLines(t, s.stdout.String()); return len(lines) >= 4 }, "four DNS decision lines") // stdout is copied by a goroutine
	if len(lines) != 4 {
		t.Fatalf("%d DNS decision lines, want 4:\n%s", len(lines), s.stdout.String())
	}
	for i, want := range []map[string]any{
		{"decision": "allow", "host": "example.com", "qtype": "A", "proto": "udp", "product": "local", "answers": float64(1)},
		{"decision": "allow", "proto": "tcp"},
		{"decision": "deny", "host": "example.org", "reason": "no-rule"},
		{"decision": "deny", "qtype": "TXT", "reason": "qtype"},
	} {
		for k, v := range want {
			if lines[i][k] != v {
				t.Errorf("line %d: %s = %v, want %v", i, k, lines[i][k], v)
			}
		}
		if lines[i]["method"] != "DNS" || lines[i]["port"] != nil {
			t.Errorf("line %d: %v", i, lines[i])
		}
	}
	fams := telemetrytest.Scrape(t, "http://"+s.admin+"/metrics")
	if n := telemetrytest.Value(fams, telemetry.MetricDecisions, map[string]string{"product": "local", "decision": "deny", "reason": "qtype"}); n != 1 {
		t.Errorf("egret_decisions_total{reason=qtype} = %v, want 1", n)
	}

	os.WriteFile(s.cfgPath, []byte("product: [netapp-connector-aws]\ndns_upstream: 127.0.0.1:9\ndns_deny: nxdomain\n"), 0o644)
	s.cmd.Process.Signal(syscall.SIGHUP)
	s.waitFor(func() bool {
		rcode, _ := dnsAsk(t, dnsAddr, "udp", "example.com.", mdns.TypeA)
		return rcode == "NXDOMAIN"
	}, "the reload to reach the DNS door")
}

// A door whose upstream is the door itself would send every query round
// in a loop: egret refuses to start.
func TestServeDNSRefusesItselfAsUpstream(t *testing.T) {
	dnsAddr := freeAddr(t)
	var errOut bytes.Buffer
	cmd := exec.Command(egretBinary(t), "serve", "--listen", freeAddr(t), "--admin", "", "--dns", dnsAddr, "--dns-upstream", dnsAddr)
	cmd.Stderr = &errOut
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(errOut.String(), "egret's own DNS door") {
		t.Fatalf("err %v, stderr %q", err, errOut.String())
	}
}
