package allowlists

import (
	"fmt"
	"net/netip"
)

// Reason is why a destination was allowed or denied: the `reason` field of
// the decision log and the X-Egret-Reason header.
type Reason uint8

// Reasons. Decide returns the first four; the proxy adds the others.
const (
	ReasonRule           Reason = iota // allowed by a rule
	ReasonNoRule                       // no rule of the identity's products matches
	ReasonPath                         // the host matches only rules whose paths exclude this path
	ReasonDenyEntry                    // an explicit deny entry matches
	ReasonBadHost                      // the host is no valid name or IP literal
	ReasonPrivateAddress               // the address lies in a guarded range
	ReasonSelf                         // the address is one of egret's own
	ReasonAuth                         // missing or wrong proxy credentials
	ReasonNoSNI                        // TLS without SNI and no cidr rule on the address
	ReasonHostMismatch                 // a Host header that is not the tunnel's name
	ReasonBadHello                     // an unreadable or oversized ClientHello
	ReasonECH                          // a ClientHello offering Encrypted Client Hello
	ReasonUpstreamTLS                  // the upstream certificate did not verify
	ReasonDNSMismatch                  // the original address was no answer of egret's DNS for the name
	ReasonQType                        // a DNS query of a type the DNS door never answers (TXT, NULL, ANY, …)
	ReasonBadRequest                   // a request egret cannot read (400, 408 or 431 before anything is decided)
)

var reasonNames = [...]string{
	ReasonRule:           "rule",
	ReasonNoRule:         "no-rule",
	ReasonPath:           "path",
	ReasonDenyEntry:      "deny-entry",
	ReasonBadHost:        "bad-host",
	ReasonPrivateAddress: "private-address",
	ReasonSelf:           "self",
	ReasonAuth:           "auth",
	ReasonNoSNI:          "no-sni",
	ReasonHostMismatch:   "host-mismatch",
	ReasonBadHello:       "bad-hello",
	ReasonECH:            "ech",
	ReasonUpstreamTLS:    "upstream-tls",
	ReasonDNSMismatch:    "dns-mismatch",
	ReasonQType:          "qtype",
	ReasonBadRequest:     "bad-request",
}

func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "unknown"
}

// Verdict is the outcome of Decide.
type Verdict struct {
	Allow  bool
	Reason Reason
	// Rule is the rule that decided: the allowing rule, the path rule that
	// refused the path, or the deny entry. Nil for no-rule.
	Rule *Rule
	// PathsUnenforced is set when a rule with paths allowed a destination
	// whose path is unknown (a tunnel).
	PathsUnenforced bool
}

// Product returns the product whose rule decided, or "".
func (v Verdict) Product() string {
	if v.Rule == nil {
		return ""
	}
	return v.Rule.Product
}

// Decide reports whether id may reach d, and which rule decided. It does
// no I/O: no DNS, no clock, no logging; cidr rules see the address only if
// the caller put one in d (an IP literal, or Dest.WithAddr after resolving).
//
// Deny entries win over everything. Among allow rules, one without paths
// decides over rules with paths; rules with paths allow a known path under
// one of their prefixes, deny any other (reason path), and allow an unknown
// path (a tunnel) with PathsUnenforced set.
func (p *Policy) Decide(id Identity, d Dest) Verdict {
	var denied candidates
	if p.deny.lookup(&d, &denied); denied.pathless != nil {
		return Verdict{Reason: ReasonDenyEntry, Rule: denied.pathless}
	}
	var best candidates
	for _, ix := range id.indexes {
		var c candidates
		ix.lookup(&d, &c)
		if c.pathless != nil {
			return Verdict{Allow: true, Reason: ReasonRule, Rule: c.pathless}
		}
		if best.pathOK == nil {
			best.pathOK = c.pathOK
		}
		if best.pathAny == nil {
			best.pathAny = c.pathAny
		}
	}
	switch {
	case best.pathOK != nil:
		return Verdict{Allow: true, Reason: ReasonRule, Rule: best.pathOK}
	case best.pathAny != nil && d.Path == "":
		return Verdict{Allow: true, Reason: ReasonRule, Rule: best.pathAny, PathsUnenforced: true}
	case best.pathAny != nil:
		return Verdict{Reason: ReasonPath, Rule: best.pathAny}
	}
	return Verdict{Reason: ReasonNoRule}
}

// DenyEntry returns the explicit deny entry that matches d, or nil. The
// proxy asks it for every address a name resolved to, so that a denied
// range wins over a name the policy allows.
func (p *Policy) DenyEntry(d Dest) *Rule {
	var c candidates
	p.deny.lookup(&d, &c)
	return c.pathless
}

// anyPort is the port of a Dest built by NameDest: every rule's ports
// include it.
const anyPort = 0

// NameDest returns a destination for a name on no particular port: the
// question the DNS door asks (may this name be reached at all?). Host is
// normalised as NewDest does; an IP literal is an error wrapping
// ErrBadHost, since nobody resolves one.
func NameDest(host string) (Dest, error) {
	d, err := NewDest(host, 1, "")
	if err != nil {
		return Dest{}, err
	}
	if d.literal {
		return Dest{}, fmt.Errorf("%w: %s is an IP address, not a name to resolve", ErrBadHost, d.Host)
	}
	d.Port = anyPort
	return d, nil
}

// AddrDest returns a destination for an address on no particular port:
// the question the DNS door asks of an address in an answer (does a cidr
// rule name it?). It is an IP literal, so only cidr rules (and "*")
// match it.
func AddrDest(a netip.Addr) Dest {
	a = a.Unmap()
	return Dest{Host: a.String(), Port: anyPort, Addr: a, literal: true}
}

// DecideName reports whether id may reach the name in d on some port: by a
// proxy rule, or by an egress network rule whose destination is a name or
// pattern. It is Decide asked of the same indexes without a port, so a
// name the proxy would refuse on every port is refused here too; deny
// entries win as they do there. Give it a Dest from NameDest.
func (p *Policy) DecideName(id Identity, d Dest) Verdict {
	if v := p.Decide(id, d); v.Allow || v.Reason == ReasonDenyEntry {
		return v
	}
	for _, ix := range id.names {
		var c candidates
		if ix.lookup(&d, &c); c.pathless != nil {
			return Verdict{Allow: true, Reason: ReasonRule, Rule: c.pathless}
		}
	}
	return Verdict{Reason: ReasonNoRule}
}
