package proxy

import (
	"net/netip"

	"github.com/egret-proxy/egret/allowlists"
)

// guardedRanges are the destinations egret refuses after resolving, unless
// --allow-range or a cidr rule inside one of them lets them through
// (DESIGN §6): a compromised workload must not reach the proxy's own host,
// the internal network, or the cloud metadata service through it.
var guardedRanges = prefixes(
	"0.0.0.0/8",       // "this network", incl. the unspecified address
	"10.0.0.0/8",      // RFC 1918
	"100.64.0.0/10",   // CGNAT
	"127.0.0.0/8",     // loopback
	"169.254.0.0/16",  // link-local, incl. cloud metadata 169.254.169.254
	"172.16.0.0/12",   // RFC 1918
	"192.168.0.0/16",  // RFC 1918
	"224.0.0.0/4",     // multicast
	"240.0.0.0/4",     // reserved, incl. broadcast 255.255.255.255
	"::/128",          // unspecified
	"::1/128",         // loopback
	"fc00::/7",        // unique local
	"fe80::/10",       // link-local
	"ff00::/8",        // multicast
	"::ffff:0:0/96",   // IPv4-mapped (only reached if not unmapped)
	"64:ff9b:1::/48",  // local-use NAT64 (RFC 8215): where the IPv4 sits depends on the site's prefix length
	"100::/64",        // discard-only
	"2001:db8::/32",   // documentation
	"192.0.0.0/24",    // IETF protocol assignments
	"192.0.2.0/24",    // TEST-NET-1
	"198.18.0.0/15",   // benchmarking
	"198.51.100.0/24", // TEST-NET-2
	"203.0.113.0/24",  // TEST-NET-3
)

// Well-known NAT64 (64:ff9b::/96), 6to4 (2002::/16) and Teredo (2001::/32)
// addresses are refused when the IPv4 address they embed is (see
// embeddedIPv4); refusing them whole would break IPv6-only sites behind
// DNS64.

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// Guard is the post-resolution address check. The zero value refuses every
// guarded range and knows no own addresses.
type Guard struct {
	// AllowRanges lets destinations in these ranges through (--allow-range).
	AllowRanges []netip.Prefix
	// Self lists egret's own listening addresses; they are refused even when
	// allowed (reason self). An unspecified address stands for every local
	// address on that port.
	Self []netip.AddrPort
	// Local lists the host's interface addresses, for matching Self entries
	// bound to an unspecified address.
	Local []netip.Addr
}

// Check reports why addr:port may not be dialled, or ReasonRule when it
// may. rule is the rule that allowed the destination (nil in report mode
// for a would-deny): a cidr rule lets its own range through the guard only
// when that range lies inside a guarded range, so 10.1.2.0/24 opens
// itself while 0.0.0.0/0 opens nothing private.
func (g *Guard) Check(addr netip.Addr, port uint16, rule *allowlists.Rule) allowlists.Reason {
	addr = addr.Unmap()
	if g.isSelf(addr, port) {
		return allowlists.ReasonSelf
	}
	if !isGuarded(addr) {
		return allowlists.ReasonRule
	}
	for _, p := range g.AllowRanges {
		if p.Contains(addr) {
			return allowlists.ReasonRule
		}
	}
	if rule != nil && rule.Host == "" && rule.CIDR.Contains(addr) && insideGuarded(rule.CIDR) {
		return allowlists.ReasonRule
	}
	return allowlists.ReasonPrivateAddress
}

func (g *Guard) isSelf(addr netip.Addr, port uint16) bool {
	for _, s := range g.Self {
		if s.Port() != port {
			continue
		}
		if s.Addr().Unmap() == addr {
			return true
		}
		if s.Addr().IsUnspecified() && (addr.IsLoopback() || addr.IsUnspecified() || g.isLocal(addr)) {
			return true
		}
	}
	return false
}

func (g *Guard) isLocal(addr netip.Addr) bool {
	for _, l := range g.Local {
		if l.Unmap() == addr {
			return true
		}
	}
	return false
}

// isGuarded reports whether addr, or an IPv4 address it embeds, lies in a
// guarded range.
func isGuarded(addr netip.Addr) bool {
	for _, p := range guardedRanges {
		if p.Contains(addr) {
			return true
		}
	}
	if v4, ok := embeddedIPv4(addr); ok {
		return isGuarded(v4)
	}
	return false
}

// embeddedIPv4 returns the IPv4 address that a NAT64, 6to4 or Teredo
// address carries (for Teredo, the client address, stored inverted).
func embeddedIPv4(a netip.Addr) (netip.Addr, bool) {
	if !a.Is6() {
		return netip.Addr{}, false
	}
	b := a.As16()
	switch {
	case nat64.Contains(a): // well-known NAT64 prefix
		return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}), true
	case b[0] == 0x20 && b[1] == 0x02: // 2002::/16
		return netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}), true
	case b[0] == 0x20 && b[1] == 0x01 && b[2] == 0 && b[3] == 0: // 2001::/32
		return netip.AddrFrom4([4]byte{^b[12], ^b[13], ^b[14], ^b[15]}), true
	}
	return netip.Addr{}, false
}

// insideGuarded reports whether all of p lies inside one guarded range.
func insideGuarded(p netip.Prefix) bool {
	for _, g := range guardedRanges {
		if g.Bits() <= p.Bits() && g.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

var nat64 = netip.MustParsePrefix("64:ff9b::/96")
