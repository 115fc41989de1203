package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Every scenario, run for a tiny count against the built-in relay (on
// loopback, in this process, sampled through /proc like any proxy) and
// directly: the operations must succeed end to end. No timing is
// asserted; the figures of so short a run mean nothing.
func TestScenariosThroughRelayAndDirect(t *testing.T) {
	ups := startTestUpstreams(t)
	relay := listenLoopback(t)
	go ServeRelay(relay, "127.0.0.1")
	for _, tc := range []struct {
		name   string
		client Client
		pid    int
		bare   bool
	}{
		{"direct", Client{Kind: KindDirect, Addr: "127.0.0.1"}, 0, false},
		{"relay", Client{Kind: KindExplicit, ProxyAddr: relay.Addr().String()}, os.Getpid(), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.client
			c.Host, c.DenyHost, c.Ports, c.Roots = "bench.example", "denied.example", ups.Ports(), ups.RootCAs()
			results, err := Run(Config{Target: tc.name, Client: &c, ProxyPID: tc.pid, Bare: tc.bare,
				Duration: 300 * time.Millisecond, MaxOps: 5, Concurrency: 2, IdleTunnels: 3, Scenarios: Scenarios})
			if err != nil {
				t.Fatal(err)
			}
			if len(results) != len(Scenarios) {
				t.Fatalf("%d results for %d scenarios", len(results), len(Scenarios))
			}
			for _, r := range results {
				checkResult(t, r, tc.bare, tc.pid != 0)
			}
		})
	}
}

func checkResult(t *testing.T, r Result, bare, sampled bool) {
	t.Helper()
	switch {
	case r.Scenario == "deny" && (bare || r.Target == "direct"),
		r.Scenario == "http" && bare:
		if r.Skipped == "" {
			t.Errorf("%s: ran, want skipped", r.Scenario)
		}
		return
	case r.Skipped != "":
		t.Errorf("%s: skipped (%s)", r.Scenario, r.Skipped)
		return
	}
	if r.Errors != 0 || r.Ops == 0 {
		t.Errorf("%s: %d ops, %d errors (first: %s)", r.Scenario, r.Ops, r.Errors, r.FirstError)
	}
	switch r.Scenario {
	case "idle":
		if r.Opened != 3 || r.Tunnels != 3 {
			t.Errorf("idle: opened %d of %d, want 3 of 3", r.Opened, r.Tunnels)
		}
		if sampled && r.ProxyFDsAfter <= r.ProxyFDsBefore {
			t.Errorf("idle: proxy descriptors %d before, %d with 3 tunnels open", r.ProxyFDsBefore, r.ProxyFDsAfter)
		}
	case "bulk1", "bulk8":
		if r.Gbps <= 0 {
			t.Errorf("%s: no bytes moved", r.Scenario)
		}
	default:
		if r.Ops > 5 || r.P50Ms <= 0 || r.P999Ms < r.P50Ms {
			t.Errorf("%s: %d ops (max 5), p50 %v p999 %v ms", r.Scenario, r.Ops, r.P50Ms, r.P999Ms)
		}
	}
}

// A proxy that refuses the denied name with 403 and relays the rest: the
// deny scenario's client must see each refusal as a success.
func TestDenyScenario(t *testing.T) {
	ups := startTestUpstreams(t)
	l := listenLoopback(t)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go denyingProxy(c)
		}
	}()
	c := &Client{Kind: KindExplicit, ProxyAddr: l.Addr().String(), Host: "bench.example", DenyHost: "denied.example",
		Ports: ups.Ports(), Roots: ups.RootCAs()}
	results, err := Run(Config{Target: "denier", Client: c, Duration: 2 * time.Second, MaxOps: 4, Concurrency: 2,
		Scenarios: []string{"deny"}})
	if err != nil {
		t.Fatal(err)
	}
	if r := results[0]; r.Ops != 4 || r.Errors != 0 {
		t.Errorf("deny: %d ops, %d errors (%s), want 4 and 0", r.Ops, r.Errors, r.FirstError)
	}
	// The relay lets the denied name through: that is an error.
	relay := listenLoopback(t)
	go ServeRelay(relay, "127.0.0.1")
	c.ProxyAddr = relay.Addr().String()
	results, err = Run(Config{Target: "relay", Client: c, Duration: 2 * time.Second, MaxOps: 2, Concurrency: 1,
		Scenarios: []string{"deny"}})
	if err != nil {
		t.Fatal(err)
	}
	if r := results[0]; r.Errors != 2 || !strings.Contains(r.FirstError, "want 403") {
		t.Errorf("deny through the relay: %d errors (%q), want 2 saying it wanted 403", r.Errors, r.FirstError)
	}
}

