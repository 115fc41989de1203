package dns

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/egret-proxy/egret/proxy"
	mdns "github.com/miekg/dns"
)

// addrsOf lists the A and AAAA addresses of an answer, as text.
func addrsOf(rrs []mdns.RR) []string {
	var out []string
	for _, rr := range rrs {
		switch r := rr.(type) {
		case *mdns.A:
			out = append(out, r.A.String())
		case *mdns.AAAA:
			out = append(out, r.AAAA.String())
		}
	}
	return out
}

func TestDecides(t *testing.T) {
	d := newDoor(t, doorOpts{options: Options{UpstreamTimeout: 300 * time.Millisecond}})
	for _, tc := range []struct {
		name, qname string
		qtype       uint16
		rcode       int
		addrs       []string
		line        map[string]any
	}{
		{"proxy rule", "www.example.com.", mdns.TypeA, mdns.RcodeSuccess, []string{"93.184.216.34"},
			map[string]any{"decision": "allow", "reason": "rule", "rule": "www.example.com", "product": "test", "source": "test", "answers": 1, "rcode": "NOERROR"}},
		{"proxy rule, AAAA", "www.example.com.", mdns.TypeAAAA, mdns.RcodeSuccess, []string{"2606:2800:220:1::248:1893"},
			map[string]any{"decision": "allow", "qtype": "AAAA"}},
		{"upper case and no port", "WWW.Example.COM.", mdns.TypeA, mdns.RcodeSuccess, []string{"93.184.216.34"},
			map[string]any{"decision": "allow", "host": "www.example.com", "port": nil}},
		{"wildcard", "a.cdn.example.com.", mdns.TypeA, mdns.RcodeSuccess, []string{"93.184.216.35"},
			map[string]any{"decision": "allow", "rule": "*.cdn.example.com"}},
		{"network rule naming a host", "ntp1.example.net.", mdns.TypeA, mdns.RcodeSuccess, []string{"93.184.216.123"},
			map[string]any{"decision": "allow", "rule": "ntp{1,2}.example.net", "product": "test"}},
		{"ingress network rule names no destination", "syslog.example.net.", mdns.TypeA, mdns.RcodeRefused, nil,
			map[string]any{"decision": "deny", "reason": "no-rule"}},
		{"no rule", "example.org.", mdns.TypeA, mdns.RcodeRefused, nil,
			map[string]any{"decision": "deny", "reason": "no-rule", "rcode": "REFUSED", "answers": 0}},
		{"another product's name", "other.example.com.", mdns.TypeA, mdns.RcodeRefused, nil,
			map[string]any{"decision": "deny", "reason": "no-rule"}},
		{"deny entry", "denied.example.com.", mdns.TypeA, mdns.RcodeRefused, nil,
			map[string]any{"decision": "deny", "reason": "deny-entry", "rule": "denied.example.com"}},
		{"NXDOMAIN upstream", "missing.example.com.", mdns.TypeA, mdns.RcodeNameError, nil,
			map[string]any{"decision": "allow", "rcode": "NXDOMAIN", "answers": 0}},
		{"pinned", "pinned.example.com.", mdns.TypeA, mdns.RcodeSuccess, []string{"93.184.216.50"},
			map[string]any{"decision": "allow", "answers": 1}},
		{"pinned, other family", "pinned.example.com.", mdns.TypeAAAA, mdns.RcodeSuccess, nil,
			map[string]any{"decision": "allow", "answers": 0}},
		{"upstream silent", "slow.example.com.", mdns.TypeA, mdns.RcodeServerFailure, nil,
			map[string]any{"decision": "allow", "rcode": "SERVFAIL"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := d.ask("udp", tc.qname, tc.qtype)
			if r.Rcode != tc.rcode {
				t.Errorf("rcode %s, want %s", mdns.RcodeToString[r.Rcode], mdns.RcodeToString[tc.rcode])
			}
			if got := addrsOf(r.Answer); !slices.Equal(got, tc.addrs) {
				t.Errorf("addresses %v, want %v", got, tc.addrs)
			}
			if r.Question[0].Name != tc.qname {
				t.Errorf("question %q, want the client's %q", r.Question[0].Name, tc.qname)
			}
			line := d.lastLine(strings.ToLower(strings.TrimSuffix(tc.qname, ".")), mdns.Type(tc.qtype).String())
			wantFields(t, line, map[string]any{"msg": "decision", "listener": "dns", "method": "DNS", "proto": "udp",
				"identity": "default", "products": []string{"test"}, "mode": "enforce"})
			wantFields(t, line, tc.line)
		})
	}
	if n := d.up.count("pinned.example.com. A udp"); n != 0 {
		t.Errorf("a pinned name was asked upstream %d times", n)
	}
	for _, name := range []string{"example.org.", "other.example.com.", "denied.example.com."} {
		if n := d.up.count(name + " A udp"); n != 0 {
			t.Errorf("denied %s was asked upstream %d times", name, n)
		}
	}
	if l := d.lastLine("slow.example.com", "A"); !strings.Contains(l["error"].(string), "upstream") {
		t.Errorf("upstream failure not logged: %v", l)
	}
}

