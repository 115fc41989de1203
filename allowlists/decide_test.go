package allowlists_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/egret-proxy/egret/allowlists"
)

// testPolicy compiles allowlist files given as YAML text.
func testPolicy(t *testing.T, s allowlists.Settings, docs ...string) *allowlists.Policy {
	t.Helper()
	var files []*allowlists.File
	for i, doc := range docs {
		f, err := allowlists.ParseFile("test"+itoa(i)+".yaml", []byte(doc))
		if err != nil {
			t.Fatalf("parse: %v", err)
		}
		files = append(files, f)
	}
	cat, err := allowlists.NewCatalog(files...)
	if err != nil {
		t.Fatalf("catalog: %v", err)
	}
	return mustCompile(t, cat, s)
}

const semanticsDoc = `
product: p
source: test.txt
variables:
  region: {description: AWS region}
  comp: {description: a component address}
proxy:
  - {host: api.example.com, purpose: exact}
  - {host: "*.wild.example", purpose: suffix wildcard}
  - {host: "time{1,2,3,4}.google.com", ports: [443, 80], purpose: braces}
  - {host: "[0-3].resinio.pool.ntp.org", purpose: class}
  - {host: "ec2.${region}.amazonaws.com", purpose: in-label variable}
  - {host: "snovap${region}.blob.core.windows.net", purpose: variable inside a label}
  - {host: "${comp}", ports: [5671], purpose: whole-host variable}
  - {host: http.example.com, ports: [80], purpose: plain http}
  - {cidr: 104.40.0.0/13, purpose: a range}
  - {cidr: "2001:db8::/32", purpose: a v6 range}
  - {host: support.example.com, paths: [/svcgw, /ServiceGW/entitlement], purpose: paths}
  - {host: repo.example.com, paths: [/maven2], purpose: paths only}
  - {host: both.example.com, paths: [/only], purpose: paths}
  - {host: both.example.com, purpose: no paths}
`

func TestDecideSemantics(t *testing.T) {
	tests := []struct {
		name, dest, want string // want: "allow", "allow unenforced", or a deny reason
	}{
		{"exact", "api.example.com", "allow"},
		{"exact, scheme is not part of a rule", "http://api.example.com:443/", "allow"},
		{"exact, wrong port", "api.example.com:8443", "no-rule"},
		{"exact, default port of http URL", "http://api.example.com/", "no-rule"},
		{"exact, suffix appended", "api.example.com.evil.com", "no-rule"},
		{"exact, prefix label", "x.api.example.com", "no-rule"},
		{"exact, lookalike", "evilapi.example.com", "no-rule"},
		{"exact, case and trailing dot", "API.Example.COM.", "allow"},
		{"wildcard, one label", "a.wild.example", "allow"},
		{"wildcard, two labels", "a.b.wild.example", "allow"},
		{"wildcard, never the apex", "wild.example", "no-rule"},
		{"wildcard, not a lookalike", "badwild.example", "no-rule"},
		{"wildcard, not a suffix of a longer name", "a.wild.example.evil.com", "no-rule"},
		{"braces", "time3.google.com", "allow"},
		{"braces on another listed port", "time3.google.com:80", "allow"},
		{"braces, not listed", "time5.google.com", "no-rule"},
		{"class", "2.resinio.pool.ntp.org", "allow"},
		{"class, out of range", "4.resinio.pool.ntp.org", "no-rule"},
		{"unset variable matches a label", "ec2.eu-west-1.amazonaws.com", "allow"},
		{"unset variable stays in one label", "ec2.a.b.amazonaws.com", "no-rule"},
		{"unset variable inside a label", "snovapeastus.blob.core.windows.net", "allow"},
		{"unset whole-host variable: inactive", "rabbit.internal:5671", "no-rule"},
		{"plain http port", "http://http.example.com/x", "allow"},
		{"IP literal in range", "104.40.0.1", "allow"},
		{"IP literal in range, decimal form", "1747451905", "allow"},
		{"IP literal in range, mapped IPv6", "[::ffff:104.40.0.1]", "allow"},
		{"IP literal outside range", "104.48.0.1", "no-rule"},
		{"IP literal in range, wrong port", "104.40.0.1:80", "no-rule"},
		{"IPv6 literal in range", "[2001:db8::5]:443", "allow"},
		{"IP literal never matches host rules", "93.184.216.34", "no-rule"},
		{"path rule, tunnel", "support.example.com", "allow unenforced"},
		{"path rule, allowed path", "https://support.example.com/svcgw", "allow"},
		{"path rule, under allowed path", "https://support.example.com/svcgw/v1/x?q=1", "allow"},
		{"path rule, second prefix", "https://support.example.com/ServiceGW/entitlement", "allow"},
		{"path rule, case matters", "https://support.example.com/servicegw/entitlement", "path"},
		{"path rule, segment boundary", "https://support.example.com/svcgwx", "path"},
		{"path rule, other path", "https://support.example.com/admin", "path"},
		{"path rule, dot segments escape", "https://support.example.com/svcgw/../admin", "path"},
		{"path rule, encoded dots", "https://support.example.com/svcgw/%2e%2e/admin", "path"},
		{"path rule, encoded slash", "https://support.example.com/svcgw%2fadmin", "path"},
		{"path rule, root", "http://repo.example.com:443/", "path"},
		{"rule without paths decides", "https://both.example.com/elsewhere", "allow"},
		{"bad host", "api..example.com", "bad-host"},
	}
	p := testPolicy(t, allowlists.Settings{}, semanticsDoc)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := decideWord(t, p, "p", tt.dest); got != tt.want {
				t.Fatalf("%s: got %s, want %s", tt.dest, got, tt.want)
			}
		})
	}
}

