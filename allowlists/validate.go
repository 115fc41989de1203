package allowlists

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/gobwas/glob"
)

// validate checks what can be checked in one file alone.
func (f *File) validate() []error {
	var errs []error
	bad := func(line int, format string, args ...any) {
		errs = append(errs, &FileError{File: f.Name, Line: line, Msg: fmt.Sprintf(format, args...)})
	}
	if !productNameRE.MatchString(f.Product) {
		bad(1, "product %q: a product name is lower-case letters, digits and '-' (e.g. netapp-connector-aws)", f.Product)
	}
	for name, v := range f.Variables {
		if !varNameRE.MatchString(name) {
			bad(v.Line, "variable %q: a variable name is [a-z][a-z0-9_]* (e.g. region, ccm_lb)", name)
		}
		if strings.TrimSpace(v.Description) == "" {
			bad(v.Line, "variable %q has no description; say what an operator should set it to", name)
		}
	}
	for i := range f.Proxy {
		for _, msg := range f.Proxy[i].problems(f.Source) {
			bad(f.Proxy[i].Line, "proxy rule %d: %s", i+1, msg)
		}
	}
	for i := range f.Network {
		for _, msg := range f.Network[i].problems(f.Source) {
			bad(f.Network[i].Line, "network rule %d: %s", i+1, msg)
		}
	}
	return errs
}

func (r *ProxySpec) problems(fileSource string) []string {
	var p []string
	switch {
	case r.Host == "" && r.CIDR == "":
		p = append(p, "it needs a host (name or pattern) or a cidr")
	case r.Host != "" && r.CIDR != "":
		p = append(p, fmt.Sprintf("host %q and cidr %q: give one of them; write two rules for both", r.Host, r.CIDR))
	case r.Host != "":
		if err := checkPatternSyntax(r.Host); err != nil {
			p = append(p, fmt.Sprintf("host %q: %v", r.Host, err))
		}
	default:
		if err := checkCIDRSyntax(r.CIDR); err != nil {
			p = append(p, fmt.Sprintf("cidr %q: %v", r.CIDR, err))
		}
	}
	for _, port := range r.Ports {
		if port < 1 || port > 65535 {
			p = append(p, fmt.Sprintf("port %d is out of range; use 1-65535", port))
		}
	}
	for _, path := range r.Paths {
		if clean, ok := CleanPath(path); !ok || clean != path || strings.ContainsAny(path, "?#") {
			p = append(p, fmt.Sprintf("path %q: a path prefix starts with '/' and has no dot segments, query or escaped '/'", path))
		}
	}
	return append(p, commonProblems(r.Purpose, r.Source, fileSource)...)
}

func (r *NetworkRule) problems(fileSource string) []string {
	var p []string
	switch r.Protocol {
	case "tcp", "udp":
		if len(r.Ports) == 0 {
			p = append(p, fmt.Sprintf("protocol %s needs ports, e.g. [\"53\"] or [\"1-65535\"] for all", r.Protocol))
		}
	case "icmp":
		if len(r.Ports) > 0 {
			p = append(p, "protocol icmp has no ports; remove them")
		}
	default:
		p = append(p, fmt.Sprintf("protocol %q: use tcp, udp or icmp", r.Protocol))
	}
	for _, pr := range r.Ports {
		if _, _, err := ParsePortRange(pr); err != nil {
			p = append(p, err.Error())
		}
	}
	if r.Direction != "egress" && r.Direction != "ingress" {
		p = append(p, fmt.Sprintf("direction %q: use egress or ingress", r.Direction))
	}
	if err := checkDestinationSyntax(r.Destination); err != nil {
		p = append(p, fmt.Sprintf("destination %q: %v", r.Destination, err))
	}
	if r.Option != "" && !varNameRE.MatchString(r.Option) {
		p = append(p, fmt.Sprintf("option %q: name the document's alternative in lower case, e.g. basic", r.Option))
	}
	return append(p, commonProblems(r.Purpose, r.Source, fileSource)...)
}

func commonProblems(purpose, source, fileSource string) []string {
	var p []string
	if strings.TrimSpace(purpose) == "" {
		p = append(p, "it has no purpose; give the document's words for why the product needs it")
	}
	if source == "" && fileSource == "" {
		p = append(p, "it has no source; set `source:` on the file or the rule (the document it came from)")
	}
	return p
}

// ParsePortRange parses "123" or "18600-18699".
func ParsePortRange(s string) (lo, hi int, err error) {
	a, b, isRange := strings.Cut(s, "-")
	if lo, err = ParsePort(a); err != nil {
		return 0, 0, fmt.Errorf("port %q: write a port 1-65535 or a range like \"18600-18699\"", s)
	}
	hi = lo
	if isRange {
		if hi, err = ParsePort(b); err != nil || hi < lo {
			return 0, 0, fmt.Errorf("port range %q: write low-high with 1 <= low <= high <= 65535", s)
		}
	}
	return lo, hi, nil
}

