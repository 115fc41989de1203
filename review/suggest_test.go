package review

import (
	"slices"
	"strings"
	"testing"

	"github.com/egret-proxy/egret/allowlists"
)

func TestSuggestions(t *testing.T) {
	three := func(parent string, port int) []string {
		var out []string
		for _, l := range []string{"a", "b", "c"} {
			out = append(out, deny(0, l+"."+parent, port, "no-rule", "site"))
		}
		return out
	}
	tests := []struct {
		name  string
		lines []string
		want  []string
	}{
		{"three names under one parent", three("svc.example.org", 443), []string{"*.svc.example.org:443"}},
		{"two names stay exact", three("svc.example.org", 443)[:2], []string{"a.svc.example.org:443", "b.svc.example.org:443"}},
		{"a parent that is itself a registrable domain", three("example.org", 443), []string{"*.example.org:443"}},
		{"never over an ICANN suffix", three("co.uk", 443), []string{"a.co.uk:443", "b.co.uk:443", "c.co.uk:443"}},
		{"never over a top-level domain", three("com", 443), []string{"a.com:443", "b.com:443", "c.com:443"}},
		{"never over a private suffix", three("blob.core.windows.net", 443),
			[]string{"a.blob.core.windows.net:443", "b.blob.core.windows.net:443", "c.blob.core.windows.net:443"}},
		{"never over an unlisted single label", three("internal", 443), []string{"a.internal:443", "b.internal:443", "c.internal:443"}},
		{"names counted per port", append(three("svc.example.org", 443)[:2], deny(0, "c.svc.example.org", 8443, "no-rule", "site")),
			[]string{"a.svc.example.org:443", "b.svc.example.org:443", "c.svc.example.org:8443"}},
		{"a wildcard beside an exact rule on another port", append(three("svc.example.org", 443), deny(0, "d.svc.example.org", 8443, "no-rule", "site")),
			[]string{"*.svc.example.org:443", "d.svc.example.org:8443"}},
		{"IPv4 literal", []string{deny(0, "203.0.113.9", 443, "no-rule", "site")}, []string{"203.0.113.9/32:443"}},
		{"IPv6 literal", []string{deny(0, "2001:db8::1", 443, "no-rule", "site")}, []string{"2001:db8::1/128:443"}},
		{"IP literals are never grouped", []string{deny(0, "10.0.0.1", 443, "no-rule", "site"), deny(0, "10.0.0.2", 443, "no-rule", "site"), deny(0, "10.0.0.3", 443, "no-rule", "site")},
			[]string{"10.0.0.1/32:443", "10.0.0.2/32:443", "10.0.0.3/32:443"}},
		{"TLS without SNI: a cidr rule on the original address", []string{deny(0, "203.0.113.9", 443, "no-sni", "site")}, []string{"203.0.113.9/32:443"}},
		{"path outside a rule's prefixes", []string{strings.Replace(deny(0, "repo.example.org", 443, "path", "site"), `"reason"`, `"path":"/other/x.jar?y=1","reason"`, 1)},
			[]string{"repo.example.org:443 /other"}},
		{"reasons no rule fixes", []string{
			deny(0, "a.example.org", 443, "auth", "site"), deny(0, "b.example.org", 443, "private-address", "site"),
			deny(0, "c.example.org", 443, "self", "site"), deny(0, "d.example.org", 443, "ech", "site"),
			deny(0, "e.example.org", 443, "bad-hello", "site"), deny(0, "bad host", 443, "bad-host", "site"),
			deny(0, "f.example.org", 443, "deny-entry", "site"),
		}, nil},
		{"a name no rule can be written for", []string{deny(0, "foo.0x10", 443, "no-rule", "site")}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := product(t, reviewLines(t, Filter{}, nil, tt.lines...), "site")
			if got := patterns(p.Suggested); !slices.Equal(got, tt.want) {
				t.Errorf("suggested %q, want %q", got, tt.want)
			}
		})
	}
}

// TestUnfixableListedApart: denies no rule fixes are shown with their
// reason, never with a suggestion.
func TestUnfixableListedApart(t *testing.T) {
	p := product(t, reviewLines(t, Filter{}, nil,
		deny(0, "a.example.org", 443, "auth", "site"), deny(0, "a.example.org", 443, "no-rule", "site")), "site")
	if len(p.Unfixable) != 1 || p.Unfixable[0].Reason != "auth" || p.Unfixable[0].Rule != "" {
		t.Errorf("unfixable %+v", p.Unfixable)
	}
	if len(p.Denied) != 1 || p.Denied[0].Rule != "a.example.org" {
		t.Errorf("denied %+v", p.Denied)
	}
}

