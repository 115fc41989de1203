package dns

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/egret-proxy/egret/allowlists"
	"github.com/egret-proxy/egret/proxy"
	mdns "github.com/miekg/dns"
)

// testPolicy is the policy of the door's tests: product test allows the
// names below on some port (a proxy rule, or the NTP network rule);
// product other only other.example.com.
const testPolicy = `product: test
title: the DNS door's tests
source: test
proxy:
  - {host: www.example.com, purpose: web}
  - {host: "*.cdn.example.com", purpose: cdn}
  - {host: big.example.com, purpose: an answer larger than 512 bytes}
  - {host: huge.example.com, purpose: an answer larger than the upstream's UDP size}
  - {host: rebind.example.com, purpose: an answer with a private address}
  - {host: inside.example.com, purpose: an answer in the internal range}
  - {host: only10.example.com, purpose: an answer with private addresses only}
  - {cidr: 10.1.2.0/24, purpose: the internal range}
  - {host: svc.example.com, purpose: an HTTPS record with ech}
  - {host: alias.example.com, purpose: a CNAME chain}
  - {host: missing.example.com, purpose: NXDOMAIN upstream}
  - {host: slow.example.com, purpose: an upstream that never answers}
  - {host: pinned.example.com, purpose: a --resolve pin}
  - {host: denied.example.com, purpose: allowed but for a deny entry}
network:
  - {protocol: udp, ports: ["123"], destination: "ntp{1,2}.example.net", direction: egress, purpose: NTP}
  - {protocol: udp, ports: ["514"], destination: "syslog.example.net", direction: ingress, purpose: only ingress}
`

const otherPolicy = `product: other
title: another product
source: test
proxy:
  - {host: other.example.com, purpose: other}
`

// upstreamZone is what the test's upstream resolver answers.
var upstreamZone = map[string][]string{
	"www.example.com. A":     {"www.example.com. 3600 IN A 93.184.216.34"},
	"www.example.com. AAAA":  {"www.example.com. 3600 IN AAAA 2606:2800:220:1::248:1893"},
	"a.cdn.example.com. A":   {"a.cdn.example.com. 60 IN A 93.184.216.35"},
	"ntp1.example.net. A":    {"ntp1.example.net. 120 IN A 93.184.216.123"},
	"other.example.com. A":   {"other.example.com. 60 IN A 93.184.216.36"},
	"rebind.example.com. A":  {"rebind.example.com. 60 IN A 10.0.0.1", "rebind.example.com. 60 IN A 93.184.216.37", "rebind.example.com. 60 IN A 169.254.169.254"},
	"inside.example.com. A":  {"inside.example.com. 60 IN A 10.1.2.3"},
	"denied.example.com. A":  {"denied.example.com. 60 IN A 93.184.216.38"},
	"only10.example.com. A":  {"only10.example.com. 60 IN A 10.9.9.9"},
	"alias.example.com. A":   {"alias.example.com. 30 IN CNAME edge.example.org.", "edge.example.org. 20 IN A 93.184.216.39", "evil.example.org. 600 IN A 93.184.216.40"},
	"www.example.com. TXT":   {`www.example.com. 60 IN TXT "v=spf1 -all"`},
	"svc.example.com. HTTPS": {`svc.example.com. 300 IN HTTPS 1 . alpn="h2,h3" mandatory=alpn,ech ech="AEX+DQBBAQAgACBsTumfZ7Sbj0UTo9Fo3k7hxr2SWAJ0nrmKlVhQrb0oSQAEAAEAAQASY2xvdWRmbGFyZS1lY2guY29tAAA=" ipv4hint=93.184.216.41,10.0.0.9`},
	"svc.example.com. SVCB":  {`svc.example.com. 300 IN SVCB 1 . alpn=h2 ech="AEX+DQBBAQAgACBsTumfZ7Sbj0UTo9Fo3k7hxr2SWAJ0nrmKlVhQrb0oSQAEAAEAAQASY2xvdWRmbGFyZS1lY2guY29tAAA="`},
}

func init() {
	var big, huge []string
	for i := 1; i <= 60; i++ {
		big = append(big, fmt.Sprintf("big.example.com. 60 IN A 93.184.217.%d", i))
	}
	for i := 1; i <= 150; i++ {
		huge = append(huge, fmt.Sprintf("huge.example.com. 60 IN A 93.184.218.%d", i%250+1))
	}
	upstreamZone["big.example.com. A"] = big
	upstreamZone["huge.example.com. A"] = huge
}