// wholeVariable returns the name when s is exactly one ${name} reference.
func wholeVariable(s string) (string, bool) {
	m := varRefRE.FindStringSubmatchIndex(s)
	if m == nil || m[0] != 0 || m[1] != len(s) {
		return "", false
	}
	return s[m[2]:m[3]], true
}

// variableRefs lists the names of the ${name} references in s.
func variableRefs(s string) []string {
	var names []string
	for _, m := range varRefRE.FindAllStringSubmatch(s, -1) {
		names = append(names, m[1])
	}
	return names
}

// checkPatternSyntax validates a host pattern as written, variables and all.
func checkPatternSyntax(host string) error {
	if _, ok := wholeVariable(host); ok {
		return checkVarNames(host)
	}
	if err := checkVarNames(host); err != nil {
		return err
	}
	// A variable inside a label stands for label text: check the rest with a
	// placeholder in its place.
	_, err := compilePattern(varRefRE.ReplaceAllString(host, "v"))
	return err
}

func checkVarNames(s string) error {
	if strings.Count(s, "${") != len(variableRefs(s)) {
		return fmt.Errorf("unclosed ${ ; write variables as ${name}")
	}
	for _, name := range variableRefs(s) {
		if !varNameRE.MatchString(name) {
			return fmt.Errorf("variable name %q: use [a-z][a-z0-9_]*", name)
		}
	}
	return nil
}

func checkCIDRSyntax(s string) error {
	if _, ok := wholeVariable(s); ok {
		return checkVarNames(s)
	}
	_, err := parsePrefix(s)
	return err
}

func checkDestinationSyntax(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("empty; name the far end (a name, pattern, IP, CIDR or ${variable})")
	case strings.Contains(s, "${"):
		return checkPatternSyntax(s)
	}
	if _, err := parsePrefix(s); err == nil {
		return nil
	}
	_, err := compilePattern(s)
	return err
}

// parsePrefix parses a CIDR or a single address (as /32 or /128). The
// prefix must be written in its canonical, masked form.
func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("not an IP address or CIDR (e.g. 104.40.0.0/13)")
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("not a CIDR (e.g. 104.40.0.0/13)")
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("host bits set; did you mean %s?", p.Masked())
	}
	return p, nil
}

// pattern is a compiled host pattern.
type pattern struct {
	text   string        // normalised pattern
	kind   patternKind   // how it is matched
	suffix string        // kindSuffix: the domain after "*."; kindGlob: the literal labels at the end
	glob   *glob.Pattern // kindGlob only
}

type patternKind int

const (
	kindExact  patternKind = iota // api.example.com
	kindSuffix                    // *.example.com: one or more labels in front
	kindGlob                      // anything else with a wildcard, matched by gobwas/glob
	kindAny                       // "*": every destination
)

const globMeta = "*?[]{}!"

// compilePattern normalises and classifies a host pattern (no variables).
func compilePattern(host string) (pattern, error) {
	if host == "*" {
		return pattern{text: "*", kind: kindAny}, nil
	}
	if !strings.ContainsAny(host, globMeta) {
		name, err := NormalizeName(host)
		if err != nil {
			return pattern{}, fmt.Errorf("%v", strings.TrimPrefix(err.Error(), "bad host: "))
		}
		if _, isIP, _ := ParseIPLiteral(name); isIP || endsInNumber(name) {
			return pattern{}, fmt.Errorf("an IP address is not a host; use cidr: %s", host)
		}
		return pattern{text: name, kind: kindExact}, nil
	}
	text := strings.ToLower(strings.TrimSuffix(host, "."))
	for i := 0; i < len(text); i++ {
		c := text[i]
		if !isNameByte(c) && c != '.' && c != ',' && !strings.ContainsRune(globMeta, rune(c)) {
			return pattern{}, fmt.Errorf("character %q not allowed in a pattern (write non-ASCII names in punycode)", c)
		}
	}
	if rest, ok := strings.CutPrefix(text, "*."); ok && !strings.ContainsAny(rest, globMeta) {
		if _, err := NormalizeName(rest); err != nil {
			return pattern{}, fmt.Errorf("%v", strings.TrimPrefix(err.Error(), "bad host: "))
		}
		return pattern{text: text, kind: kindSuffix, suffix: rest}, nil
	}
	// A leading "*." means one or more labels, which is glob's "**." (the
	// empty match cannot happen: normalised names have no leading dot).
	g, err := glob.Compile(globText(text), '.')
	if err != nil {
		return pattern{}, fmt.Errorf("bad pattern: %v", err)
	}
	return pattern{text: text, kind: kindGlob, suffix: literalSuffix(text), glob: g}, nil
}

func globText(text string) string {
	if rest, ok := strings.CutPrefix(text, "*."); ok {
		return "**." + rest
	}
	return text
}

// literalSuffix returns the labels at the end of a pattern that hold no
// wildcard: the domain every match lies under ("" if none).
func literalSuffix(text string) string {
	labels := strings.Split(text, ".")
	i := len(labels)
	for i > 0 && !strings.ContainsAny(labels[i-1], globMeta+",") {
		i--
	}
	return strings.Join(labels[i:], ".")
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
