package dns

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/egret-proxy/egret/allowlists"
	mdns "github.com/miekg/dns"
)

// captureWriter is a ResponseWriter that keeps what the door answers.
type captureWriter struct {
	proto string
	msg   *mdns.Msg
}

func (w *captureWriter) LocalAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53}
}

func (w *captureWriter) RemoteAddr() net.Addr {
	if w.proto == "tcp" {
		return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
	}
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}

func (w *captureWriter) WriteMsg(m *mdns.Msg) error { w.msg = m; return nil }
func (w *captureWriter) Write([]byte) (int, error)  { return 0, nil }
func (w *captureWriter) Close() error               { return nil }
func (w *captureWriter) TsigStatus() error          { return nil }
func (w *captureWriter) TsigTimersOnly(bool)        {}
func (w *captureWriter) Hijack()                    {}

// fuzzSeeds are queries of every kind the door meets; testdata/fuzz/FuzzQuery
// holds them packed, with a few odd ones.
func fuzzSeeds() []*mdns.Msg {
	q := func(name string, qtype uint16, edit ...func(*mdns.Msg)) *mdns.Msg {
		m := new(mdns.Msg).SetQuestion(name, qtype)
		for _, e := range edit {
			e(m)
		}
		return m
	}
	edns := func(m *mdns.Msg) { m.SetEdns0(4096, true) }
	return []*mdns.Msg{
		q("www.example.com.", mdns.TypeA),
		q("www.example.com.", mdns.TypeAAAA, edns),
		q("svc.example.com.", mdns.TypeHTTPS, edns),
		q("nbswy3dpeb3w64tmmq.t.tunnel.example.org.", mdns.TypeTXT),
		q("www.example.com.", mdns.TypeANY),
		q("example.com.", mdns.TypeAXFR),
		q("version.bind.", mdns.TypeTXT, func(m *mdns.Msg) { m.Question[0].Qclass = mdns.ClassCHAOS }),
		q("nul\\000.example.com.", mdns.TypeA),
		q("big.example.com.", mdns.TypeA),
		q("rebind.example.com.", mdns.TypeA),
		q("pinned.example.com.", mdns.TypeA),
	}
}

// FuzzQuery feeds raw packets to the door's query path, as the server
// does (the library's accept check, unpacking, then the handler), with
// the test upstream behind it. Whatever comes in, the answer packs, is
// for the question asked, refuses every type but A, AAAA, HTTPS and SVCB,
// and hands out no guarded address.
func FuzzQuery(f *testing.F) {
	for _, m := range fuzzSeeds() {
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, false)
	}
	d := newDoor(f, doorOpts{})
	f.Fuzz(func(t *testing.T, data []byte, tcp bool) {
		if len(data) < 12 || accept(header(data)) != mdns.MsgAccept {
			return
		}
		req := new(mdns.Msg)
		if err := req.Unpack(data); err != nil {
			return
		}
		w := &captureWriter{proto: "udp"}
		if tcp {
			w.proto = "tcp"
		}
		d.srv.serve(w, req, w.proto)
		resp := w.msg
		if resp == nil {
			t.Fatal("no answer")
		}
		if len(req.Question) != 1 {
			if resp.Rcode != mdns.RcodeFormatError {
				t.Fatalf("no question answered %s", mdns.RcodeToString[resp.Rcode])
			}
			return
		}
		packed, err := resp.Pack()
		if err != nil {
			t.Fatalf("answer does not pack: %v\n%v", err, resp)
		}
		if w.proto == "udp" && len(packed) > maxUDPSize {
			t.Fatalf("UDP answer of %d bytes", len(packed))
		}
		if resp.Id != req.Id || len(resp.Question) != 1 || resp.Question[0] != req.Question[0] {
			t.Fatalf("answer for another question: %v", resp)
		}
		q := req.Question[0]
		if !answerable(q.Qclass, q.Qtype) && resp.Rcode != mdns.RcodeRefused && resp.Rcode != mdns.RcodeServerFailure {
			t.Fatalf("%s answered %s", typeName(q), mdns.RcodeToString[resp.Rcode])
		}
		rules := d.px.Rules()
		cl := rules.IdentifyDNS(netip.MustParseAddr("127.0.0.1"))
		for _, rr := range resp.Answer {
			h := rr.Header()
			if h.Rrtype != q.Qtype && h.Rrtype != mdns.TypeCNAME {
				t.Fatalf("a %s record in the answer to %s", mdns.Type(h.Rrtype), typeName(q))
			}
		}
		dest, err := allowlists.NameDest(q.Name)
		if err != nil && len(resp.Answer) > 0 {
			t.Fatalf("an answer for the bad name %q", q.Name)
		}
		for _, a := range handedOut(resp.Answer) {
			if why := rules.GuardAnswer(cl, dest, a); why != allowlists.ReasonRule {
				t.Fatalf("address %s handed out for %s: %s", a, q.Name, why)
			}
		}
	})
}

// header reads the fixed header the server's accept check sees.
func header(b []byte) mdns.Header {
	return mdns.Header{
		Id: binary.BigEndian.Uint16(b[0:]), Bits: binary.BigEndian.Uint16(b[2:]),
		Qdcount: binary.BigEndian.Uint16(b[4:]), Ancount: binary.BigEndian.Uint16(b[6:]),
		Nscount: binary.BigEndian.Uint16(b[8:]), Arcount: binary.BigEndian.Uint16(b[10:]),
	}
}
