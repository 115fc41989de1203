package config

import (
	"net/netip"
	"regexp"
	"time"
)

// nftTableRE is what a table name for nft_sets may be (nft's identifiers).
var nftTableRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]{0,63}$`)

// dnsDoor decodes the DNS door's keys: dns, dns_upstream, dns_max_ttl,
// dns_deny and nft_sets.
func (l *loader) dnsDoor(c *Config) {
	c.DNS = l.address("dns", true)
	c.DNSUpstream = l.dnsUpstream()
	val, src, p := l.get("dns_max_ttl")
	if c.DNSMaxTTL = l.positiveDuration(val, src, p); c.DNSMaxTTL > 0 && c.DNSMaxTTL < time.Second {
		l.bad(src, p, "%s: must be at least 1s (TTLs are whole seconds)", c.DNSMaxTTL)
	}
	val, src, p = l.get("dns_deny")
	if s, ok := l.str(val, src, p); ok {
		c.DNSDeny = s
		if s != "refused" && s != "nxdomain" {
			l.bad(src, p, "%q: want refused (the default) or nxdomain", s)
		}
	}
	val, src, p = l.get("nft_sets")
	if s, ok := l.str(val, src, p); ok && s != "" {
		c.NftSets = s
		switch {
		case !nftTableRE.MatchString(s):
			l.bad(src, p, "%q is not an nftables table name (e.g. egret, the table `egret export --format nftables` writes)", s)
		case c.DNS == "":
			l.bad(src, p, "%q: the sets are filled by the DNS door; set dns too (e.g. dns: 127.0.0.1:53)", s)
		}
	}
}

// dnsUpstream decodes the upstream resolver: an IP address with an
// optional port (53), normalised to ip:port.
func (l *loader) dnsUpstream() string {
	val, src, p := l.get("dns_upstream")
	s, ok := l.str(val, src, p)
	if !ok || s == "" {
		return ""
	}
	if ip, err := netip.ParseAddr(s); err == nil && ip.Zone() == "" {
		return netip.AddrPortFrom(ip.Unmap(), 53).String()
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Addr().Zone() != "" || ap.Port() == 0 {
		l.bad(src, p, "%q is not an IP address with an optional port (e.g. 10.0.0.2 or 10.0.0.2:53; a name would need a resolver to find)", s)
		return ""
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
}
