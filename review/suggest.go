package review

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"

	"github.com/egret-proxy/egret/allowlists"
	"golang.org/x/net/publicsuffix"
)

// minWildcardNames is how many denied names must share a parent before a
// review suggests "*.parent" instead of each name (DESIGN §7).
const minWildcardNames = 3

// defaultPort is the port a suggestion gets for names only ever denied as
// DNS queries (Denied.Port 0): a destination without a port is port 443
// (DESIGN §3).
const defaultPort = 443

// portOf is d's port, the default one for a DNS query.
func portOf(d Denied) int {
	if d.Port == 0 {
		return defaultPort
	}
	return d.Port
}

// suggest returns the rules that would allow the denied destinations, and
// sets each one's Rule. IP literals get a single-address cidr rule; a path
// deny gets its host with the path's first segment; names get an exact
// rule, or a "*.parent" rule where at least minWildcardNames denied names
// on one port share a parent that is not a public suffix (ICANN or
// private), so that the patch lints without errors or warnings.
// Destinations the policy allows now get nothing.
func suggest(denied []Denied) []Suggestion {
	wildcards := wildcardParents(denied)
	merged := map[string]*Suggestion{}
	var order []string
	for i := range denied {
		d := &denied[i]
		if d.AllowedBy != "" {
			continue
		}
		s, ok := ruleFor(*d, wildcards)
		if !ok {
			continue
		}
		d.Rule = s.Pattern()
		key := s.Pattern() + " " + strings.Join(s.Paths, ",")
		m := merged[key]
		if m == nil {
			m = &s
			merged[key] = m
			order = append(order, key)
		}
		m.add(*d)
	}
	out := make([]Suggestion, 0, len(order))
	for _, k := range order {
		m := merged[k]
		if len(m.Ports) == 0 {
			m.Ports, m.DNSOnly = []int{defaultPort}, true
		}
		slices.Sort(m.Ports)
		slices.Sort(m.Names)
		out = append(out, *m)
	}
	slices.SortFunc(out, func(a, b Suggestion) int {
		return cmp.Or(cmp.Compare(a.Pattern(), b.Pattern()), slices.Compare(a.Paths, b.Paths))
	})
	return out
}

// ruleFor returns the rule that would allow d, and whether there is one
// that lints clean.
func ruleFor(d Denied, wildcards map[parentPort]bool) (Suggestion, bool) {
	dest, err := allowlists.NewDest(d.Host, portOf(d), "")
	if err != nil {
		return Suggestion{}, false
	}
	if dest.IsIP() {
		addr, err := netip.ParseAddr(dest.Host)
		if err != nil {
			return Suggestion{}, false
		}
		s := Suggestion{CIDR: netip.PrefixFrom(addr, addr.BitLen()).String()}
		return s, s.loads()
	}
	if d.Reason == "path" {
		s := Suggestion{Host: dest.Host, Paths: []string{d.Path}}
		return s, s.loads()
	}
	if parent, ok := parentOf(dest.Host); ok && wildcards[parentPort{parent, portOf(d)}] {
		return Suggestion{Host: "*." + parent}, true
	}
	s := Suggestion{Host: dest.Host}
	return s, s.loads()
}

// add counts d into the suggestion.
func (s *Suggestion) add(d Denied) {
	if d.Port != 0 && !slices.Contains(s.Ports, d.Port) {
		s.Ports = append(s.Ports, d.Port)
	}
	if strings.HasPrefix(s.Host, "*.") && !slices.Contains(s.Names, d.Host) {
		s.Names = append(s.Names, d.Host)
	}
	s.Count += d.Count
	if s.First.IsZero() || d.First.Before(s.First) {
		s.First = d.First
	}
	if d.Last.After(s.Last) {
		s.Last = d.Last
	}
}

type parentPort struct {
	parent string
	port   int
}

// wildcardParents finds the (parent, port) pairs under which at least
// minWildcardNames distinct denied names lie, keeping only parents a
// wildcard may cover.
func wildcardParents(denied []Denied) map[parentPort]bool {
	names := map[parentPort]map[string]bool{}
	for _, d := range denied {
		if d.Reason != "no-rule" || d.AllowedBy != "" {
			continue
		}
		dest, err := allowlists.NewDest(d.Host, portOf(d), "")
		if err != nil || dest.IsIP() {
			continue
		}
		parent, ok := parentOf(dest.Host)
		if !ok {
			continue
		}
		k := parentPort{parent, portOf(d)}
		if names[k] == nil {
			names[k] = map[string]bool{}
		}
		names[k][dest.Host] = true
	}
	out := map[parentPort]bool{}
	for k, set := range names {
		if len(set) >= minWildcardNames && WildcardAllowed(k.parent) {
			out[k] = true
		}
	}
	return out
}

// parentOf returns name minus its first label.
func parentOf(name string) (string, bool) {
	_, parent, ok := strings.Cut(name, ".")
	return parent, ok && parent != ""
}

// WildcardAllowed reports whether "*.domain" may be suggested: domain has
// to be more than a public suffix, ICANN (com, co.uk) or private
// (blob.core.windows.net, where anyone can have names), and more than a
// single label (an unlisted top-level domain such as "internal").
func WildcardAllowed(domain string) bool {
	if !strings.Contains(domain, ".") {
		return false
	}
	suffix, _ := publicsuffix.PublicSuffix(domain)
	return suffix != domain
}
