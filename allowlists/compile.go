package allowlists

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Settings are what the deployment adds to the catalog: variable values
// and explicit deny entries.
type Settings struct {
	// Vars gives values to the variables the allowlists declare.
	Vars map[string]string
	// Deny lists names, patterns, IP addresses or CIDRs that are denied on
	// every port whatever the allow rules say.
	Deny []string
}

// Policy is a compiled catalog: every product's proxy rules indexed for
// Decide. It is immutable and safe for concurrent use.
type Policy struct {
	catalog  *Catalog
	products map[string]*index
	rules    map[string][]*Rule // each product's active rules, in file order
	allProxy map[string][]ProxyRuleEntry
	network  map[string][]*NetRule
	names    map[string]*index // each product's egress network rules that name hosts, for DecideName
	deny     *index
	inactive []Inactive
}

// Inactive is a rule whose whole host or cidr is a variable with no value.
type Inactive struct {
	Product  string
	Spec     ProxySpec
	File     string
	Variable string
}

func (in Inactive) String() string {
	return fmt.Sprintf("%s:%d: inactive: %s rule %s needs variable %s (set it with --var %s=VALUE)",
		in.File, in.Spec.Line, in.Product, in.Spec.Host+in.Spec.CIDR, in.Variable, in.Variable)
}

var labelValueRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// Compile indexes the catalog's proxy rules with the given settings. Errors
// name the bad value; warnings (variables that no rule uses) are returned
// for the caller to print.
func Compile(c *Catalog, s Settings) (*Policy, []string, error) {
	var warnings []string
	for _, name := range sortedMapKeys(s.Vars) {
		if !c.usesVariable(name) {
			warnings = append(warnings, fmt.Sprintf("variable %s=%s is used by no loaded rule", name, s.Vars[name]))
		}
	}
	p := &Policy{
		catalog: c, products: map[string]*index{}, rules: map[string][]*Rule{},
		allProxy: map[string][]ProxyRuleEntry{}, network: map[string][]*NetRule{}, names: map[string]*index{},
	}
	var errs []error
	for _, name := range c.Names() {
		ix, names := newIndex(), newIndex()
		nProxy, nNet := 0, 0
		for _, f := range c.products[name].Files {
			for _, spec := range f.Proxy {
				nProxy++
				id := ID{Product: name, Kind: KindProxy, N: nProxy}
				r, inactiveVar, err := compileRule(name, f, spec, s.Vars)
				entry := ProxyRuleEntry{Rule: r, Spec: spec, Ports: spec.ports(), Source: spec.Source, File: f.Name, Unset: inactiveVar, ID: id}
				if entry.Source == "" {
					entry.Source = f.Source
				}
				switch {
				case err != nil:
					errs = append(errs, err)
					continue
				case inactiveVar != "":
					p.inactive = append(p.inactive, Inactive{Product: name, Spec: spec, File: f.Name, Variable: inactiveVar})
				default:
					r.ID = id
					ix.add(r)
					p.rules[name] = append(p.rules[name], r)
				}
				p.allProxy[name] = append(p.allProxy[name], entry)
			}
			for _, spec := range f.Network {
				nNet++
				r, err := compileNetRule(name, f, spec, s.Vars)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				r.ID = ID{Product: name, Kind: KindNetwork, N: nNet}
				p.network[name] = append(p.network[name], r)
				if r.Host != "" && r.Direction == "egress" {
					names.add(&r.Rule)
				}
			}
		}
		p.products[name] = ix
		p.names[name] = names
	}
	deny, err := compileDeny(s.Deny)
	if err != nil {
		errs = append(errs, err)
	}
	p.deny = deny
	if len(errs) > 0 {
		return nil, warnings, errors.Join(errs...)
	}
	return p, warnings, nil
}

