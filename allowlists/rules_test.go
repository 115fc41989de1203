package allowlists_test

import (
	"testing"

	"github.com/egret-proxy/egret/allowlists"
)

// TestPolicyRules lists a product's active rules after variables, in file
// order, leaving out the inactive ones; egret review enumerates them to find
// rules that matched nothing.
func TestPolicyRules(t *testing.T) {
	f, err := allowlists.ParseFile("site.yaml", []byte(`product: site
title: a site
source: test
variables:
  region: {description: a region}
  host: {description: a whole host}
proxy:
  - {host: "api.${region}.example.com", purpose: regional API}
  - {host: "*.cdn.example.com", ports: [80, 443], purpose: CDN}
  - {host: "${host}", purpose: inactive without a value}
  - {cidr: 192.0.2.0/24, purpose: a range}
  - {cidr: 198.51.100.7, purpose: one address}
  - {host: "time{1,2}.example.com", purpose: a glob}
`))
	if err != nil {
		t.Fatal(err)
	}
	cat, err := allowlists.NewCatalog(f)
	if err != nil {
		t.Fatal(err)
	}
	p := mustCompile(t, cat, allowlists.Settings{Vars: map[string]string{"region": "eu-west-1"}})
	want := []struct {
		pattern  string
		wildcard bool
	}{
		{"api.eu-west-1.example.com", false},
		{"*.cdn.example.com", true},
		{"192.0.2.0/24", true},
		{"198.51.100.7/32", false},
		{"time{1,2}.example.com", true},
	}
	got := p.Rules("site")
	if len(got) != len(want) {
		t.Fatalf("got %d rules, want %d: %v", len(got), len(want), got)
	}
	for i, w := range want {
		if got[i].Pattern() != w.pattern || got[i].IsWildcard() != w.wildcard || got[i].Product != "site" {
			t.Errorf("rule %d: %s wildcard=%v product=%s; want %s wildcard=%v", i, got[i].Pattern(), got[i].IsWildcard(), got[i].Product, w.pattern, w.wildcard)
		}
	}
	if p.Rules("no-such-product") != nil {
		t.Error("an unknown product has rules")
	}
}

func TestIsProductName(t *testing.T) {
	for name, want := range map[string]bool{"netapp-connector-aws": true, "a0": true, "": false, "-x": false, "Site": false, "a_b": false} {
		if allowlists.IsProductName(name) != want {
			t.Errorf("IsProductName(%q) = %v", name, !want)
		}
	}
}