// decideWord decides a destination and describes the verdict in a word.
func decideWord(t *testing.T, p *allowlists.Policy, product, dest string) string {
	t.Helper()
	id, err := p.Identity("t", strings.Split(product, ",")...)
	if err != nil {
		t.Fatal(err)
	}
	host, port, path, err := allowlists.ParseTarget(dest)
	if err != nil {
		return "bad-host"
	}
	d, err := allowlists.NewDest(host, port, path)
	if err != nil {
		return "bad-host"
	}
	v := p.Decide(id, d)
	switch {
	case v.Allow && v.PathsUnenforced:
		return "allow unenforced"
	case v.Allow:
		return "allow"
	}
	return v.Reason.String()
}

func TestDecideVariables(t *testing.T) {
	p := testPolicy(t, allowlists.Settings{Vars: map[string]string{"region": "us-east-1", "comp": "rabbit.internal"}}, semanticsDoc)
	for dest, want := range map[string]string{
		"ec2.us-east-1.amazonaws.com":           "allow",
		"ec2.eu-west-1.amazonaws.com":           "no-rule",
		"snovapus-east-1.blob.core.windows.net": "allow",
		"rabbit.internal:5671":                  "allow",
		"rabbit.internal:443":                   "no-rule",
		"other.internal:5671":                   "no-rule",
	} {
		if got := decideWord(t, p, "p", dest); got != want {
			t.Errorf("%s: got %s, want %s", dest, got, want)
		}
	}
	// A whole-host variable may be an address or a range: it becomes a cidr rule.
	p = testPolicy(t, allowlists.Settings{Vars: map[string]string{"comp": "10.1.2.0/24"}}, semanticsDoc)
	for dest, want := range map[string]string{"10.1.2.3:5671": "allow", "10.1.3.3:5671": "no-rule"} {
		if got := decideWord(t, p, "p", dest); got != want {
			t.Errorf("comp=10.1.2.0/24: %s: got %s, want %s", dest, got, want)
		}
	}
	if n := len(testPolicy(t, allowlists.Settings{}, semanticsDoc).Inactive()); n != 1 {
		t.Errorf("inactive rules with comp unset: %d, want 1", n)
	}
}