// compileRule substitutes variables and compiles one rule. It returns the
// name of the missing variable when the whole host or cidr is unset.
func compileRule(product string, f *File, spec ProxySpec, vars map[string]string) (*Rule, string, error) {
	r := &Rule{
		Product: product, Purpose: spec.Purpose, Source: spec.Source, Broad: spec.Broad,
		Paths: spec.Paths, File: f.Name, Line: spec.Line,
	}
	if r.Source == "" {
		r.Source = f.Source
	}
	r.Ports = spec.ports()
	fail := func(format string, args ...any) (*Rule, string, error) {
		return nil, "", &FileError{File: f.Name, Line: spec.Line, Msg: fmt.Sprintf(format, args...)}
	}
	written := spec.Host + spec.CIDR
	if name, whole := wholeVariable(written); whole {
		value, set := vars[name]
		if !set || value == "" {
			return nil, name, nil
		}
		if err := r.setTarget(value); err != nil {
			return fail("variable %s=%q: %v; give a name, an IP address or a CIDR", name, value, err)
		}
		if spec.CIDR != "" && r.Host != "" {
			return fail("variable %s=%q: this rule is a cidr rule; give an IP address or a CIDR", name, value)
		}
		return r, "", nil
	}
	if spec.CIDR != "" {
		if err := r.setTarget(spec.CIDR); err != nil {
			return fail("cidr %q: %v", spec.CIDR, err)
		}
		return r, "", nil
	}
	shown, matched, err := substituteLabels(spec.Host, vars)
	if err != nil {
		return fail("host %q: %v", spec.Host, err)
	}
	if r.match, err = compilePattern(matched); err != nil {
		return fail("host %q: %v", spec.Host, err)
	}
	r.Host = shown
	return r, "", nil
}

// ports are the rule's ports as written, 443 when it gives none.
func (spec ProxySpec) ports() []uint16 {
	if len(spec.Ports) == 0 {
		return []uint16{443}
	}
	ports := make([]uint16, len(spec.Ports))
	for i, port := range spec.Ports {
		ports[i] = uint16(port)
	}
	return ports
}

// setTarget makes r a cidr rule for an address or CIDR, or a host rule for
// a name or pattern.
func (r *Rule) setTarget(value string) error {
	if prefix, err := parsePrefix(value); err == nil {
		r.CIDR = prefix
		return nil
	}
	m, err := compilePattern(value)
	if err != nil {
		return err
	}
	r.Host, r.match = m.text, m
	return nil
}

// substituteLabels fills in-label variables. It returns the text to show
// (unset variables kept as ${name}) and the pattern to match (unset
// variables as "*", any text within the label).
func substituteLabels(host string, vars map[string]string) (shown, matched string, err error) {
	shown = varRefRE.ReplaceAllStringFunc(host, func(ref string) string {
		name := ref[2 : len(ref)-1]
		v, ok := vars[name]
		if !ok || v == "" {
			return ref
		}
		if !labelValueRE.MatchString(v) {
			err = fmt.Errorf("variable %s=%q must be label text (letters, digits, '-', '_')", name, v)
		}
		return strings.ToLower(v)
	})
	matched = varRefRE.ReplaceAllString(shown, "*")
	return shown, matched, err
}

func compileDeny(entries []string) (*index, error) {
	ix := newIndex()
	var errs []error
	for _, e := range entries {
		r := &Rule{Purpose: "explicit deny entry", Source: "configuration"}
		if err := r.setTarget(strings.TrimSpace(e)); err != nil {
			errs = append(errs, fmt.Errorf("deny entry %q: %v; give a name, pattern, IP address or CIDR", e, err))
			continue
		}
		ix.add(r)
	}
	return ix, errors.Join(errs...)
}

// Catalog returns the catalog the policy was compiled from.
func (p *Policy) Catalog() *Catalog { return p.catalog }

// Rules lists the product's active proxy rules in file order (variables
// substituted; inactive rules left out), or nil for an unknown product.
// The returned rules are shared: do not modify them.
func (p *Policy) Rules(product string) []*Rule { return p.rules[product] }

// Inactive lists the rules left out for want of a variable.
func (p *Policy) Inactive() []Inactive { return p.inactive }

// Identity is a client identity bound to its products in one policy.
type Identity struct {
	Name     string
	Products []string
	indexes  []*index
	names    []*index // the products' egress network rules that name hosts
}

// Identity returns the identity with the given products, which must exist.
func (p *Policy) Identity(name string, products ...string) (Identity, error) {
	id := Identity{Name: name, Products: products}
	for _, prod := range products {
		ix, ok := p.products[prod]
		if !ok {
			return Identity{}, fmt.Errorf("unknown product %q; `egret products` lists them", prod)
		}
		id.indexes = append(id.indexes, ix)
		id.names = append(id.names, p.names[prod])
	}
	return id, nil
}

func sortedMapKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// HasCIDRRules reports whether any of the identity's products has a cidr
// rule, so that a name no host rule allows may still be allowed by the
// address it resolves to. Callers resolve denied names only then, so that
// egret does not look up names it will refuse anyway.
func (id Identity) HasCIDRRules() bool {
	for _, ix := range id.indexes {
		if len(ix.cidrs) > 0 {
			return true
		}
	}
	return false
}