// TestAllowedNowGetsNoSuggestion: the log is older than the policy, which
// allows the destination now.
func TestAllowedNowGetsNoSuggestion(t *testing.T) {
	p := product(t, reviewLines(t, Filter{}, sitePolicy(t),
		deny(0, "api.site.example", 443, "no-rule", "site"), deny(0, "new.site.example", 443, "no-rule", "site")), "site")
	if got := patterns(p.Suggested); !slices.Equal(got, []string{"new.site.example:443"}) {
		t.Errorf("suggested %v", got)
	}
	if p.Denied[0].Host != "api.site.example" || p.Denied[0].AllowedBy != "api.site.example:443" {
		t.Errorf("denied %+v", p.Denied)
	}
}

// TestPatchLintsAndAllows writes the patch for a log with every kind of
// suggestion, lints it against the embedded allowlists (no errors, no
// warnings) and loads it: every reviewed deny is then allowed.
func TestPatchLintsAndAllows(t *testing.T) {
	lines := []string{
		deny(0, "a.svc.example.org", 443, "no-rule", "netapp-connector-aws"),
		deny(0, "b.svc.example.org", 443, "no-rule", "netapp-connector-aws"),
		deny(0, "c.svc.example.org", 443, "no-rule", "netapp-connector-aws"),
		deny(0, "a.co.uk", 443, "no-rule", "netapp-connector-aws"),
		deny(0, "b.co.uk", 443, "no-rule", "netapp-connector-aws"),
		deny(0, "c.co.uk", 443, "no-rule", "netapp-connector-aws"),
		deny(0, "updates.example.net", 80, "no-rule", "netapp-connector-aws"),
		deny(0, "203.0.113.9", 8443, "no-rule", "netapp-connector-aws"),
		deny(0, "new.example.net", 443, "no-rule", "brand-new"),
	}
	r := reviewLines(t, Filter{}, sitePolicy(t), lines...)
	patches, unpatched, err := r.Patches()
	if err != nil {
		t.Fatal(err)
	}
	if len(patches) != 2 || len(unpatched) != 0 {
		t.Fatalf("%d patches, want one per product", len(patches))
	}
	embedded, err := allowlists.EmbeddedFiles()
	if err != nil {
		t.Fatal(err)
	}
	var files []*allowlists.File
	for _, p := range patches {
		f, err := allowlists.ParseFile("review-"+p.Product+".yaml", p.Data)
		if err != nil {
			t.Fatalf("%s:\n%s\n%v", p.Product, p.Data, err)
		}
		for _, rule := range f.Proxy {
			if rule.Source != PatchSource || !strings.Contains(rule.Purpose, "denied ") || !strings.Contains(rule.Purpose, "2026-11-21T10:00:00Z") {
				t.Errorf("rule %+v: want source %q and a purpose with count and period", rule, PatchSource)
			}
		}
		files = append(files, f)
	}
	if findings := allowlists.Lint(embedded, files, nil); len(findings) > 0 {
		t.Fatalf("lint findings: %v", findings)
	}
	cat, err := allowlists.NewCatalog(append(embedded, files...)...)
	if err != nil {
		t.Fatal(err)
	}
	policy, _, err := allowlists.Compile(cat, allowlists.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range r.Products {
		id, err := policy.Identity("test", p.Name)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range p.Denied {
			dest, _ := allowlists.NewDest(d.Host, d.Port, "")
			if v := policy.Decide(id, dest); !v.Allow {
				t.Errorf("%s %s after the patch: %v", p.Name, d.Target(), v.Reason)
			}
		}
	}
	if !strings.Contains(string(patches[1].Data), `host: '*.svc.example.org'`) &&
		!strings.Contains(string(patches[1].Data), `host: "*.svc.example.org"`) {
		t.Errorf("no wildcard in the patch:\n%s", patches[1].Data)
	}
	t.Logf("the patch:\n%s", patches[1].Data)
}

// TestUnpatchedProducts: denies of clients with no product, and products
// whose name no allowlist file can carry, are named, not written.
func TestUnpatchedProducts(t *testing.T) {
	r := reviewLines(t, Filter{}, nil,
		deny(0, "a.example.net", 443, "no-rule"),
		deny(0, "b.example.net", 443, "no-rule", "Not_A_Product"),
		deny(0, "c.example.net", 443, "no-rule", "site"))
	patches, unpatched, err := r.Patches()
	if err != nil {
		t.Fatal(err)
	}
	if len(patches) != 1 || patches[0].Product != "site" {
		t.Errorf("patches %v", patches)
	}
	if len(unpatched) != 2 || !strings.Contains(unpatched[0], "no product") || !strings.Contains(unpatched[1], `"Not_A_Product"`) {
		t.Errorf("unpatched %q", unpatched)
	}
}