// The answer is what was asked and nothing else: TTLs capped, no
// additional section, a negative answer keeps its SOA (capped too).
func TestAnswerIsCleaned(t *testing.T) {
	d := newDoor(t, doorOpts{options: Options{MaxTTL: 100 * time.Second}})
	r := d.ask("udp", "www.example.com.", mdns.TypeA)
	if len(r.Answer) != 1 || r.Answer[0].Header().Ttl != 100 {
		t.Errorf("answer %v: want one A with its TTL 3600 capped to 100", r.Answer)
	}
	if len(r.Extra) != 0 {
		t.Errorf("additional section %v passed on", r.Extra)
	}
	r = d.ask("udp", "missing.example.com.", mdns.TypeA)
	if len(r.Ns) != 1 {
		t.Fatalf("authority %v: want the SOA", r.Ns)
	}
	if soa := r.Ns[0].(*mdns.SOA); soa.Hdr.Ttl != 100 || soa.Minttl != 100 {
		t.Errorf("SOA TTL %d minimum %d, want both capped to 100", soa.Hdr.Ttl, soa.Minttl)
	}
	// A CNAME chain is followed; an address for a name nobody asked about
	// is dropped.
	r = d.ask("tcp", "alias.example.com.", mdns.TypeA)
	var got []string
	for _, rr := range r.Answer {
		got = append(got, rr.Header().Name+" "+mdns.Type(rr.Header().Rrtype).String())
	}
	if want := []string{"alias.example.com. CNAME", "edge.example.org. A"}; !slices.Equal(got, want) {
		t.Errorf("chain %v, want %v", got, want)
	}
	if !d.srv.Answers().Answered("alias.example.com", netip.MustParseAddr("93.184.216.39")) {
		t.Error("the chain's address is not remembered for the asked name")
	}
	if d.srv.Answers().Answered("alias.example.com", netip.MustParseAddr("93.184.216.40")) {
		t.Error("the smuggled address is remembered")
	}
}

func TestRefusesQueryTypes(t *testing.T) {
	d := newDoor(t, doorOpts{options: Options{NXDomain: true}})
	for _, tc := range []struct {
		proto  string
		qtype  uint16
		qclass uint16
		logged string
	}{
		{"udp", mdns.TypeTXT, mdns.ClassINET, "TXT"},
		{"tcp", mdns.TypeTXT, mdns.ClassINET, "TXT"},
		{"udp", mdns.TypeNULL, mdns.ClassINET, "NULL"},
		{"udp", mdns.TypeANY, mdns.ClassINET, "ANY"},
		{"tcp", mdns.TypeAXFR, mdns.ClassINET, "AXFR"},
		{"tcp", mdns.TypeIXFR, mdns.ClassINET, "IXFR"},
		{"udp", mdns.TypeMX, mdns.ClassINET, "MX"},
		{"udp", mdns.TypePTR, mdns.ClassINET, "PTR"},
		{"udp", mdns.TypeCNAME, mdns.ClassINET, "CNAME"},
		{"udp", 65280, mdns.ClassINET, "TYPE65280"},
		{"udp", mdns.TypeA, mdns.ClassCHAOS, "CH A"},
	} {
		t.Run(tc.logged+"/"+tc.proto, func(t *testing.T) {
			r := d.ask(tc.proto, "www.example.com.", tc.qtype, func(m *mdns.Msg) { m.Question[0].Qclass = tc.qclass })
			if r.Rcode != mdns.RcodeRefused || len(r.Answer) != 0 {
				t.Errorf("rcode %s with %d answers, want REFUSED (even with --dns-deny nxdomain)", mdns.RcodeToString[r.Rcode], len(r.Answer))
			}
			wantFields(t, d.lastLine("www.example.com", tc.logged), map[string]any{"decision": "deny", "reason": "qtype", "rcode": "REFUSED"})
		})
	}
	if n := d.up.count("www.example.com. TXT udp"); n != 0 {
		t.Errorf("TXT asked upstream %d times", n)
	}
	// A denied name gets NXDOMAIN with --dns-deny nxdomain.
	if r := d.ask("udp", "example.org.", mdns.TypeA); r.Rcode != mdns.RcodeNameError {
		t.Errorf("denied name: %s, want NXDOMAIN", mdns.RcodeToString[r.Rcode])
	}
}