func denyingProxy(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
		return
	}
	io.WriteString(c, "HTTP/1.1 403 Forbidden\r\nContent-Length: 7\r\nConnection: close\r\n\r\ndenied\n")
}

func TestReportTablesAndSection(t *testing.T) {
	mk := func(target string, rs ...Result) Report {
		for i := range rs {
			rs[i].Target = target
		}
		return NewReport(target, rs, Machine{CPUs: 2, Model: "test CPU", LoadAvg: "0.10 0.20 0.30"})
	}
	reports := []Report{
		mk("direct", Result{Scenario: "tls1", P99Ms: 1.0, Ops: 10}, Result{Scenario: "deny", Skipped: "no policy"}),
		mk("relay", Result{Scenario: "bulk1", Gbps: 20, Ops: 1}),
		mk("squid", Result{Scenario: "bulk1", Gbps: 10, Ops: 1}, Result{Scenario: "deny", ProxyCPUPerOpUs: 80, Ops: 10}),
		mk("egret-explicit", Result{Scenario: "bulk1", Gbps: 19, Ops: 1}, Result{Scenario: "tls1", P99Ms: 2.0, Ops: 10},
			Result{Scenario: "deny", ProxyCPUPerOpUs: 40, Ops: 10},
			Result{Scenario: "idle", Tunnels: 10, Opened: 10, Ops: 10, ProxyFDsPerTunnel: 2, ProxyKiBPerTunnel: 20}),
		mk("direct-veth", Result{Scenario: "tls1", P99Ms: 1.5, Ops: 10}),
		mk("egret-transparent", Result{Scenario: "tls1", P99Ms: 1.8, Ops: 10}),
	}
	// Through JSON and back, as the script does.
	dir := t.TempDir()
	var paths []string
	for _, r := range reports {
		b, _ := json.Marshal(r)
		p := filepath.Join(dir, r.Target+".json")
		os.WriteFile(p, b, 0o644)
		paths = append(paths, p)
	}
	read, err := ReadReports(paths)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := WriteTables(&out, read, "quiet machine"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| scenario | direct | relay | squid | egret-explicit | direct-veth | egret-transparent |",
		"| bulk, 1 tunnel (Gbit/s) | – | 20.00 | 10.00 | 19.00 | – | – |",
		"| bulk, 1 tunnel ≥ 0.9× the bare relay | 0.95× met |",
		"| bulk, 1 tunnel ≥ 1.2× Squid | 1.90× met |",
		"| CPU per denied CONNECT ≤ 0.6× Squid | 0.50× met |",
		// The transparent run's baseline is direct over the same veth pair.
		"| added p99 of CONNECT+TLS setup, c=1, ≤ 0.7 ms over direct | +1.000 ms **not met** | +0.300 ms met |",
		"| idle tunnels opened (of those asked for) under the descriptor limit | 10 of 10 met |",
		"| idle: ≤ 16 KiB RSS per tunnel | 20.0 KiB **not met** |",
		"| CPU per forwarded HTTP request ≤ Squid | not measured |",
		"- Conditions: quiet machine",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("tables lack %q:\n%s", want, out.String())
		}
	}

	doc := "# Benchmarks\n\nkept\n"
	once, err := ReplaceSection(doc, "first\n")
	if err != nil {
		t.Fatal(err)
	}
	twice, err := ReplaceSection(once+"\ntail kept\n", "second\n")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(twice, "first") || !strings.Contains(twice, "second\n"+endMarker) ||
		!strings.HasPrefix(twice, doc) || !strings.HasSuffix(twice, "\ntail kept\n") {
		t.Errorf("section not replaced in place:\n%s", twice)
	}
	if _, err := ReplaceSection(endMarker+"\n"+beginMarker+"\n", "x"); err == nil {
		t.Error("markers out of order: no error")
	}
}

func TestSampleProcReadsThisProcess(t *testing.T) {
	s, err := SampleProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.RSSKiB <= 0 || s.FDs < 3 || s.CPUSeconds < 0 {
		t.Errorf("implausible sample of this process: %+v", s)
	}
	if _, err := SampleProc(-1); err == nil {
		t.Error("no error for a process that cannot exist")
	}
}

func startTestUpstreams(t *testing.T) *Upstreams {
	t.Helper()
	ups, err := StartUpstreams("127.0.0.1", 0, "bench.example")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ups.Close)
	return ups
}

func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}
