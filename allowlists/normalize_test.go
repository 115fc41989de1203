package allowlists

import (
	"errors"
	"strings"
	"testing"
)

func TestNormalizeName(t *testing.T) {
	tests := []struct {
		name, in, want string // want "" means ErrBadHost
	}{
		{"lower case kept", "api.example.com", "api.example.com"},
		{"upper case folded", "API.Example.COM", "api.example.com"},
		{"one trailing dot removed", "api.example.com.", "api.example.com"},
		{"underscore allowed", "_dmarc.example.com", "_dmarc.example.com"},
		{"single label", "localhost", "localhost"},
		{"unicode to punycode", "Bücher.de", "xn--bcher-kva.de"},
		{"fullwidth folded", "ｅｘａｍｐｌｅ.com", "example.com"},
		{"ideographic full stop is a dot", "example。com", "example.com"},
		{"canonical punycode kept", "xn--bcher-kva.de", "xn--bcher-kva.de"},
		{"upper-case punycode folded", "XN--BCHER-KVA.de", "xn--bcher-kva.de"},
		{"63-byte label", strings.Repeat("a", 63) + ".com", strings.Repeat("a", 63) + ".com"},
		{"253-byte name", name253(), name253()},

		{"empty", "", ""},
		{"only a dot", ".", ""},
		{"two trailing dots", "example.com..", ""},
		{"empty label", "api..example.com", ""},
		{"leading dot", ".example.com", ""},
		{"64-byte label", strings.Repeat("a", 64) + ".com", ""},
		{"254-byte name", "a" + name253(), ""},
		{"NUL", "example.com\x00.evil.com", ""},
		{"space", "example .com", ""},
		{"tab", "example\t.com", ""},
		{"percent-escape never decoded", "example%2ecom", ""},
		{"percent-escaped dot in unicode name", "bücher%2ede", ""},
		{"invalid UTF-8", "exa\xffmple.com", ""},
		{"bare xn--", "xn--.com", ""},
		{"undecodable punycode", "xn--abc.com", ""},
		{"non-canonical punycode", "xn--zz.com", ""},
		{"slash", "example.com/evil", ""},
		{"at sign", "allowed.com@evil.com", ""},
		{"hash", "evil.com#allowed.com", ""},
		{"colon", "example.com:443", ""},
		{"zero-width joiner", "a\u200db.com", ""},
		{"huge input", strings.Repeat("a.", 2000), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizeName(tt.in)
			if tt.want == "" {
				if err == nil || !errors.Is(err, ErrBadHost) {
					t.Fatalf("NormalizeName(%q) = %q, %v; want ErrBadHost", tt.in, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("NormalizeName(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func name253() string {
	return strings.Repeat(strings.Repeat("a", 62)+".", 4)[:253-4] + ".com"
}

func TestParseIPLiteral(t *testing.T) {
	tests := []struct {
		in   string
		want string // canonical address; "name" = not a literal; "bad" = ErrBadHost
	}{
		{"127.0.0.1", "127.0.0.1"},
		{"2130706433", "127.0.0.1"},
		{"0x7f000001", "127.0.0.1"},
		{"0x7f.1", "127.0.0.1"},
		{"0177.0.0.1", "127.0.0.1"},
		{"0177.0.0.01", "127.0.0.1"},
		{"127.1", "127.0.0.1"},
		{"127.0.1", "127.0.0.1"},
		{"0X7F.0.0.1", "127.0.0.1"},
		{"127.0.0.1.", "127.0.0.1"},
		{"0", "0.0.0.0"},
		{"0x", "0.0.0.0"},
		{"169.254.43518", "169.254.169.254"},
		{"1747451905", "104.40.0.1"},
		{"4294967295", "255.255.255.255"},
		{"::1", "::1"},
		{"[::1]", "::1"},
		{"[2001:db8::1]", "2001:db8::1"},
		{"::ffff:127.0.0.1", "127.0.0.1"},
		{"[::ffff:7f00:1]", "127.0.0.1"},
		{"64:ff9b::7f00:1", "64:ff9b::7f00:1"},

		{"example.com", "name"},
		{"1.example.com", "name"},
		{"0x7f.example", "name"},
		{"a1", "name"},
		{"1a", "name"},
		{"0x1g", "name"},

		{"4294967296", "bad"},
		{"1.2.3.256", "bad"},
		{"1.2.65536", "bad"},
		{"256.1", "bad"},
		{"1.2.3.4.5", "bad"},
		{"08.0.0.1", "bad"},
		{"example.123", "bad"},
		{"example.0x10", "bad"},
		{"99999999999999999999", "bad"},
		{"fe80::1%eth0", "bad"},
		{"[fe80::1%25eth0]", "bad"},
		{"[::1", "bad"},
		{"[1.2.3.4]", "bad"},
		{"::1::2", "bad"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			addr, isIP, err := ParseIPLiteral(tt.in)
			var got string
			switch {
			case err != nil && errors.Is(err, ErrBadHost):
				got = "bad"
			case err != nil:
				t.Fatalf("error not wrapping ErrBadHost: %v", err)
			case !isIP:
				got = "name"
			default:
				got = addr.String()
			}
			if got != tt.want {
				t.Fatalf("ParseIPLiteral(%q) = %s (err %v); want %s", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestCleanPath(t *testing.T) {
	tests := []struct{ in, want string }{ // want "!" = refused
		{"/", "/"},
		{"/svcgw", "/svcgw"},
		{"/svcgw/x?y=1", "/svcgw/x"},
		{"/a/./b", "/a/b"},
		{"/a/../b", "/b"},
		{"/../../b", "/b"},
		{"/a/b/..", "/a/"},
		{"/%2e%2e/secret", "/secret"},
		{"/maven2/%2E%2E/x", "/x"},
		{"/%7euser", "/~user"},
		{"/a%20b", "/a%20b"},
		{"/a%3fb", "/a%3Fb"},
		{"/a%2fb", "!"},
		{"/a%5cb", "!"},
		{"/a%zz", "!"},
		{"/a%2", "!"},
		{"relative", "!"},
		{"", "!"},
	}
	for _, tt := range tests {
		got, ok := CleanPath(tt.in)
		if !ok {
			got = "!"
		}
		if got != tt.want {
			t.Errorf("CleanPath(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

func TestPathHasPrefix(t *testing.T) {
	tests := []struct {
		path, prefix string
		want         bool
	}{
		{"/maven2", "/maven2", true},
		{"/maven2/x", "/maven2", true},
		{"/maven2x", "/maven2", false},
		{"/maven", "/maven2", false},
		{"/a/b", "/a/", true},
		{"/anything", "/", true},
	}
	for _, tt := range tests {
		if got := pathHasPrefix(tt.path, tt.prefix); got != tt.want {
			t.Errorf("pathHasPrefix(%q, %q) = %v; want %v", tt.path, tt.prefix, got, tt.want)
		}
	}
}

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in, host string
		port     int
		path     string
		bad      bool
	}{
		{in: "example.com", host: "example.com", port: 443},
		{in: "example.com:80", host: "example.com", port: 80},
		{in: "https://example.com", host: "example.com", port: 443},
		{in: "http://example.com", host: "example.com", port: 80},
		{in: "http://example.com/", host: "example.com", port: 80, path: "/"},
		{in: "https://support.netapp.com/svcgw", host: "support.netapp.com", port: 443, path: "/svcgw"},
		{in: "https://api.services.cloud.netapp.com:443", host: "api.services.cloud.netapp.com", port: 443},
		{in: "HTTP://Example.com:8080/x", host: "Example.com", port: 8080, path: "/x"},
		{in: "[::1]:8443", host: "::1", port: 8443},
		{in: "[::1]", host: "::1", port: 443},
		{in: "::1", host: "::1", port: 443},
		{in: "http://[2001:db8::1]/", host: "2001:db8::1", port: 80, path: "/"},
		{in: "example.com:0", bad: true},
		{in: "example.com:65536", bad: true},
		{in: "example.com:-1", bad: true},
		{in: "example.com:http", bad: true},
		{in: "example.com:", bad: true},
		{in: "ftp://example.com", bad: true},
		{in: "https://user@example.com", bad: true},
		{in: "example.com/path", bad: true},
		{in: "allowed.com@evil.com", bad: true},
		{in: "evil.com#allowed.com", bad: true},
	}
	for _, tt := range tests {
		host, port, path, err := ParseTarget(tt.in)
		if tt.bad {
			if err == nil {
				t.Errorf("ParseTarget(%q) = %q %d %q; want an error", tt.in, host, port, path)
			}
			continue
		}
		if err != nil || host != tt.host || port != tt.port || path != tt.path {
			t.Errorf("ParseTarget(%q) = %q %d %q %v; want %q %d %q", tt.in, host, port, path, err, tt.host, tt.port, tt.path)
		}
	}
}
