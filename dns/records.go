package dns

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/egret-proxy/egret/allowlists"
	mdns "github.com/miekg/dns"
)

// maxChain bounds how many CNAMEs of an answer are followed.
const maxChain = 16

// answerChain returns the records of an upstream answer that answer name
// (normalised, no trailing dot) for qtype: the CNAME chain that starts at
// name, and the records of qtype owned by a name of that chain. Anything
// else an upstream put in the answer (records for other names, DNAMEs,
// signatures, other types) is left out, so that an answer cannot carry an
// address for a name nobody asked about.
func answerChain(answer []mdns.RR, name string, qtype uint16) []mdns.RR {
	chain := []string{mdns.Fqdn(name)}
	for grew := true; grew && len(chain) <= maxChain; {
		grew = false
		for _, rr := range answer {
			c, ok := rr.(*mdns.CNAME)
			if !ok || !inChain(chain, c.Hdr.Name) || inChain(chain, c.Target) {
				continue
			}
			chain, grew = append(chain, strings.ToLower(mdns.Fqdn(c.Target))), true
		}
	}
	var out []mdns.RR
	for _, rr := range answer {
		h := rr.Header()
		if (h.Rrtype == qtype || h.Rrtype == mdns.TypeCNAME) && h.Class == mdns.ClassINET && inChain(chain, h.Name) {
			out = append(out, rr)
		}
	}
	return out
}

func inChain(chain []string, name string) bool {
	for _, c := range chain {
		if strings.EqualFold(c, name) {
			return true
		}
	}
	return false
}

// negativeAuthority keeps the SOA of an upstream's authority section,
// which a client needs to cache a negative answer, and nothing else.
func negativeAuthority(ns []mdns.RR) []mdns.RR {
	for _, rr := range ns {
		if soa, ok := rr.(*mdns.SOA); ok {
			return []mdns.RR{soa}
		}
	}
	return nil
}

// capTTLs lowers every TTL (and a SOA's negative-caching minimum) to max.
func capTTLs(rrs []mdns.RR, max time.Duration) {
	limit := uint32(max / time.Second)
	for _, rr := range rrs {
		h := rr.Header()
		h.Ttl = min(h.Ttl, limit)
		if soa, ok := rr.(*mdns.SOA); ok {
			soa.Minttl = min(soa.Minttl, limit)
		}
	}
}

// minTTL is the shortest TTL of rrs: how long the whole answer holds.
func minTTL(rrs []mdns.RR) time.Duration {
	var ttl uint32
	for i, rr := range rrs {
		if t := rr.Header().Ttl; i == 0 || t < ttl {
			ttl = t
		}
	}
	return time.Duration(ttl) * time.Second
}

// guard removes from rrs the addresses the address guard refuses (A,
// AAAA, and the address hints of HTTPS/SVCB records), and the ech
// SvcParam of HTTPS/SVCB records, counting both into the query's line.
func (qr *query) guard(rrs []mdns.RR) []mdns.RR {
	out := rrs[:0]
	for _, rr := range rrs {
		switch r := rr.(type) {
		case *mdns.A:
			if !qr.allowIP(r.A) {
				continue
			}
		case *mdns.AAAA:
			if !qr.allowIP(r.AAAA) {
				continue
			}
		case *mdns.HTTPS:
			qr.svcb(&r.SVCB)
		case *mdns.SVCB:
			qr.svcb(r)
		}
		out = append(out, rr)
	}
	return out
}

// allowIP reports whether ip may be handed out, and notes a removal.
func (qr *query) allowIP(ip net.IP) bool {
	addr, ok := netip.AddrFromSlice(ip)
	why := allowlists.ReasonBadHost
	if ok {
		why = qr.rules.GuardAnswer(qr.cl, qr.dest, addr)
	}
	if why == allowlists.ReasonRule {
		return true
	}
	qr.dq.Removed++
	if !qr.removed {
		qr.removal, qr.removed = why, true
	}
	return false
}

