package allowlists

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"golang.org/x/net/publicsuffix"
)

// Severity grades a lint finding.
type Severity int

// Severities, most serious first.
const (
	SevError    Severity = iota // the file must not be used as it is
	SevWarning                  // worth a look; the file is usable
	SevInactive                 // a rule waits for a variable
)

func (s Severity) String() string {
	return [...]string{"error", "warning", "inactive"}[s]
}

// Finding is one lint result, at a file and line.
type Finding struct {
	File     string
	Line     int
	Severity Severity
	Msg      string
}

func (f Finding) String() string {
	return fmt.Sprintf("%s:%d: %s: %s", f.File, f.Line, f.Severity, f.Msg)
}

// Lint checks files in the context of the catalog they extend (the
// embedded allowlists, usually) and returns findings for those files only:
// parse errors, undeclared variables, over-broad rules without a `broad`
// reason, bad variable values, and rules inactive for want of a variable.
func Lint(base []*File, targets []*File, vars map[string]string) []Finding {
	var out []Finding
	all := append(append([]*File{}, base...), targets...)
	if _, err := NewCatalog(all...); err != nil {
		out = append(out, FindingsFromError(err)...)
	}
	for _, f := range targets {
		for _, spec := range f.Proxy {
			r, missing, err := compileRule(f.Product, f, spec, vars)
			switch {
			case err != nil:
				out = append(out, FindingsFromError(err)...)
			case missing != "":
				out = append(out, Finding{f.Name, spec.Line, SevInactive, fmt.Sprintf(
					"rule %s needs variable %s (set it with --var %s=VALUE)", spec.Host+spec.CIDR, missing, missing)})
			default:
				if sev, why := broadness(r); why != "" && r.Broad == "" {
					out = append(out, Finding{f.Name, spec.Line, sev, why + narrowHint(spec.Host, vars)})
				}
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].File != out[j].File {
			return out[i].File < out[j].File
		}
		return out[i].Line < out[j].Line
	})
	return out
}

// FindingsFromError turns load errors (FileError values, joined or not)
// into error findings.
func FindingsFromError(err error) []Finding {
	var out []Finding
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, inner := range j.Unwrap() {
				walk(inner)
			}
			return
		}
		var fe *FileError
		if errors.As(e, &fe) {
			out = append(out, Finding{fe.File, fe.Line, SevError, fe.Msg})
			return
		}
		out = append(out, Finding{"", 0, SevError, e.Error()})
	}
	walk(err)
	return out
}

// broadness says how over-broad a rule is: an error for "*", a /0, or a
// wildcard over a top-level domain or an ICANN public suffix (*.com,
// *.co.uk); a warning for a wildcard over a private public-suffix entry
// (*.blob.core.windows.net), where every customer has names.
func broadness(r *Rule) (Severity, string) {
	if r.Host == "" {
		if r.CIDR.Bits() == 0 {
			return SevError, fmt.Sprintf("cidr %s matches every address", r.CIDR)
		}
		return 0, ""
	}
	m := r.match
	switch m.kind {
	case kindAny:
		return SevError, `host "*" matches every destination`
	case kindExact:
		return 0, ""
	}
	domain := m.suffix
	if domain == "" {
		if strings.Contains(m.text, ".") {
			return SevError, fmt.Sprintf("host %q has a wildcard in its top-level domain", r.Host)
		}
		return 0, ""
	}
	ps, icann := publicsuffix.PublicSuffix(domain)
	switch {
	case ps != domain:
		return 0, ""
	case icann || !strings.Contains(domain, "."):
		return SevError, fmt.Sprintf("host %q is a wildcard over the public suffix %s", r.Host, domain)
	default:
		return SevWarning, fmt.Sprintf("host %q is a wildcard over %s, a suffix under which anyone can have names", r.Host, domain)
	}
}

// narrowHint says how to fix an over-broad rule: set the variables that
// widen it, or narrow it, or give the reason it must be this broad.
func narrowHint(host string, vars map[string]string) string {
	var unset []string
	for _, name := range variableRefs(host) {
		if vars[name] == "" {
			unset = append(unset, "--var "+name+"=VALUE")
		}
	}
	if len(unset) > 0 {
		return "; unset variables match any label text: set " + strings.Join(unset, " ") +
			", or say why it may stay this broad in `broad:`"
	}
	return "; narrow it, or say why it must be this broad in `broad:`"
}
