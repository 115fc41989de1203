package allowlists

import (
	"fmt"
	"net/netip"
	"strings"
)

// ParseIPLiteral reports whether host is an IP literal and, if so, the
// address it denotes. It accepts every IPv4 form the C resolver's inet_aton
// accepts (one to four parts, each decimal, octal with a leading 0, or hex
// with 0x: "2130706433", "0x7f.1", "0177.0.0.1" and "127.1" are all
// 127.0.0.1), and IPv6 with or without brackets. IPv4-mapped IPv6 addresses
// are returned as the IPv4 address they carry. One trailing dot is ignored,
// as for names.
//
// A host that looks numeric but is no valid address (a last label of digits
// or 0x-hex, as in "1.2.3.256" or "4294967296") is an error wrapping
// ErrBadHost: a resolver might treat it as a name, a browser as an address,
// and egret refuses to guess. So is an IPv6 literal with a zone.
func ParseIPLiteral(host string) (netip.Addr, bool, error) {
	if strings.HasPrefix(host, "[") || strings.Contains(host, ":") {
		return parseIPv6Literal(host)
	}
	h := strings.TrimSuffix(host, ".")
	if !endsInNumber(h) {
		return netip.Addr{}, false, nil
	}
	addr, ok := parseInetAton(h)
	if !ok {
		return netip.Addr{}, false, fmt.Errorf("%w: %q looks numeric but is no valid IPv4 address", ErrBadHost, host)
	}
	return addr, true, nil
}

func parseIPv6Literal(host string) (netip.Addr, bool, error) {
	h := host
	if strings.HasPrefix(h, "[") {
		if !strings.HasSuffix(h, "]") {
			return netip.Addr{}, false, fmt.Errorf("%w: unbalanced brackets in %q", ErrBadHost, host)
		}
		h = h[1 : len(h)-1]
	}
	if strings.ContainsRune(h, '%') {
		return netip.Addr{}, false, fmt.Errorf("%w: IPv6 zone in %q", ErrBadHost, host)
	}
	addr, err := netip.ParseAddr(h)
	if err != nil || !addr.Is6() {
		return netip.Addr{}, false, fmt.Errorf("%w: %q is no valid IPv6 address", ErrBadHost, host)
	}
	return addr.Unmap(), true, nil
}

// endsInNumber reports whether the last label of h is a number in one of
// the notations inet_aton accepts (the WHATWG URL "ends in a number" test).
func endsInNumber(h string) bool {
	last := h[strings.LastIndexByte(h, '.')+1:]
	if last == "" {
		return false
	}
	if _, ok := parseAtonPart(last); ok {
		return true
	}
	// Decimal digits only but too large for a part: still a number.
	return strings.Trim(last, "0123456789") == ""
}

// parseInetAton parses the 1–4 part dotted forms of inet_aton(3): a.b.c.d;
// a.b.c with c as 16 bits; a.b with b as 24 bits; a as 32 bits.
func parseInetAton(h string) (netip.Addr, bool) {
	parts := strings.Split(h, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	var vals [4]uint64
	for i, p := range parts {
		v, ok := parseAtonPart(p)
		if !ok {
			return netip.Addr{}, false
		}
		vals[i] = v
	}
	n := len(parts)
	for i := 0; i < n-1; i++ {
		if vals[i] > 0xff {
			return netip.Addr{}, false
		}
	}
	lastBits := uint(8 * (5 - n))
	if vals[n-1] >= 1<<lastBits {
		return netip.Addr{}, false
	}
	var u uint32
	for i := 0; i < n-1; i++ {
		u |= uint32(vals[i]) << (24 - 8*uint(i))
	}
	u |= uint32(vals[n-1])
	return netip.AddrFrom4([4]byte{byte(u >> 24), byte(u >> 16), byte(u >> 8), byte(u)}), true
}

// parseAtonPart parses one part as strtoul(3) with base 0 would: "0x" hex,
// leading "0" octal, else decimal. Values above 32 bits fail.
func parseAtonPart(p string) (uint64, bool) {
	base := uint64(10)
	switch {
	case len(p) >= 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X'):
		base, p = 16, p[2:]
		if p == "" {
			return 0, true // inet_aton takes a bare "0x" as zero
		}
	case len(p) > 1 && p[0] == '0':
		base, p = 8, p[1:]
	case p == "":
		return 0, false
	}
	var v uint64
	for i := 0; i < len(p); i++ {
		d, ok := digitValue(p[i])
		if !ok || d >= base {
			return 0, false
		}
		v = v*base + d
		if v > 0xffffffff {
			return 0, false
		}
	}
	return v, true
}

func digitValue(c byte) (uint64, bool) {
	switch {
	case '0' <= c && c <= '9':
		return uint64(c - '0'), true
	case 'a' <= c && c <= 'f':
		return uint64(c-'a') + 10, true
	case 'A' <= c && c <= 'F':
		return uint64(c-'A') + 10, true
	}
	return 0, false
}