func TestBadNames(t *testing.T) {
	d := newDoor(t, doorOpts{})
	for _, name := range []string{
		"nul\\000.example.com.", "sp\\032ace.example.com.", "caf\\195\\169.example.com.", "dot\\.inside.example.com.",
		"xn--.example.com.", "127.0.0.1.", "2130706433.", ".", "per%41cent.example.com.",
	} {
		t.Run(name, func(t *testing.T) {
			r := d.ask("udp", name, mdns.TypeA)
			if r.Rcode != mdns.RcodeRefused {
				t.Errorf("rcode %s, want REFUSED", mdns.RcodeToString[r.Rcode])
			}
			lines := d.log.lines(t)
			wantFields(t, lines[len(lines)-1], map[string]any{"decision": "deny", "reason": "bad-host", "qtype": "A"})
		})
	}
}

// Addresses in guarded ranges leave an allowed answer (DNS rebinding),
// unless a cidr rule or --allow-range lets them through.
func TestGuardsAnswers(t *testing.T) {
	d := newDoor(t, doorOpts{})
	r := d.ask("udp", "rebind.example.com.", mdns.TypeA)
	if got := addrsOf(r.Answer); !slices.Equal(got, []string{"93.184.216.37"}) {
		t.Errorf("answer %v: want only the public address", got)
	}
	wantFields(t, d.lastLine("rebind.example.com", "A"), map[string]any{"decision": "allow", "reason": "private-address", "removed": 2, "answers": 1})
	if d.srv.Answers().Answered("rebind.example.com", netip.MustParseAddr("10.0.0.1")) {
		t.Error("a removed address is remembered as answered")
	}

	r = d.ask("udp", "only10.example.com.", mdns.TypeA)
	if r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 0 {
		t.Errorf("only private: %s with %v, want an empty NOERROR", mdns.RcodeToString[r.Rcode], r.Answer)
	}
	wantFields(t, d.lastLine("only10.example.com", "A"), map[string]any{"decision": "deny", "reason": "private-address", "removed": 1})

	r = d.ask("udp", "inside.example.com.", mdns.TypeA)
	if got := addrsOf(r.Answer); !slices.Equal(got, []string{"10.1.2.3"}) {
		t.Errorf("inside the cidr rule's range: %v", got)
	}
	wantFields(t, d.lastLine("inside.example.com", "A"), map[string]any{"decision": "allow", "reason": "rule", "removed": nil})

	d = newDoor(t, doorOpts{rules: func(r *proxy.Rules) {
		r.Guard.AllowRanges = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	}, deny: []string{"93.184.216.37"}})
	r = d.ask("udp", "rebind.example.com.", mdns.TypeA)
	if got := addrsOf(r.Answer); !slices.Equal(got, []string{"10.0.0.1"}) {
		t.Errorf("with --allow-range 10.0.0.0/8 and a deny entry for the public one: %v", got)
	}
	wantFields(t, d.lastLine("rebind.example.com", "A"), map[string]any{"reason": "deny-entry", "removed": 2})
}

