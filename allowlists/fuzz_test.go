package allowlists

import (
	"strings"
	"testing"
)

// FuzzNormalizeName: a name that normalises is canonical (normalising it
// again changes nothing), short enough, and made of the hostname alphabet.
func FuzzNormalizeName(f *testing.F) {
	for _, s := range []string{"api.example.com", "API.Example.COM.", "Bücher.de", "xn--bcher-kva.de", "a..b",
		"xn--", "a\x00b", "exa\xffmple", "ｅｘａｍｐｌｅ.com", "_dmarc.x", "a。b", "%2e", strings.Repeat("a", 64)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		name, err := NormalizeName(raw)
		if err != nil {
			return
		}
		if again, err := NormalizeName(name); err != nil || again != name {
			t.Fatalf("NormalizeName(%q) = %q, but normalising that gives %q, %v", raw, name, again, err)
		}
		if len(name) > MaxNameLen || name == "" {
			t.Fatalf("NormalizeName(%q) = %q: length %d", raw, name, len(name))
		}
		for _, label := range strings.Split(name, ".") {
			if label == "" || len(label) > maxLabelLen {
				t.Fatalf("NormalizeName(%q) = %q: bad label %q", raw, name, label)
			}
			for i := 0; i < len(label); i++ {
				if c := label[i]; !isNameByte(c) || ('A' <= c && c <= 'Z') {
					t.Fatalf("NormalizeName(%q) = %q: byte %q", raw, name, c)
				}
			}
		}
	})
}

// FuzzParseIPLiteral: an address read from a literal reads back as itself
// from its canonical form; nothing both parses as an IP and normalises as
// a name that Decide would match against host rules.
func FuzzParseIPLiteral(f *testing.F) {
	for _, s := range []string{"127.0.0.1", "2130706433", "0x7f.1", "0177.0.0.1", "127.1", "[::1]", "::ffff:1.2.3.4",
		"1.2.3.256", "fe80::1%eth0", "0x", "08", "1.2.3.4.", "example.com"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		addr, isIP, err := ParseIPLiteral(s)
		if err != nil || !isIP {
			return
		}
		back, isIP2, err := ParseIPLiteral(addr.String())
		if err != nil || !isIP2 || back != addr {
			t.Fatalf("ParseIPLiteral(%q) = %v, but its canonical form reads as %v, %v, %v", s, addr, back, isIP2, err)
		}
		if addr.Is4In6() || addr.Zone() != "" {
			t.Fatalf("ParseIPLiteral(%q) = %v: mapped or zoned", s, addr)
		}
	})
}

// FuzzCleanPath: a cleaned path is canonical and has no dot segments left.
func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"/", "/svcgw", "/a/../b", "/%2e%2e/x", "/a%2fb", "/a?b#c", "/./", "/a/b/.."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		clean, ok := CleanPath(p)
		if !ok {
			return
		}
		if again, ok := CleanPath(clean); !ok || again != clean {
			t.Fatalf("CleanPath(%q) = %q, cleaned again %q %v", p, clean, again, ok)
		}
		for _, seg := range strings.Split(clean, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("CleanPath(%q) = %q keeps a dot segment", p, clean)
			}
		}
	})
}

// FuzzDecide: any destination text gives a verdict without panicking, and
// every allow names a rule that covers the port; IP literals are only ever
// allowed by "*" or a cidr rule.
func FuzzDecide(f *testing.F) {
	cat, err := LoadCatalog()
	if err != nil {
		f.Fatal(err)
	}
	p, _, err := Compile(cat, Settings{Vars: map[string]string{"region": "us-east-1"}, Deny: []string{"*.evil.example"}})
	if err != nil {
		f.Fatal(err)
	}
	id, err := p.Identity("fuzz", cat.Names()...)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"api.services.cloud.netapp.com:443", "https://support.netapp.com/svcgw/x", "x.blob.core.windows.net",
		"104.40.0.1", "[::1]:80", "http://repo1.maven.org/maven2/../etc", "a.evil.example", "evil.com#allowed.com", "2130706433"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		host, port, path, err := ParseTarget(target)
		if err != nil {
			return
		}
		d, err := NewDest(host, port, path)
		if err != nil {
			return
		}
		v := p.Decide(id, d)
		if !v.Allow {
			if v.Reason == ReasonRule {
				t.Fatalf("%q: denied with reason rule", target)
			}
			return
		}
		if v.Rule == nil || !v.Rule.allowsPort(d.Port) {
			t.Fatalf("%q: allowed by %v, which does not cover port %d", target, v.Rule, d.Port)
		}
		if d.IsIP() && v.Rule.Host != "" && v.Rule.Host != "*" {
			t.Fatalf("%q: IP literal allowed by host rule %v", target, v.Rule)
		}
	})
}

// FuzzParseFile: no input makes the loader panic, and a file it accepts
// compiles or is refused with an error.
func FuzzParseFile(f *testing.F) {
	f.Add([]byte("product: p\nsource: s\nproxy:\n  - {host: \"*.a.example\", ports: [443], purpose: x}\n"))
	f.Add([]byte("product: p\nsource: s\nvariables:\n  r: {description: d}\nproxy:\n  - {host: \"a.${r}.example\", purpose: x}\n"))
	f.Add([]byte("product: p\nsource: s\nnetwork:\n  - {protocol: udp, ports: [\"1-2\"], destination: \"${d}\", direction: egress, purpose: x}\n"))
	f.Add([]byte("product: p\nproxy: [{cidr: 10.0.0.0/8, purpose: x, source: y, paths: [/a]}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := ParseFile("fuzz.yaml", data)
		if err != nil {
			return
		}
		cat, err := NewCatalog(file)
		if err != nil {
			return
		}
		_, _, _ = Compile(cat, Settings{Vars: map[string]string{"r": "x", "d": "10.0.0.1"}})
		Lint(nil, []*File{file}, nil)
	})
}
