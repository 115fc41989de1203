package export

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/egret-proxy/egret/allowlists"
)

// compile builds the policy of the embedded allowlists with vars.
func compile(t *testing.T, vars map[string]string) *allowlists.Policy {
	t.Helper()
	cat, err := allowlists.LoadCatalog()
	if err != nil {
		t.Fatal(err)
	}
	p, _, err := allowlists.Compile(cat, allowlists.Settings{Vars: vars})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// render builds the ruleset of products and writes it in one format.
func render(t *testing.T, write Writer, p *allowlists.Policy, products []string, o Options) (string, []Skip) {
	t.Helper()
	rs, err := Build(p, products, o)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	skips, err := write(&b, rs)
	if err != nil {
		t.Fatal(err)
	}
	return b.String(), skips
}

// numbered prefixes each line with its number, for failure messages that
// quote a tool's complaint about line N.
func numbered(s string) string {
	var b strings.Builder
	for i, l := range strings.Split(s, "\n") {
		fmt.Fprintf(&b, "%4d %s\n", i+1, l)
	}
	return b.String()
}

// allVariables lists every variable the embedded products declare, sorted.
func allVariables(p *allowlists.Policy) []string {
	var names []string
	for _, prod := range p.Catalog().Names() {
		for name := range p.Catalog().Product(prod).Variables {
			if !slices.Contains(names, name) {
				names = append(names, name)
			}
		}
	}
	slices.Sort(names)
	return names
}

// everyVariableSet gives every variable of the embedded products a value:
// an IPv4 address, an IPv6 range or a name in turn, so that address rules
// of both families and named sets all appear; label text where the
// variable is used inside a label, where an address is refused.
func everyVariableSet(t *testing.T) map[string]string {
	t.Helper()
	cat, err := allowlists.LoadCatalog()
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for i, name := range allVariables(compile(t, nil)) {
		value := [...]string{fmt.Sprintf("198.51.100.%d", i%250+1), fmt.Sprintf("2001:db8:%x::/48", i), fmt.Sprintf("dc%d.example.com", i)}[i%3]
		if _, _, err := allowlists.Compile(cat, allowlists.Settings{Vars: map[string]string{name: value}}); err != nil {
			value = "label-" + strings.ReplaceAll(name, "_", "-")
		}
		vars[name] = value
	}
	return vars
}

func mustAddr(t *testing.T, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
