package certs

import (
	"errors"
	"fmt"
	"strings"

	"github.com/egret-proxy/egret/allowlists"
	"golang.org/x/net/publicsuffix"
)

// HostPattern is a host pattern that an X.509 name constraint can carry:
// an exact name, or "*.domain" for the names under domain.
type HostPattern struct {
	// Domain is the normalised name (for "*.domain", the domain).
	Domain string
	// Subtree is set for "*.domain".
	Subtree bool
}

// ErrNotConstrainable is wrapped by the errors of ParseHostPattern for
// patterns no narrow name constraint can express.
var ErrNotConstrainable = errors.New("not expressible as a name constraint")

// ParseHostPattern reads an exact name or "*.domain", normalised as rules
// are (DESIGN §3). It refuses what the CA must never be able to sign for,
// or cannot be narrowed to: an IP address, a variable without a value, a
// glob ({a,b}, [0-3], an in-label *), and a wildcard over a public suffix
// (*.com, *.co.uk) or over everything (*).
func ParseHostPattern(s string) (HostPattern, error) {
	raw := strings.TrimSpace(s)
	switch {
	case strings.Contains(raw, "${"):
		return HostPattern{}, fmt.Errorf("host %q: %w: it has a variable with no value; give the value with --var NAME=VALUE", s, ErrNotConstrainable)
	case raw == "*" || raw == "**":
		return HostPattern{}, fmt.Errorf("host %q: %w: it matches every name", s, ErrNotConstrainable)
	}
	p := HostPattern{Domain: raw}
	if rest, ok := strings.CutPrefix(raw, "*."); ok {
		p = HostPattern{Domain: rest, Subtree: true}
	}
	if strings.ContainsAny(p.Domain, "*?[]{}") {
		return HostPattern{}, fmt.Errorf("host %q: %w: interception covers exact names and *.domain only; write the names it stands for out as separate rules", s, ErrNotConstrainable)
	}
	if _, isIP, _ := allowlists.ParseIPLiteral(p.Domain); isIP {
		return HostPattern{}, fmt.Errorf("host %q: %w: it is an IP address, and the CA excludes every IP address", s, ErrNotConstrainable)
	}
	name, err := allowlists.NormalizeName(p.Domain)
	if err != nil {
		return HostPattern{}, fmt.Errorf("host %q: %w", s, err)
	}
	p.Domain = name
	if p.Subtree {
		if ps, icann := publicsuffix.PublicSuffix(name); ps == name && (icann || !strings.Contains(name, ".")) {
			return HostPattern{}, fmt.Errorf("host %q: %w: it is a wildcard over the public suffix %s", s, ErrNotConstrainable, name)
		}
	}
	return p, nil
}

// Matches reports whether the normalised name matches the pattern, as a
// rule would (DESIGN §3): "*.example.com" matches a.example.com and
// a.b.example.com, never example.com itself.
func (p HostPattern) Matches(name string) bool {
	if !p.Subtree {
		return name == p.Domain
	}
	return strings.HasSuffix(name, "."+p.Domain)
}

// String returns the pattern as written in normalised form.
func (p HostPattern) String() string {
	if p.Subtree {
		return "*." + p.Domain
	}
	return p.Domain
}

// constraintPermits reports whether name lies within a DNS name
// constraint, with the semantics crypto/x509 applies: the constraint's
// name and every name under it; with a leading dot, only names under it.
func constraintPermits(name, constraint string) bool {
	if rest, ok := strings.CutPrefix(constraint, "."); ok {
		return strings.HasSuffix(name, "."+rest)
	}
	return name == constraint || strings.HasSuffix(name, "."+constraint)
}