// upstream is a resolver on loopback (UDP and TCP, one port) that answers
// from upstreamZone, truncating UDP answers to the asker's size as a real
// one does, and counts the questions it gets.
type upstream struct {
	addr string
	mu   sync.Mutex
	seen map[string]int // "name type proto" → count
}

func startUpstream(t testing.TB) *upstream {
	t.Helper()
	pc, ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{addr: pc.LocalAddr().String(), seen: map[string]int{}}
	for _, srv := range []*mdns.Server{
		{PacketConn: pc, Handler: u.handler("udp")},
		{Listener: ln, Handler: u.handler("tcp")},
	} {
		go srv.ActivateAndServe()
		t.Cleanup(func() { srv.Shutdown() })
	}
	return u
}

func (u *upstream) handler(proto string) mdns.HandlerFunc {
	return func(w mdns.ResponseWriter, req *mdns.Msg) {
		q := req.Question[0]
		key := strings.ToLower(q.Name) + " " + mdns.Type(q.Qtype).String()
		u.mu.Lock()
		u.seen[key+" "+proto]++
		u.mu.Unlock()
		if strings.HasPrefix(key, "slow.") {
			return // never answers
		}
		resp := new(mdns.Msg).SetReply(req)
		records, ok := upstreamZone[key]
		if !ok && strings.HasSuffix(key, ".cdn.example.com. A") {
			records, ok = []string{q.Name + " 60 IN A 93.184.216.35"}, true
		}
		if !ok && !hasName(q.Name) {
			resp.Rcode = mdns.RcodeNameError
			resp.Ns = []mdns.RR{mustRR("example.com. 3600 IN SOA ns.example.com. hostmaster.example.com. 1 7200 3600 1209600 3600")}
		}
		for _, s := range records {
			resp.Answer = append(resp.Answer, mustRR(s))
		}
		resp.Extra = append(resp.Extra, mustRR("ns.example.com. 3600 IN A 10.0.0.53"))
		if proto == "udp" {
			size := mdns.MinMsgSize
			if opt := req.IsEdns0(); opt != nil {
				size = int(opt.UDPSize())
				resp.SetEdns0(opt.UDPSize(), false)
			}
			resp.Truncate(size)
		}
		w.WriteMsg(resp)
	}
}

func (u *upstream) count(key string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.seen[key]
}

func hasName(name string) bool {
	for k := range upstreamZone {
		if strings.HasPrefix(k, strings.ToLower(name)+" ") {
			return true
		}
	}
	return false
}

func mustRR(s string) mdns.RR {
	rr, err := mdns.NewRR(s)
	if err != nil {
		panic(fmt.Sprintf("%s: %v", s, err))
	}
	return rr
}

// syncBuffer is a buffer the door writes its log into and the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines(t testing.TB) []map[string]any {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range bytes.Split(bytes.TrimSpace(s.b.Bytes()), []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// door is a DNS door serving on loopback, deciding with testPolicy.
type door struct {
	t    testing.TB
	addr string // UDP and TCP
	srv  *Server
	px   *proxy.Server
	log  *syncBuffer
	up   *upstream
}

type doorOpts struct {
	options Options
	rules   func(*proxy.Rules) // adjusts the rules before the door starts
	sets    SetAdder
	deny    []string
	server  []proxy.Option // for the proxy server (telemetry)
	log     io.Writer      // instead of the test's buffer
}

// newDoor starts a door whose upstream is a fresh test upstream (unless
// o.options names one) and whose default identity has product test.
func newDoor(t testing.TB, o doorOpts) *door {
	t.Helper()
	pol := compilePolicy(t, allowlists.Settings{Deny: append([]string{"denied.example.com"}, o.deny...)})
	def, err := pol.Identity("default", "test")
	if err != nil {
		t.Fatal(err)
	}
	rules := &proxy.Rules{Policy: pol, Default: proxy.Client{Name: "default", Identity: def},
		Pins: map[string]netip.Addr{"pinned.example.com": netip.MustParseAddr("93.184.216.50")}}
	if o.rules != nil {
		o.rules(rules)
	}
	d := &door{t: t, log: &syncBuffer{}}
	var w io.Writer = d.log
	if o.log != nil {
		w = o.log
	}
	d.px = proxy.NewServer(proxy.NewDecisionLog(w, nil), rules, o.server...)
	if o.options.Upstream == "" {
		d.up = startUpstream(t)
		o.options.Upstream = d.up.addr
	}
	var opts []Option
	if o.sets != nil {
		opts = append(opts, WithSets(o.sets))
	}
	opts = append(opts, WithWarnings(func(err error) { t.Logf("door warning: %v", err) }))
	d.srv = New(d.px, o.options, opts...)
	pc, ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d.addr = pc.LocalAddr().String()
	go d.srv.ServeUDP(pc)
	go d.srv.ServeTCP(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		d.srv.Shutdown(ctx)
	})
	waitServing(t, d.addr)
	return d
}

