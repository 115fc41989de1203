package allowlists

import (
	"fmt"
	"strings"
)

// PortRange is an inclusive range of ports; a single port has Lo == Hi.
type PortRange struct{ Lo, Hi uint16 }

func (r PortRange) String() string {
	if r.Lo == r.Hi {
		return fmt.Sprint(r.Lo)
	}
	return fmt.Sprintf("%d-%d", r.Lo, r.Hi)
}

// NetRule is a compiled network rule: a row a packet filter must carry
// (UDP, ICMP, internal TCP ports). The proxy never allows because of one;
// egret export writes them, and the DNS door answers the names they give.
type NetRule struct {
	// Rule is the far end, as for a proxy rule: Host (a name or pattern) or
	// CIDR, and the provenance (product, source, purpose, file, line). Its
	// Ports are empty: the ports are PortRanges.
	Rule
	Protocol   string      // tcp, udp or icmp
	Direction  string      // egress or ingress
	PortRanges []PortRange // empty for icmp
	Option     string      // the document's alternative the row belongs to ("" for every deployment)
	// Unset names the variable that stands for the whole destination when
	// it has no value: the rule is inactive and Host and CIDR are empty.
	Unset string
}

// Active reports whether the rule has a destination (no unset variable).
func (r *NetRule) Active() bool { return r.Unset == "" }

// RuleKind tells proxy rules from network rules in a rule's ID.
type RuleKind byte

// The kinds of rule, as they appear in IDs.
const (
	KindProxy   RuleKind = 'p'
	KindNetwork RuleKind = 'n'
)

// ID is a rule's stable name within its product: its kind and position
// among the product's rules of that kind, counted in file order with
// inactive rules included, so that it does not change when a variable
// gets a value. egret export names nftables sets after it, and the DNS
// door finds those sets by it.
type ID struct {
	Product string
	Kind    RuleKind
	N       int // 1-based
}

func (id ID) String() string { return fmt.Sprintf("%s/%c%d", id.Product, id.Kind, id.N) }

// compileNetRule substitutes variables in one network rule.
func compileNetRule(product string, f *File, spec NetworkRule, vars map[string]string) (*NetRule, error) {
	r := &NetRule{
		Rule: Rule{
			Product: product, Purpose: spec.Purpose, Source: spec.Source,
			File: f.Name, Line: spec.Line,
		},
		Protocol: spec.Protocol, Direction: spec.Direction, Option: spec.Option,
	}
	if r.Source == "" {
		r.Source = f.Source
	}
	for _, s := range spec.Ports {
		lo, hi, err := ParsePortRange(s)
		if err != nil { // validated by ParseFile; only a hand-built File gets here
			return nil, &FileError{File: f.Name, Line: spec.Line, Msg: err.Error()}
		}
		r.PortRanges = append(r.PortRanges, PortRange{uint16(lo), uint16(hi)})
	}
	fail := func(format string, args ...any) (*NetRule, error) {
		return nil, &FileError{File: f.Name, Line: spec.Line, Msg: fmt.Sprintf(format, args...)}
	}
	dest := spec.Destination
	if name, whole := wholeVariable(dest); whole {
		value := vars[name]
		if value == "" {
			r.Unset = name
			return r, nil
		}
		if err := r.setTarget(strings.TrimSpace(value)); err != nil {
			return fail("variable %s=%q: %v; give a name, an IP address or a CIDR", name, value, err)
		}
		return r, nil
	}
	if prefix, err := parsePrefix(dest); err == nil {
		r.CIDR = prefix
		return r, nil
	}
	shown, matched, err := substituteLabels(dest, vars)
	if err != nil {
		return fail("destination %q: %v", dest, err)
	}
	if r.match, err = compilePattern(matched); err != nil {
		return fail("destination %q: %v", dest, err)
	}
	r.Host = shown
	return r, nil
}

// NetworkRules lists the product's network rules in file order, variables
// substituted, inactive ones included (Unset set), or nil for an unknown
// product. The returned rules are shared: do not modify them.
func (p *Policy) NetworkRules(product string) []*NetRule { return p.network[product] }

// AllRules lists the product's proxy rules in file order with inactive
// ones included, for those who must account for every row (egret export):
// an inactive rule is returned with Host and CIDR empty and the variable it
// awaits. Active rules are the same values Rules returns.
func (p *Policy) AllRules(product string) []ProxyRuleEntry { return p.allProxy[product] }

// ProxyRuleEntry is one proxy rule as written in a product, compiled when
// its variables allow.
type ProxyRuleEntry struct {
	Rule *Rule // nil when inactive
	Spec ProxySpec
	// Ports are the rule's ports (443 when it gives none), inactive or not.
	Ports []uint16
	// Source is the rule's seed document: its own `source:`, else its file's.
	Source string
	File   string
	Unset  string // the variable an inactive rule awaits
	ID     ID
}

// MatchesName reports whether the rule's host pattern matches the
// normalised name (as Dest.Host holds it), with the same matcher Decide
// uses. A cidr rule matches no name.
func (r *Rule) MatchesName(name string) bool {
	if r.Host == "" {
		return false
	}
	switch m := r.match; m.kind {
	case kindAny:
		return true
	case kindExact:
		return name == m.text
	case kindSuffix:
		return strings.HasSuffix(name, "."+m.suffix)
	default:
		return m.glob.Match(name)
	}
}

// IsAnyHost reports whether the rule is the broad host "*".
func (r *Rule) IsAnyHost() bool { return r.Host != "" && r.match.kind == kindAny }

// Regexp returns an anchored regular expression (RE2 and POSIX ERE
// syntax alike) that matches exactly the names the rule's host pattern
// matches, for enforcement points that take regular expressions (Squid's
// dstdom_regex). A cidr rule has none.
func (r *Rule) Regexp() string {
	if r.Host == "" {
		return ""
	}
	return patternRegexp(r.match)
}
