package allowlists

import (
	"net/netip"
	"strconv"
	"strings"
)

// Rule is a compiled proxy rule (or explicit deny entry), with its
// provenance: the product, the seed document and the purpose text.
type Rule struct {
	Product string       // "" for a deny entry
	Host    string       // the host pattern as written, variables substituted; "" for a cidr rule
	CIDR    netip.Prefix // valid for a cidr rule
	Ports   []uint16     // empty: every port (deny entries only)
	Paths   []string     // URL path prefixes; empty: any path
	Purpose string
	Source  string // the seed document (or "configuration" for deny entries)
	Broad   string // why the rule is deliberately over-broad
	File    string
	Line    int
	ID      ID // the rule's stable name in its product (zero for deny entries)

	match pattern // the normalised, classified host pattern
}

// Pattern returns the host pattern or CIDR as written, after variables:
// the rule's name in logs and reviews.
func (r *Rule) Pattern() string {
	if r.Host != "" {
		return r.Host
	}
	return r.CIDR.String()
}

// String returns the pattern with its ports and paths, e.g.
// "support.netapp.com:443 /svcgw".
func (r *Rule) String() string {
	var b strings.Builder
	b.WriteString(r.Pattern())
	for i, p := range r.Ports {
		if i == 0 {
			b.WriteByte(':')
		} else {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(p)))
	}
	for _, p := range r.Paths {
		b.WriteByte(' ')
		b.WriteString(p)
	}
	return b.String()
}

func (r *Rule) allowsPort(port uint16) bool {
	if len(r.Ports) == 0 || port == anyPort {
		return true
	}
	for _, p := range r.Ports {
		if p == port {
			return true
		}
	}
	return false
}

func (r *Rule) allowsPath(path string) bool {
	for _, prefix := range r.Paths {
		if pathHasPrefix(path, prefix) {
			return true
		}
	}
	return false
}

// IsWildcard reports whether the rule can match more than one name or
// address: a host pattern with a wildcard, or a CIDR wider than one address.
func (r *Rule) IsWildcard() bool {
	if r.Host == "" {
		return r.CIDR.Bits() < r.CIDR.Addr().BitLen()
	}
	return r.match.kind != kindExact
}
