package proxy

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"testing"

	"github.com/egret-proxy/egret/allowlists"
)

func TestIdentifyDNS(t *testing.T) {
	pol, id := policyFrom(t, "  - {host: a.example.com, purpose: t}", allowlists.Settings{})
	r := &Rules{Policy: pol, Default: Client{Name: "default"}, Clients: []Client{
		{Name: "explicit-only", Sources: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}, Listener: ListenerExplicit, Identity: id},
		{Name: "segment", Sources: []netip.Prefix{netip.MustParsePrefix("10.0.1.0/24")}, Identity: id},
		{Name: "resolver", Listener: ListenerDNS, Identity: id},
		{Name: "redirected", Listener: ListenerTransparent, Identity: id},
	}}
	for _, tc := range []struct{ src, want string }{
		{"10.0.1.7", "segment"},        // by source, on every listener
		{"10.0.0.7", "resolver"},       // a client of another listener is not one of the door's
		{"192.0.2.1", "resolver"},      // the door's listener client
		{"::ffff:10.0.1.9", "segment"}, // IPv4-mapped source
		{"2001:db8::1", "resolver"},    //
	} {
		if got := r.IdentifyDNS(netip.MustParseAddr(tc.src)).Name; got != tc.want {
			t.Errorf("IdentifyDNS(%s) = %s, want %s", tc.src, got, tc.want)
		}
	}
	r.Clients = r.Clients[:2]
	if got := r.IdentifyDNS(netip.MustParseAddr("192.0.2.1")).Name; got != "default" {
		t.Errorf("no dns client: IdentifyDNS = %s, want default", got)
	}
}

func TestGuardAnswer(t *testing.T) {
	pol, id := policyFrom(t, "  - {host: a.example.com, purpose: t}\n  - {cidr: 10.1.2.0/24, purpose: internal}\n  - {cidr: 0.0.0.0/0, purpose: all, broad: test}",
		allowlists.Settings{Deny: []string{"198.18.7.0/24", "8.8.4.0/24"}})
	cl := &Client{Name: "default", Identity: id}
	r := &Rules{Policy: pol, Guard: Guard{AllowRanges: []netip.Prefix{netip.MustParsePrefix("192.168.5.0/24")},
		Self: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:53")}}}
	d, err := allowlists.NameDest("a.example.com")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		addr string
		want allowlists.Reason
	}{
		{"93.184.216.34", allowlists.ReasonRule},
		{"10.0.0.1", allowlists.ReasonPrivateAddress},  // DNS rebinding to the internal network
		{"127.0.0.1", allowlists.ReasonPrivateAddress}, // loopback; no port, so not "self"
		{"169.254.169.254", allowlists.ReasonPrivateAddress},
		{"::ffff:10.0.0.1", allowlists.ReasonPrivateAddress},
		{"64:ff9b::a00:1", allowlists.ReasonPrivateAddress}, // NAT64 of 10.0.0.1
		{"10.1.2.3", allowlists.ReasonRule},                 // a cidr rule inside a guarded range opens it
		{"192.168.5.9", allowlists.ReasonRule},              // --allow-range
		{"8.8.4.4", allowlists.ReasonDenyEntry},             // a deny entry's range wins
		{"2606:4700::1", allowlists.ReasonRule},
	} {
		if got := r.GuardAnswer(cl, d, netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("GuardAnswer(%s) = %s, want %s", tc.addr, got, tc.want)
		}
	}
}

// A DNS door's line has no port and says what was asked and answered; it
// is counted and its span ended whatever the decision.
func TestRecordDNSLine(t *testing.T) {
	var buf bytes.Buffer
	pol, id := policyFrom(t, "  - {host: a.example.com, purpose: t}", allowlists.Settings{})
	srv := NewServer(NewDecisionLog(&buf, nil), &Rules{Policy: pol})
	cl := &Client{Name: "default", Identity: id}
	for _, decision := range []string{"allow", "deny", "would-deny"} {
		q := &DNSQuery{QType: "A", Proto: "udp", Rcode: "NOERROR", Answers: 2, Removed: 1, ECHRemoved: 1, Truncated: true}
		ev := srv.BeginDNS("192.0.2.1:5353", cl, q)
		ev.Host, ev.Decision, ev.Reason = "a.example.com", decision, "rule"
		if err := srv.RecordDNS(ev); err != nil {
			t.Fatal(err)
		}
		if ev.span.IsRecording() {
			t.Errorf("%s: span not ended", decision)
		}
	}
	for i, line := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatal(err)
		}
		if _, ok := m["port"]; ok {
			t.Errorf("line %d has a port: %s", i, line)
		}
		wantFields(t, m, map[string]any{"listener": "dns", "method": "DNS", "qtype": "A", "proto": "udp", "rcode": "NOERROR",
			"answers": 2, "removed": 1, "ech_removed": 1, "truncated": true, "client": "192.0.2.1:5353", "identity": "default"})
		if tid, _ := m["trace_id"].(string); len(tid) != 32 {
			t.Errorf("trace_id %q", tid)
		}
	}
}