func TestRemovesECH(t *testing.T) {
	d := newDoor(t, doorOpts{})
	r := d.ask("udp", "svc.example.com.", mdns.TypeHTTPS)
	if len(r.Answer) != 1 {
		t.Fatalf("answer %v", r.Answer)
	}
	h := r.Answer[0].(*mdns.HTTPS)
	s := h.String()
	if strings.Contains(s, "ech=") || strings.Contains(s, "10.0.0.9") {
		t.Errorf("HTTPS record %s: ech or the private hint left", s)
	}
	if !strings.Contains(s, `mandatory="alpn" `) || !strings.Contains(s, `ipv4hint="93.184.216.41"`) || !strings.Contains(s, `alpn="h2,h3"`) {
		t.Errorf("HTTPS record %s: want mandatory=alpn, alpn and the public hint kept", s)
	}
	wantFields(t, d.lastLine("svc.example.com", "HTTPS"), map[string]any{"decision": "allow", "ech_removed": 1, "removed": 1, "answers": 1})
	if !d.srv.Answers().Answered("svc.example.com", netip.MustParseAddr("93.184.216.41")) {
		t.Error("the hint is not remembered as answered")
	}
	r = d.ask("tcp", "svc.example.com.", mdns.TypeSVCB)
	if len(r.Answer) != 1 || strings.Contains(r.Answer[0].String(), "ech=") {
		t.Errorf("SVCB answer %v", r.Answer)
	}
	wantFields(t, d.lastLine("svc.example.com", "SVCB"), map[string]any{"ech_removed": 1, "removed": nil})
}

// Identity as on the transparent listener: source address, then
// listener dns, then the default.
func TestIdentityBySource(t *testing.T) {
	d := newDoor(t, doorOpts{rules: labClient(t)})
	ask := func(src, name string) *mdns.Msg {
		c := &mdns.Client{Net: "udp", Timeout: 5 * time.Second,
			Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP(src)}}}
		r, _, err := c.Exchange(new(mdns.Msg).SetQuestion(name, mdns.TypeA), d.addr)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := ask("127.0.0.2", "other.example.com."); r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 {
		t.Errorf("lab asks its name: %v", r)
	}
	wantFields(t, d.lastLine("other.example.com", "A"), map[string]any{"identity": "lab", "products": []string{"other"}, "decision": "allow"})
	if r := ask("127.0.0.2", "www.example.com."); r.Rcode != mdns.RcodeRefused {
		t.Errorf("lab asks the default's name: %s", mdns.RcodeToString[r.Rcode])
	}
	if r := ask("127.0.0.1", "www.example.com."); r.Rcode != mdns.RcodeSuccess {
		t.Errorf("default asks its name: %s", mdns.RcodeToString[r.Rcode])
	}
	wantFields(t, d.lastLine("www.example.com", "A"), map[string]any{"identity": "default"})

	// A client of listener dns takes every query no source matches; a
	// client of another listener takes none.
	swap(d, func(r *proxy.Rules) {
		id, _ := r.Policy.Identity("resolver", "other")
		r.Clients = append(r.Clients,
			proxy.Client{Name: "explicit", Listener: proxy.ListenerExplicit, Identity: id},
			proxy.Client{Name: "resolver", Listener: proxy.ListenerDNS, Identity: id})
	})
	if r := ask("127.0.0.1", "other.example.com."); r.Rcode != mdns.RcodeSuccess {
		t.Errorf("listener client: %s", mdns.RcodeToString[r.Rcode])
	}
	wantFields(t, d.lastLine("other.example.com", "A"), map[string]any{"identity": "resolver"})
}

// swap installs a copy of the rules in force, changed: a reload.
func swap(d *door, change func(*proxy.Rules)) {
	nr := *d.px.Rules()
	nr.Clients = slices.Clone(nr.Clients)
	change(&nr)
	d.px.SetRules(&nr)
}

// Report mode answers what enforce would refuse and says would-deny; the
// query types and the address guard hold in both.
func TestReportMode(t *testing.T) {
	d := newDoor(t, doorOpts{rules: func(r *proxy.Rules) { r.Default.Mode = proxy.ModeReport }})
	r := d.ask("udp", "other.example.com.", mdns.TypeA)
	if r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 {
		t.Errorf("report mode: %s %v, want the answer", mdns.RcodeToString[r.Rcode], r.Answer)
	}
	wantFields(t, d.lastLine("other.example.com", "A"), map[string]any{"decision": "would-deny", "reason": "no-rule", "mode": "report"})
	if r := d.ask("udp", "www.example.com.", mdns.TypeTXT); r.Rcode != mdns.RcodeRefused {
		t.Errorf("TXT in report mode: %s", mdns.RcodeToString[r.Rcode])
	}
	wantFields(t, d.lastLine("www.example.com", "TXT"), map[string]any{"decision": "deny", "reason": "qtype"})
	if r := d.ask("udp", "rebind.example.com.", mdns.TypeA); len(r.Answer) != 1 {
		t.Errorf("guard in report mode: %v", r.Answer)
	}
}

