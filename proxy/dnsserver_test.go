package proxy

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// testDNS is a DNS server on loopback UDP that answers A and AAAA queries
// from a table, so that tests exercise egret's real resolution path (the
// Go resolver, several answers per name, failures) without the network.
// Names not in the table are NXDOMAIN. Two names misbehave on purpose:
// servfail.example gets SERVFAIL, and silent.example no answer at all.
type testDNS struct {
	addr    string
	answers map[string][]netip.Addr // lower-case name without the trailing dot
	queries atomic.Int64
	mu      sync.Mutex
	asked   map[string]int // queries per name
}

const (
	dnsServfailName = "servfail.example"
	dnsSilentName   = "silent.example"
)

func newTestDNS(t *testing.T, answers map[string][]netip.Addr) *testDNS {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	d := &testDNS{addr: pc.LocalAddr().String(), answers: answers, asked: map[string]int{}}
	go d.serve(pc)
	return d
}

// askedFor returns how many queries (A and AAAA each count) name got.
func (d *testDNS) askedFor(name string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.asked[name]
}

// resolver returns a Go resolver that sends every query to this server.
func (d *testDNS) resolver() *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dialer net.Dialer
			return dialer.DialContext(ctx, "udp4", d.addr)
		},
	}
}

func (d *testDNS) serve(pc net.PacketConn) {
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		d.queries.Add(1)
		if resp, ok := d.answer(buf[:n]); ok {
			pc.WriteTo(resp, from)
		}
	}
}

// answer builds the response to one query; ok is false when the server
// stays silent.
func (d *testDNS) answer(query []byte) ([]byte, bool) {
	var p dnsmessage.Parser
	hdr, err := p.Start(query)
	if err != nil {
		return nil, false
	}
	q, err := p.Question()
	if err != nil {
		return nil, false
	}
	name := strings.ToLower(strings.TrimSuffix(q.Name.String(), "."))
	d.mu.Lock()
	d.asked[name]++
	d.mu.Unlock()
	rh := dnsmessage.Header{ID: hdr.ID, Response: true, Authoritative: true, RecursionDesired: hdr.RecursionDesired, RecursionAvailable: true}
	addrs, known := d.answers[name]
	switch {
	case name == dnsSilentName:
		return nil, false
	case name == dnsServfailName:
		rh.RCode = dnsmessage.RCodeServerFailure
	case !known:
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	b.EnableCompression()
	if b.StartQuestions() != nil || b.Question(q) != nil || b.StartAnswers() != nil {
		return nil, false
	}
	rr := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}
	for _, a := range addrs {
		switch {
		case q.Type == dnsmessage.TypeA && a.Is4():
			b.AResource(rr, dnsmessage.AResource{A: a.As4()})
		case q.Type == dnsmessage.TypeAAAA && a.Is6():
			b.AAAAResource(rr, dnsmessage.AAAAResource{AAAA: a.As16()})
		}
	}
	resp, err := b.Finish()
	return resp, err == nil
}