// compilePolicy compiles testPolicy and otherPolicy.
func compilePolicy(t testing.TB, s allowlists.Settings) *allowlists.Policy {
	t.Helper()
	var files []*allowlists.File
	for i, doc := range []string{testPolicy, otherPolicy} {
		f, err := allowlists.ParseFile(fmt.Sprintf("test%d.yaml", i), []byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	cat, err := allowlists.NewCatalog(files...)
	if err != nil {
		t.Fatal(err)
	}
	pol, _, err := allowlists.Compile(cat, s)
	if err != nil {
		t.Fatal(err)
	}
	return pol
}

// waitServing waits until the door answers over UDP and TCP (the
// servers start in goroutines).
func waitServing(t testing.TB, addr string) {
	t.Helper()
	for _, proto := range []string{"udp", "tcp"} {
		c := &mdns.Client{Net: proto, Timeout: 200 * time.Millisecond}
		deadline := time.Now().Add(5 * time.Second)
		for {
			m := new(mdns.Msg).SetQuestion("probe.invalid.", mdns.TypeA)
			if _, _, err := c.Exchange(m, addr); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the door on %s does not answer over %s", addr, proto)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// ask sends one query with the library's client and returns the answer.
func (d *door) ask(proto, name string, qtype uint16, edit ...func(*mdns.Msg)) *mdns.Msg {
	d.t.Helper()
	m := new(mdns.Msg).SetQuestion(name, qtype)
	for _, e := range edit {
		e(m)
	}
	c := &mdns.Client{Net: proto, Timeout: 5 * time.Second, UDPSize: 65535}
	r, _, err := c.Exchange(m, d.addr)
	if err != nil {
		d.t.Fatalf("%s %s %s: %v", proto, name, mdns.Type(qtype), err)
	}
	return r
}

// lastLine returns the last decision line for host (and qtype if given).
func (d *door) lastLine(host, qtype string) map[string]any {
	d.t.Helper()
	lines := d.log.lines(d.t)
	for i := len(lines) - 1; i >= 0; i-- {
		l := lines[i]
		if l["host"] == host && (qtype == "" || l["qtype"] == qtype) {
			return l
		}
	}
	d.t.Fatalf("no decision line for %s %s in:\n%v", host, qtype, lines)
	return nil
}

func wantFields(t testing.TB, line map[string]any, want map[string]any) {
	t.Helper()
	for k, v := range want {
		got, ok := line[k]
		if v == nil {
			if ok {
				t.Errorf("log line has %s=%v, want none: %v", k, got, line)
			}
			continue
		}
		if !ok {
			t.Errorf("log line lacks %q: %v", k, line)
			continue
		}
		if fmt.Sprint(got) != fmt.Sprint(v) {
			t.Errorf("log %s = %v, want %v (line %v)", k, got, v, line)
		}
	}
}

// tool returns the path of a client the tests run; it skips the test
// when it is missing, and fails it under CI, which installs it.
func tool(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed (.ci/run installs it)", name)
		}
		t.Skipf("%s is not installed", name)
	}
	return path
}

// run runs a DNS client and returns its output; a client that fails is a
// failed test.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, tool(t, name), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func hostPort(t testing.TB, addr string) (string, string) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

// labClient adds the client lab: source 127.0.0.2, product other.
func labClient(t testing.TB) func(*proxy.Rules) {
	return func(r *proxy.Rules) {
		id, err := r.Policy.Identity("lab", "other")
		if err != nil {
			t.Fatal(err)
		}
		r.Clients = append(r.Clients, proxy.Client{Name: "lab", Sources: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}, Identity: id})
	}
}