// After a reload the door decides with the new rules and options.
func TestReload(t *testing.T) {
	d := newDoor(t, doorOpts{})
	if r := d.ask("udp", "www.example.com.", mdns.TypeA); r.Rcode != mdns.RcodeSuccess {
		t.Fatalf("before: %s", mdns.RcodeToString[r.Rcode])
	}
	swap(d, func(r *proxy.Rules) {
		id, _ := r.Policy.Identity("default", "other")
		r.Default.Identity = id
	})
	d.srv.SetOptions(Options{Upstream: d.up.addr, MaxTTL: 7 * time.Second, NXDomain: true})
	if r := d.ask("udp", "www.example.com.", mdns.TypeA); r.Rcode != mdns.RcodeNameError {
		t.Errorf("after: www.example.com %s, want NXDOMAIN", mdns.RcodeToString[r.Rcode])
	}
	r := d.ask("udp", "other.example.com.", mdns.TypeA)
	if r.Rcode != mdns.RcodeSuccess || r.Answer[0].Header().Ttl != 7 {
		t.Errorf("after: other.example.com %v, want it with TTL 7", r)
	}
}

// recordingSets is a SetAdder that remembers its calls.
type recordingSets struct {
	mu    sync.Mutex
	calls []string
}

func (s *recordingSets) Add(sets []string, addrs []netip.Addr, ttl time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, strings.Join(sets, ",")+" "+joinAddrs(addrs)+" "+ttl.String())
	return nil
}

func joinAddrs(addrs []netip.Addr) string {
	var s []string
	for _, a := range addrs {
		s = append(s, a.String())
	}
	return strings.Join(s, ",")
}

func TestFillsSetsOfNamedRules(t *testing.T) {
	sets := &recordingSets{}
	d := newDoor(t, doorOpts{sets: sets, options: Options{MaxTTL: 90 * time.Second}})
	d.ask("udp", "ntp1.example.net.", mdns.TypeA)
	d.ask("udp", "www.example.com.", mdns.TypeA)    // a proxy rule: egret decides, no set
	d.ask("udp", "syslog.example.net.", mdns.TypeA) // denied
	d.ask("udp", "ntp2.example.net.", mdns.TypeA)   // NXDOMAIN: nothing to add
	want := []string{"test_n1_v4,test_n1_v6 93.184.216.123 1m30s"}
	if !slices.Equal(sets.calls, want) {
		t.Errorf("set additions %q, want %q", sets.calls, want)
	}
	if got := SetsFor(d.px.Rules().Policy, []string{"test", "other"}, "ntp2.example.net"); !slices.Equal(got, []string{"test_n1_v4", "test_n1_v6"}) {
		t.Errorf("SetsFor = %v", got)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// A query whose line cannot be written is not answered (SERVFAIL), and
// what it would have answered is neither remembered nor in a set.
func TestFailsClosedWithoutLog(t *testing.T) {
	sets := &recordingSets{}
	d := newDoor(t, doorOpts{sets: sets, log: failingWriter{}})
	r := d.ask("udp", "ntp1.example.net.", mdns.TypeA)
	if r.Rcode != mdns.RcodeServerFailure || len(r.Answer) != 0 {
		t.Errorf("unloggable query: %s %v, want SERVFAIL", mdns.RcodeToString[r.Rcode], r.Answer)
	}
	if len(sets.calls) != 0 || d.srv.Answers().Len() != 0 {
		t.Errorf("unlogged answer remembered (%d names) or added to sets %v", d.srv.Answers().Len(), sets.calls)
	}
}

// A header that counts a question the packet does not carry unpacks with
// none (found by FuzzQuery): the door answers FORMERR and keeps serving.
func TestHeaderWithoutQuestion(t *testing.T) {
	d := newDoor(t, doorOpts{})
	c, err := net.Dial("udp", d.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("00\x010\x00\x01\x00\x00\x00\x00\x00\x01")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	var r mdns.Msg
	if err := r.Unpack(buf[:n]); err != nil || r.Rcode != mdns.RcodeFormatError {
		t.Errorf("answer %v (%v), want FORMERR", &r, err)
	}
	if r := d.ask("udp", "www.example.com.", mdns.TypeA); r.Rcode != mdns.RcodeSuccess {
		t.Errorf("afterwards: %s", mdns.RcodeToString[r.Rcode])
	}
}
