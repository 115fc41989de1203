package allowlists

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// Dest is a normalised destination, the input of Policy.Decide. Build one
// with NewDest, which validates and canonicalises the host; a Dest that
// exists is always well-formed.
type Dest struct {
	// Host is the normalised name, or the canonical form of an IP literal.
	Host string
	// Port is the TCP port, 1–65535.
	Port uint16
	// Path is the cleaned URL path, or "" when it is unknown (a tunnel).
	Path string
	// Addr is the IP literal, or the address the name resolved to once the
	// caller has resolved it (WithAddr); zero when neither.
	Addr netip.Addr

	literal bool // Host is an IP literal
	badPath bool // the raw path could not be cleaned: no path prefix matches it
}

// NewDest normalises host and returns the destination (host, port, path).
// rawPath is the URL path as received ("" when unknown); it is cleaned as
// CleanPath describes. A host that is neither a valid name nor an IP
// literal is an error wrapping ErrBadHost.
func NewDest(host string, port int, rawPath string) (Dest, error) {
	if port < 1 || port > 65535 {
		return Dest{}, fmt.Errorf("port %d out of range 1-65535", port)
	}
	d := Dest{Port: uint16(port)}
	addr, isIP, err := ParseIPLiteral(host)
	switch {
	case err != nil:
		return Dest{}, err
	case isIP:
		d.Host, d.Addr, d.literal = addr.String(), addr, true
	default:
		if d.Host, err = NormalizeName(host); err != nil {
			return Dest{}, err
		}
	}
	if rawPath != "" {
		d.Path, d.badPath = rawPath, true
		if clean, ok := CleanPath(rawPath); ok {
			d.Path, d.badPath = clean, false
		}
	}
	return d, nil
}

// IsIP reports whether the destination was given as an IP literal.
func (d Dest) IsIP() bool { return d.literal }

// WithAddr returns d with the address its name resolved to, so that cidr
// rules can match it. It has no effect on an IP literal.
func (d Dest) WithAddr(a netip.Addr) Dest {
	if !d.literal {
		d.Addr = a.Unmap()
	}
	return d
}

// String returns host:port, with brackets around IPv6 literals.
func (d Dest) String() string {
	return net.JoinHostPort(d.Host, strconv.Itoa(int(d.Port)))
}

// ParseTarget splits a destination as a person writes it — host, host:port,
// [v6]:port or a URL — into host, port and path. Without a port, the port is
// the URL scheme's (http 80, https 443), else 443. A URL's path is returned
// as written ("" when it has none, meaning unknown); host[:port] has none.
// The host is not normalised: pass it to NewDest.
func ParseTarget(s string) (host string, port int, path string, err error) {
	if strings.Contains(s, "://") {
		return parseURLTarget(s)
	}
	if strings.ContainsAny(s, "/?#@") {
		return "", 0, "", fmt.Errorf("%w: %q is neither host[:port] nor a URL", ErrBadHost, s)
	}
	return splitHostPort(s, 443)
}

func parseURLTarget(s string) (string, int, string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", 0, "", fmt.Errorf("%w: %v", ErrBadHost, err)
	}
	var defaultPort int
	switch strings.ToLower(u.Scheme) {
	case "http":
		defaultPort = 80
	case "https":
		defaultPort = 443
	default:
		return "", 0, "", fmt.Errorf("%w: scheme %q is not http or https", ErrBadHost, u.Scheme)
	}
	if u.User != nil || u.Opaque != "" {
		return "", 0, "", fmt.Errorf("%w: %q has user info or no authority", ErrBadHost, s)
	}
	host, port, _, err := splitHostPort(u.Host, defaultPort)
	return host, port, u.EscapedPath(), err
}

// splitHostPort splits an authority; a missing port is defaultPort.
func splitHostPort(hp string, defaultPort int) (string, int, string, error) {
	host, portStr, err := net.SplitHostPort(hp)
	if err != nil {
		// No port: the whole thing is the host (a bare IPv6 literal too).
		if strings.HasPrefix(hp, "[") && strings.HasSuffix(hp, "]") {
			return hp[1 : len(hp)-1], defaultPort, "", nil
		}
		if strings.Count(hp, ":") > 1 || !strings.Contains(hp, ":") {
			return hp, defaultPort, "", nil
		}
		return "", 0, "", fmt.Errorf("%w: %v", ErrBadHost, err)
	}
	port, err := ParsePort(portStr)
	if err != nil {
		return "", 0, "", err
	}
	return host, port, "", nil
}

// ParsePort parses a decimal TCP port, 1–65535, digits only.
func ParsePort(s string) (int, error) {
	if s == "" || len(s) > 5 || strings.Trim(s, "0123456789") != "" {
		return 0, fmt.Errorf("port %q is not a number from 1 to 65535", s)
	}
	p, _ := strconv.Atoi(s)
	if p < 1 || p > 65535 {
		return 0, fmt.Errorf("port %q is not a number from 1 to 65535", s)
	}
	return p, nil
}