// svcb removes the ech SvcParam (a client resolving through egret then
// holds no ECH configuration, so its outer SNI is the name it goes to)
// and the address hints the guard refuses, and keeps the mandatory list
// naming only keys that are left.
func (qr *query) svcb(r *mdns.SVCB) {
	vals := r.Value[:0]
	for _, kv := range r.Value {
		switch v := kv.(type) {
		case *mdns.SVCBECHConfig:
			qr.dq.ECHRemoved++
			continue
		case *mdns.SVCBIPv4Hint:
			if v.Hint = qr.allowHints(v.Hint); len(v.Hint) == 0 {
				continue
			}
		case *mdns.SVCBIPv6Hint:
			if v.Hint = qr.allowHints(v.Hint); len(v.Hint) == 0 {
				continue
			}
		}
		vals = append(vals, kv)
	}
	r.Value = vals
	for i, kv := range r.Value {
		m, ok := kv.(*mdns.SVCBMandatory)
		if !ok {
			continue
		}
		m.Code = slices.DeleteFunc(m.Code, func(k mdns.SVCBKey) bool { return !hasKey(r.Value, k) })
		if len(m.Code) == 0 {
			r.Value = slices.Delete(r.Value, i, i+1)
		}
		break
	}
}

func (qr *query) allowHints(hints []net.IP) []net.IP {
	return slices.DeleteFunc(hints, func(ip net.IP) bool { return !qr.allowIP(ip) })
}

func hasKey(vals []mdns.SVCBKeyValue, k mdns.SVCBKey) bool {
	for _, kv := range vals {
		if kv.Key() == k {
			return true
		}
	}
	return false
}

// handedOut lists the addresses of an answer: A, AAAA and HTTPS/SVCB
// address hints.
func handedOut(rrs []mdns.RR) []netip.Addr {
	var out []netip.Addr
	add := func(ip net.IP) {
		if a, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, a.Unmap())
		}
	}
	for _, rr := range rrs {
		switch r := rr.(type) {
		case *mdns.A:
			add(r.A)
		case *mdns.AAAA:
			add(r.AAAA)
		case *mdns.HTTPS:
			out = append(out, hints(&r.SVCB)...)
		case *mdns.SVCB:
			out = append(out, hints(r)...)
		}
	}
	return out
}

func hints(r *mdns.SVCB) []netip.Addr {
	var out []netip.Addr
	for _, kv := range r.Value {
		var ips []net.IP
		switch v := kv.(type) {
		case *mdns.SVCBIPv4Hint:
			ips = v.Hint
		case *mdns.SVCBIPv6Hint:
			ips = v.Hint
		}
		for _, ip := range ips {
			if a, ok := netip.AddrFromSlice(ip); ok {
				out = append(out, a.Unmap())
			}
		}
	}
	return out
}

// hasTarget reports whether an answer still says where to go: an
// address or an HTTPS/SVCB record.
func hasTarget(rrs []mdns.RR) bool {
	for _, rr := range rrs {
		switch rr.(type) {
		case *mdns.A, *mdns.AAAA, *mdns.HTTPS, *mdns.SVCB:
			return true
		}
	}
	return false
}

// pinned is the answer for a --resolve pin: the pinned address when it is
// of the asked family, else no data.
func pinned(name string, qtype uint16, addr netip.Addr, ttl time.Duration) *mdns.Msg {
	m := new(mdns.Msg)
	hdr := mdns.RR_Header{Name: mdns.Fqdn(name), Rrtype: qtype, Class: mdns.ClassINET, Ttl: uint32(ttl / time.Second)}
	switch {
	case qtype == mdns.TypeA && addr.Is4():
		m.Answer = []mdns.RR{&mdns.A{Hdr: hdr, A: addr.AsSlice()}}
	case qtype == mdns.TypeAAAA && addr.Is6():
		m.Answer = []mdns.RR{&mdns.AAAA{Hdr: hdr, AAAA: addr.AsSlice()}}
	}
	return m
}
