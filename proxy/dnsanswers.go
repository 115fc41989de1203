package proxy

import (
	"net/netip"

	"github.com/egret-proxy/egret/allowlists"
)

// DNSAnswers is what egret's DNS door (egret serve --dns) handed out. The
// transparent listener asks it whether a redirected connection went to an
// address the door answered for the name the connection names (its SNI or
// Host): a client that resolved through egret connects to such an address;
// one that did not (its own resolver, DoH, a hard-coded address) does not.
type DNSAnswers interface {
	// Answered reports whether ip was in an answer the door gave for name,
	// at the end of any CNAME chain, and the door still remembers it (for
	// at least the answer's TTL). name is normalised as
	// allowlists.NormalizeName does (lower case, no trailing dot, IDNA
	// ASCII); ip is unmapped. It is called once per decision and must be
	// safe for concurrent use.
	Answered(name string, ip netip.Addr) bool
}

// WithDNSAnswers makes the transparent listener compare each redirected
// connection's original address with what a's DNS door answered: the
// decision line says "dns":"match" or "dns":"mismatch", and with
// Rules.RequireDNSMatch a mismatch is denied (reason dns-mismatch).
// Without it (no DNS door) the field is absent and nothing is denied for
// it.
func WithDNSAnswers(a DNSAnswers) Option {
	return func(s *Server) { s.dns = a }
}

// The values of the decision log's dns field.
const (
	dnsMatch    = "match"
	dnsMismatch = "mismatch"
)

// checkDNS fills ev.DNS for a redirected connection to orig decided on
// d, and turns an allowing outcome into a dns-mismatch deny (would-deny in
// report mode) when the rules require a match and the address is no
// answer of the DNS door for d's name. A destination that is an IP
// literal (no SNI, no Host) names nothing to compare and gets no field.
func (s *Server) checkDNS(ev *Event, r *Rules, cl *Client, d allowlists.Dest, orig netip.Addr, o *outcome) {
	if s.dns == nil || d.IsIP() {
		return
	}
	if s.dns.Answered(d.Host, orig.Unmap()) {
		ev.DNS = dnsMatch
		return
	}
	ev.DNS = dnsMismatch
	if !r.RequireDNSMatch || o.decision != "allow" {
		return
	}
	v := allowlists.Verdict{Reason: allowlists.ReasonDNSMismatch, Rule: o.verdict.Rule}
	if cl.Mode == ModeReport {
		o.decision, o.reason, o.verdict = "would-deny", v.Reason, v
		return
	}
	*o = outcome{decision: "deny", reason: v.Reason, verdict: v}
}
