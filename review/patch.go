package review

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	"github.com/egret-proxy/egret/allowlists"
	"go.yaml.in/yaml/v3"
)

// PatchSource is the source every suggested rule carries.
const PatchSource = "egret review"

// Patch is an allowlist file (allowlists/FORMAT.md) for one product: the
// suggested rules, ready for --allowlists, where it extends the product
// (or adds it, when the loaded allowlists do not have it).
type Patch struct {
	Product string
	Data    []byte
}

// patchFile and patchRule write the allowlist format with only the keys
// a suggestion uses.
type patchFile struct {
	Product string      `yaml:"product"`
	Title   string      `yaml:"title"`
	Source  string      `yaml:"source"`
	Proxy   []patchRule `yaml:"proxy"`
}

type patchRule struct {
	Host    string   `yaml:"host,omitempty"`
	CIDR    string   `yaml:"cidr,omitempty"`
	Ports   []int    `yaml:"ports,flow"`
	Paths   []string `yaml:"paths,omitempty,flow"`
	Purpose string   `yaml:"purpose"`
	Source  string   `yaml:"source"`
}

// Patches returns one patch per product with suggestions, in product
// order. A product that cannot have an allowlist file gets none and is
// named in unpatched, with why: clients with no product (the denies of
// the default identity when it has none), or a name in the log that is no
// valid product name.
func (r *Report) Patches() (patches []Patch, unpatched []string, err error) {
	for _, p := range r.Products {
		switch {
		case len(p.Suggested) == 0:
			continue
		case p.Name == "":
			unpatched = append(unpatched, fmt.Sprintf("%d suggested rules for clients with no product: give those clients a product", len(p.Suggested)))
			continue
		case !allowlists.IsProductName(p.Name):
			unpatched = append(unpatched, fmt.Sprintf("%d suggested rules for %q, which is no valid product name", len(p.Suggested), p.Name))
			continue
		}
		f := patchFile{Product: p.Name, Title: "rules learned by egret review", Source: PatchSource}
		for _, s := range p.Suggested {
			f.Proxy = append(f.Proxy, s.rule())
		}
		data, err := marshalPatch(f, fmt.Sprintf(
			"# egret review: rules that would have allowed what %s was denied\n"+
				"# from %s to %s. Check each one before adding this file to --allowlists.\n",
			p.Name, stamp(r.From), stamp(r.To)))
		if err != nil {
			return nil, nil, err
		}
		// The rules were checked one by one; this catches a bug in putting them together.
		if _, err := allowlists.ParseFile("review-"+p.Name+".yaml", data); err != nil {
			return nil, nil, fmt.Errorf("review: the patch for %s does not load: %w", p.Name, err)
		}
		patches = append(patches, Patch{Product: p.Name, Data: data})
	}
	return patches, unpatched, nil
}

func (s Suggestion) rule() patchRule {
	purpose := fmt.Sprintf("denied %s from %s to %s", times(s.Count), stamp(s.First), stamp(s.Last))
	if len(s.Names) > 0 {
		purpose += fmt.Sprintf(" (%d names: %s)", len(s.Names), strings.Join(s.Names, ", "))
	}
	if s.DNSOnly {
		purpose += "; asked only in DNS, so port 443 is a guess"
	}
	return patchRule{Host: s.Host, CIDR: s.CIDR, Ports: s.Ports, Paths: s.Paths, Purpose: purpose, Source: PatchSource}
}

// loads reports whether the suggestion, written as a rule, is one the
// allowlist loader accepts: a denied host that is no valid rule (a name
// ending in a number, say) gets no suggestion.
func (s Suggestion) loads() bool {
	s.Ports, s.Count = []int{443}, 1
	data, err := marshalPatch(patchFile{Product: "check", Title: "check", Source: PatchSource, Proxy: []patchRule{s.rule()}}, "")
	if err != nil {
		return false
	}
	_, err = allowlists.ParseFile("check.yaml", data)
	return err == nil
}

func marshalPatch(f patchFile, header string) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(header)
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(f); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// stamp writes a time for people: RFC 3339 in UTC, to the second.
func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func times(n int) string {
	if n == 1 {
		return "once"
	}
	return fmt.Sprintf("%d times", n)
}
