package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"strings"
	"time"

	"github.com/egret-proxy/egret/allowlists"
	lru "github.com/hashicorp/golang-lru/v2"
)

// LeafValidity is how long a minted leaf is valid; a cached leaf is
// minted again when less than leafRenewBefore of it remains.
const (
	LeafValidity    = 24 * time.Hour
	leafRenewBefore = time.Hour
)

// DefaultCacheSize is how many leaves a Minter keeps when given size 0.
const DefaultCacheSize = 1024

// Minter mints leaf certificates signed by a CA, only for names the CA's
// own name constraints permit, and keeps the most recently used ones in a
// bounded cache. It is safe for concurrent use.
type Minter struct {
	ca        *CA
	roots     *x509.CertPool // the CA alone, to verify every leaf before use
	permitted []string       // the CA's permitted DNS names, lower case
	excluded  []string       // its excluded DNS names, lower case
	cache     *lru.Cache[string, *tls.Certificate]
	now       func() time.Time
}

// NewMinter returns a minter for ca that caches up to size leaves (0:
// DefaultCacheSize).
func NewMinter(ca *CA, size int) (*Minter, error) {
	if size <= 0 {
		size = DefaultCacheSize
	}
	cache, err := lru.New[string, *tls.Certificate](size)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	return &Minter{
		ca: ca, roots: roots, cache: cache, now: time.Now,
		permitted: lower(ca.Cert.PermittedDNSDomains),
		excluded:  lower(ca.Cert.ExcludedDNSDomains),
	}, nil
}

func lower(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = strings.ToLower(n)
	}
	return out
}

// Permits reports whether the CA's name constraints allow a leaf for the
// name: a valid DNS name (never an IP address) within a permitted name
// and outside every excluded one.
func (m *Minter) Permits(name string) bool {
	if _, isIP, err := allowlists.ParseIPLiteral(name); isIP || err != nil {
		return false
	}
	norm, err := allowlists.NormalizeName(name)
	if err != nil || norm != name {
		return false // only canonical names: what is minted is what was checked
	}
	for _, c := range m.excluded {
		if constraintPermits(name, c) {
			return false
		}
	}
	for _, c := range m.permitted {
		if constraintPermits(name, c) {
			return true
		}
	}
	return false
}

// Certificate returns a leaf for the normalised name, from the cache or
// freshly minted. A name outside the CA's constraints is an error, and no
// leaf is made for it.
func (m *Minter) Certificate(name string) (*tls.Certificate, error) {
	if !m.Permits(name) {
		return nil, fmt.Errorf("certs: %q is outside the CA's name constraints (%s); no certificate minted",
			name, strings.Join(m.permitted, ", "))
	}
	now := m.now()
	if c, ok := m.cache.Get(name); ok && now.Before(c.Leaf.NotAfter.Add(-leafRenewBefore)) {
		return c, nil
	}
	c, err := m.mint(name, now)
	if err != nil {
		return nil, err
	}
	m.cache.Add(name, c)
	return c, nil
}

// Len returns the number of cached leaves.
func (m *Minter) Len() int { return m.cache.Len() }

// mint signs a new leaf for name and verifies it against the CA, name
// constraints included, before handing it out.
func (m *Minter) mint(name string, now time.Time) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	notAfter := now.Add(LeafValidity)
	if notAfter.After(m.ca.Cert.NotAfter) {
		notAfter = m.ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, m.ca.Cert, key.Public(), m.ca.Key)
	if err != nil {
		return nil, fmt.Errorf("certs: mint %s: %w", name, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: m.roots, DNSName: name, CurrentTime: now}); err != nil {
		return nil, fmt.Errorf("certs: minted leaf for %s does not verify against the CA: %w", name, err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}
