package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func mustPatterns(t *testing.T, ss ...string) []HostPattern {
	t.Helper()
	var out []HostPattern
	for _, s := range ss {
		p, err := ParseHostPattern(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

// newCA creates a CA in a fresh directory for support.netapp.com and
// *.example.org.
func newCA(t *testing.T) (string, *CA) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ca")
	ca, err := Init(dir, mustPatterns(t, "support.netapp.com", "*.example.org", "Support.NetApp.com."), false)
	if err != nil {
		t.Fatal(err)
	}
	return dir, ca
}

func readPEMCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("%s: no CERTIFICATE block", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestInitWritesConstrainedCA(t *testing.T) {
	dir, _ := newCA(t)
	cert := readPEMCert(t, filepath.Join(dir, CertFile))
	if want := []string{"example.org", "support.netapp.com"}; !slices.Equal(cert.PermittedDNSDomains, want) {
		t.Errorf("permitted DNS names %q, want %q", cert.PermittedDNSDomains, want)
	}
	if !cert.PermittedDNSDomainsCritical {
		t.Error("name constraints are not critical")
	}
	var excluded []string
	for _, n := range cert.ExcludedIPRanges {
		excluded = append(excluded, n.String())
	}
	if want := []string{"0.0.0.0/0", "::/0"}; !slices.Equal(excluded, want) {
		t.Errorf("excluded IP ranges %q, want %q", excluded, want)
	}
	nameConstraints := asn1.ObjectIdentifier{2, 5, 29, 30}
	found := false
	for _, ext := range cert.Extensions {
		if ext.Id.Equal(nameConstraints) {
			found = true
			if !ext.Critical {
				t.Error("the nameConstraints extension is not marked critical")
			}
		}
	}
	if !found {
		t.Error("no nameConstraints extension")
	}
	if !cert.IsCA || !cert.MaxPathLenZero || cert.MaxPathLen != 0 || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("not a path-length-0 CA: IsCA %v MaxPathLen %d KeyUsage %v", cert.IsCA, cert.MaxPathLen, cert.KeyUsage)
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key %T, want ECDSA P-256", cert.PublicKey)
	}
	if life := cert.NotAfter.Sub(cert.NotBefore); life > CAValidity+2*time.Hour || life < CAValidity {
		t.Errorf("validity %s, want about %s", life, CAValidity)
	}
	for file, want := range map[string]os.FileMode{KeyFile: 0o600, CertFile: 0o644} {
		st, err := os.Stat(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s mode %o, want %o", file, st.Mode().Perm(), want)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("directory holds %d entries, want ca.pem and ca-key.pem only (no temporary files)", len(entries))
	}
}

func TestInitRefusesToOverwrite(t *testing.T) {
	dir, _ := newCA(t)
	before, _ := os.ReadFile(filepath.Join(dir, KeyFile))
	_, err := Init(dir, mustPatterns(t, "other.example.com"), false)
	if !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("second Init: %v, want ErrExists naming --force", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, KeyFile))
	if !bytes.Equal(before, after) {
		t.Fatal("the key changed although Init refused")
	}
	if _, err := Init(dir, mustPatterns(t, "other.example.com"), true); err != nil {
		t.Fatalf("Init with force: %v", err)
	}
	after, _ = os.ReadFile(filepath.Join(dir, KeyFile))
	if bytes.Equal(before, after) {
		t.Fatal("force did not replace the key")
	}
	if st, _ := os.Stat(filepath.Join(dir, KeyFile)); st.Mode().Perm() != 0o600 {
		t.Errorf("replaced key mode %o, want 600", st.Mode().Perm())
	}
	cert := readPEMCert(t, filepath.Join(dir, CertFile))
	if !slices.Equal(cert.PermittedDNSDomains, []string{"other.example.com"}) {
		t.Errorf("replaced CA permits %q", cert.PermittedDNSDomains)
	}
}

func TestLoadCA(t *testing.T) {
	dir, ca := newCA(t)
	loaded, err := LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Cert.Equal(ca.Cert) {
		t.Error("loaded certificate differs")
	}

	t.Run("key of another CA", func(t *testing.T) {
		other, _ := newCA(t)
		key, _ := os.ReadFile(filepath.Join(other, KeyFile))
		mixed := t.TempDir()
		cert, _ := os.ReadFile(filepath.Join(dir, CertFile))
		os.WriteFile(filepath.Join(mixed, CertFile), cert, 0o644)
		os.WriteFile(filepath.Join(mixed, KeyFile), key, 0o600)
		if _, err := LoadCA(mixed); err == nil || !strings.Contains(err.Error(), "is not the key of") {
			t.Errorf("mismatched key: %v", err)
		}
	})
	t.Run("unconstrained CA", func(t *testing.T) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: randomSerial(), Subject: pkix.Name{CommonName: "open"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		}
		der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
		open := t.TempDir()
		os.WriteFile(filepath.Join(open, CertFile), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
		os.WriteFile(filepath.Join(open, KeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
		if _, err := LoadCA(open); err == nil || !strings.Contains(err.Error(), "could sign for any name") {
			t.Errorf("unconstrained CA: %v", err)
		}
	})
	t.Run("DNS constraints but addresses not excluded", func(t *testing.T) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: randomSerial(), Subject: pkix.Name{CommonName: "names only"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
			PermittedDNSDomainsCritical: true, PermittedDNSDomains: []string{"example.org"},
		}
		der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, CertFile), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
		os.WriteFile(filepath.Join(dir, KeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
		if _, err := LoadCA(dir); err == nil || !strings.Contains(err.Error(), "could sign for addresses") {
			t.Errorf("CA without excluded IP ranges: %v", err)
		}
	})
	t.Run("missing directory", func(t *testing.T) {
		if _, err := LoadCA(filepath.Join(t.TempDir(), "none")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("missing CA: %v", err)
		}
	})
}

func TestMinterLeafVerifiesAgainstCA(t *testing.T) {
	dir, ca := newCA(t)
	m, err := NewMinter(ca, 8)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(readPEMCert(t, filepath.Join(dir, CertFile))) // as a workload would: from ca.pem
	for _, name := range []string{"support.netapp.com", "repo.example.org", "a.b.example.org", "example.org"} {
		c, err := m.Certificate(name)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: name}); err != nil {
			t.Errorf("leaf for %s does not verify: %v", name, err)
		}
		if !slices.Equal(leaf.DNSNames, []string{name}) || len(leaf.IPAddresses) != 0 {
			t.Errorf("leaf for %s has SANs %q %v", name, leaf.DNSNames, leaf.IPAddresses)
		}
		if life := leaf.NotAfter.Sub(leaf.NotBefore); life > LeafValidity+2*time.Hour {
			t.Errorf("leaf for %s valid for %s", name, life)
		}
		if _, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok {
			t.Errorf("leaf key %T, want ECDSA", leaf.PublicKey)
		}
	}
}

func TestMinterRefusesNamesOutsideConstraints(t *testing.T) {
	_, ca := newCA(t)
	m, err := NewMinter(ca, 8)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{
		"evil.com", "netapp.com", "xsupport.netapp.com", "support.netapp.com.evil.com",
		"example.org.evil.com", "badexample.org", "127.0.0.1", "10.0.0.1", "::1",
		"SUPPORT.netapp.com", "support.netapp.com.", "", "*.example.org",
	} {
		c, err := m.Certificate(name)
		if err == nil || c != nil {
			t.Errorf("minted a leaf for %q", name)
		}
	}
	if m.Len() != 0 {
		t.Errorf("cache holds %d leaves after refusals", m.Len())
	}
}

// Even with the CA's key, a leaf for a name outside the constraints does
// not verify: crypto/x509 (like browsers and OpenSSL) enforces them.
func TestStolenKeyCannotSignOutsideConstraints(t *testing.T) {
	dir, ca := newCA(t)
	roots := x509.NewCertPool()
	roots.AddCert(readPEMCert(t, filepath.Join(dir, CertFile)))
	for _, name := range []string{"evil.com", "login.microsoftonline.com"} {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: randomSerial(), DNSNames: []string{name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
		if err != nil {
			t.Fatal(err)
		}
		leaf, _ := x509.ParseCertificate(der)
		_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: name})
		var inv x509.CertificateInvalidError
		if !errors.As(err, &inv) || inv.Reason != x509.CANotAuthorizedForThisName {
			t.Errorf("hand-signed leaf for %s: %v, want CANotAuthorizedForThisName", name, err)
		}
	}
}

func TestMinterCacheIsBounded(t *testing.T) {
	_, ca := newCA(t)
	const size = 3
	m, err := NewMinter(ca, size)
	if err != nil {
		t.Fatal(err)
	}
	first, err := m.Certificate("a.example.org")
	if err != nil {
		t.Fatal(err)
	}
	again, _ := m.Certificate("a.example.org")
	if again != first {
		t.Error("a second request for the same name minted a new leaf")
	}
	for i := range 20 {
		if _, err := m.Certificate(fmt.Sprintf("n%d.example.org", i)); err != nil {
			t.Fatal(err)
		}
		if m.Len() > size {
			t.Fatalf("cache holds %d leaves, limit %d", m.Len(), size)
		}
	}
	if m.Len() != size {
		t.Errorf("cache holds %d leaves, want %d", m.Len(), size)
	}
	if evicted, _ := m.Certificate("a.example.org"); evicted == first {
		t.Error("the least recently used leaf was not evicted")
	}
}

func TestMinterRenewsLeavesNearExpiry(t *testing.T) {
	_, ca := newCA(t)
	m, _ := NewMinter(ca, 4)
	first, err := m.Certificate("support.netapp.com")
	if err != nil {
		t.Fatal(err)
	}
	m.now = func() time.Time { return time.Now().Add(LeafValidity - leafRenewBefore/2) }
	renewed, err := m.Certificate("support.netapp.com")
	if err != nil {
		t.Fatal(err)
	}
	if renewed == first || !renewed.Leaf.NotAfter.After(first.Leaf.NotAfter) {
		t.Error("a leaf near its expiry was served again instead of renewed")
	}
}

func TestParseHostPattern(t *testing.T) {
	for _, tt := range []struct {
		name, in, want, err string
	}{
		{"exact name", "support.netapp.com", "support.netapp.com", ""},
		{"normalised", "Repo1.Maven.ORG.", "repo1.maven.org", ""},
		{"subtree", "*.example.org", "*.example.org", ""},
		{"IDNA", "*.bücher.example", "*.xn--bcher-kva.example", ""},
		{"private suffix wildcard", "*.blob.core.windows.net", "*.blob.core.windows.net", ""},
		{"everything", "*", "", "every name"},
		{"ICANN suffix", "*.com", "", "public suffix com"},
		{"two-label ICANN suffix", "*.co.uk", "", "public suffix co.uk"},
		{"unset variable", "ec2.${region}.amazonaws.com", "", "--var"},
		{"brace glob", "time{1,2}.google.com", "", "exact names and *.domain only"},
		{"range glob", "[0-3].pool.ntp.org", "", "exact names and *.domain only"},
		{"in-label star", "api-*.example.com", "", "exact names and *.domain only"},
		{"IPv4", "10.0.0.1", "", "IP address"},
		{"inet_aton form", "2130706433", "", "IP address"},
		{"IPv6", "::1", "", "IP address"},
		{"bad name", "a..b.com", "", "bad host"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParseHostPattern(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseHostPattern(%q) = %v, %v; want error containing %q", tt.in, p, err, tt.err)
				}
				return
			}
			if err != nil || p.String() != tt.want {
				t.Fatalf("ParseHostPattern(%q) = %v, %v; want %s", tt.in, p, err, tt.want)
			}
		})
	}
}

func TestHostPatternMatches(t *testing.T) {
	sub, exact := mustPatterns(t, "*.example.org")[0], mustPatterns(t, "example.org")[0]
	for _, tt := range []struct {
		p    HostPattern
		name string
		want bool
	}{
		{sub, "a.example.org", true},
		{sub, "a.b.example.org", true},
		{sub, "example.org", false},
		{sub, "badexample.org", false},
		{exact, "example.org", true},
		{exact, "a.example.org", false},
	} {
		if got := tt.p.Matches(tt.name); got != tt.want {
			t.Errorf("%s matches %s: %v, want %v", tt.p, tt.name, got, tt.want)
		}
	}
}