func TestCompileRefusesBadVariableValues(t *testing.T) {
	f, err := allowlists.ParseFile("t.yaml", []byte(semanticsDoc))
	if err != nil {
		t.Fatal(err)
	}
	cat, err := allowlists.NewCatalog(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, vars := range []map[string]string{
		{"region": "eu.west"},   // crosses a label
		{"region": "*"},         // a wildcard smuggled in
		{"comp": "not a name!"}, // neither name nor address
		{"comp": "10.1.2.3/8"},  // host bits set
	} {
		if _, _, err := allowlists.Compile(cat, allowlists.Settings{Vars: vars}); err == nil {
			t.Errorf("Compile with %v: no error", vars)
		} else if !strings.Contains(err.Error(), "t.yaml:") {
			t.Errorf("Compile with %v: error %q does not name the file and line", vars, err)
		}
	}
	_, warnings, err := allowlists.Compile(cat, allowlists.Settings{Vars: map[string]string{"nobody_uses_me": "x"}})
	if err != nil || len(warnings) != 1 || !strings.Contains(warnings[0], "nobody_uses_me") {
		t.Errorf("unused variable: warnings %q, err %v; want one warning naming it", warnings, err)
	}
}

func TestDenyEntriesWin(t *testing.T) {
	deny := []string{"bad.wild.example", "*.evil.wild.example", "104.40.1.0/24", "2001:db8::66"}
	p := testPolicy(t, allowlists.Settings{Deny: deny}, semanticsDoc)
	for dest, want := range map[string]string{
		"good.wild.example":   "allow",
		"bad.wild.example":    "deny-entry",
		"x.evil.wild.example": "deny-entry",
		"evil.wild.example":   "allow", // the deny wildcard is not its apex
		"104.40.0.1":          "allow",
		"104.40.1.7":          "deny-entry",
		"[2001:db8::66]":      "deny-entry",
		"[2001:db8::67]":      "allow",
	} {
		if got := decideWord(t, p, "p", dest); got != want {
			t.Errorf("%s: got %s, want %s", dest, got, want)
		}
	}
	if _, _, err := allowlists.Compile(mustCatalog(t), allowlists.Settings{Deny: []string{"bad..name"}}); err == nil {
		t.Error("a malformed deny entry was accepted")
	}
}

func TestResolvedAddressMatchesCIDR(t *testing.T) {
	p := testPolicy(t, allowlists.Settings{Deny: []string{"104.40.9.0/24"}}, semanticsDoc)
	id, _ := p.Identity("t", "p")
	d, err := allowlists.NewDest("frontdoor.example.net", 443, "")
	if err != nil {
		t.Fatal(err)
	}
	if v := p.Decide(id, d); v.Allow {
		t.Fatalf("unresolved name allowed by %v", v.Rule)
	}
	if v := p.Decide(id, d.WithAddr(netip.MustParseAddr("104.40.3.4"))); !v.Allow || v.Rule.Pattern() != "104.40.0.0/13" {
		t.Fatalf("name resolving into 104.40.0.0/13: %+v", v)
	}
	if v := p.Decide(id, d.WithAddr(netip.MustParseAddr("104.40.9.9"))); v.Allow || v.Reason != allowlists.ReasonDenyEntry {
		t.Fatalf("name resolving into a denied range: %+v", v)
	}
}

func TestVerdictCarriesProvenance(t *testing.T) {
	p := testPolicy(t, allowlists.Settings{}, semanticsDoc)
	id, _ := p.Identity("t", "p")
	d, _ := allowlists.NewDest("x.wild.example", 443, "")
	v := p.Decide(id, d)
	if !v.Allow || v.Product() != "p" || v.Rule.Pattern() != "*.wild.example" ||
		v.Rule.Source != "test.txt" || v.Rule.Purpose != "suffix wildcard" || v.Rule.File != "test0.yaml" || v.Rule.Line == 0 {
		t.Fatalf("verdict %+v, rule %+v", v, v.Rule)
	}
}

func TestIdentityWithSeveralProducts(t *testing.T) {
	second := "product: q\nsource: q.txt\nproxy:\n  - {host: q.example.com, purpose: q only}\n"
	p := testPolicy(t, allowlists.Settings{}, semanticsDoc, second)
	if got := decideWord(t, p, "p", "q.example.com"); got != "no-rule" {
		t.Errorf("p alone: %s", got)
	}
	if got := decideWord(t, p, "p,q", "q.example.com"); got != "allow" {
		t.Errorf("p and q: %s", got)
	}
	if _, err := p.Identity("t", "nope"); err == nil {
		t.Error("unknown product accepted")
	}
}

func TestBroadHostMatchesEverything(t *testing.T) {
	doc := `
product: b
source: b.txt
proxy:
  - {host: "*", ports: [80, 443], purpose: outbound internet, broad: the document gives no names}
`
	p := testPolicy(t, allowlists.Settings{}, doc)
	for dest, want := range map[string]string{
		"anything.example": "allow", "1.2.3.4": "allow", "[2001:db8::1]:80": "allow",
		"anything.example:22": "no-rule",
	} {
		if got := decideWord(t, p, "b", dest); got != want {
			t.Errorf("%s: got %s, want %s", dest, got, want)
		}
	}
}

func TestExtensionFileAddsRules(t *testing.T) {
	ext := "product: p\nproxy:\n  - {host: extra.example.com, source: local, purpose: site addition}\n"
	p := testPolicy(t, allowlists.Settings{}, semanticsDoc, ext)
	if got := decideWord(t, p, "p", "extra.example.com"); got != "allow" {
		t.Errorf("extension rule: %s", got)
	}
	if got := decideWord(t, p, "p", "api.example.com"); got != "allow" {
		t.Errorf("base rule after extension: %s", got)
	}
}
