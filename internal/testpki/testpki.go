// Package testpki mints the certificates egret's tests need: a CA, server
// certificates for loopback, and client certificates with a chosen subject
// and SANs, each also written as PEM files for the real clients (curl,
// Python, Node) that read them from disk. It is for tests only.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// CA is a certificate authority that signs leaves.
type CA struct {
	Cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	CertPEM []byte
	// File is the CA certificate as a PEM file.
	File string
	dir  string
	t    testing.TB
}

// Leaf is a signed certificate and its key, in memory and as PEM files.
type Leaf struct {
	Cert              *x509.Certificate
	TLS               tls.Certificate
	CertFile, KeyFile string
	CertPEM, KeyPEM   []byte
}

// NewCA makes a CA named name whose files go into a temporary directory.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	dir := t.TempDir()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"egret tests"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &CA{Cert: cert, key: key, CertPEM: pemOf("CERTIFICATE", der), dir: dir, t: t}
	ca.File = filepath.Join(dir, name+"-ca.pem")
	write(t, ca.File, ca.CertPEM)
	return ca
}

// Pool is a cert pool holding the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Server signs a server certificate for loopback (127.0.0.1, ::1 and
// localhost) plus names.
func (ca *CA) Server(file string, names ...string) *Leaf {
	return ca.sign(file, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "egret"},
		DNSNames:    append([]string{"localhost"}, names...),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
}

// Client signs a client certificate with subject and SANs: each san is a
// URI when it has a scheme, an e-mail address when it has an @, else a DNS
// name.
func (ca *CA) Client(file string, subject pkix.Name, sans ...string) *Leaf {
	tmpl := &x509.Certificate{Subject: subject, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	for _, s := range sans {
		if u, err := url.Parse(s); err == nil && u.Scheme != "" {
			tmpl.URIs = append(tmpl.URIs, u)
		} else if strings.IndexByte(s, '@') >= 0 {
			tmpl.EmailAddresses = append(tmpl.EmailAddresses, s)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, s)
		}
	}
	return ca.sign(file, tmpl)
}

func (ca *CA) sign(file string, tmpl *x509.Certificate) *Leaf {
	t := ca.t
	t.Helper()
	key := newKey(t)
	tmpl.SerialNumber = serial(t)
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	l := &Leaf{CertPEM: pemOf("CERTIFICATE", der), KeyPEM: pemOf("PRIVATE KEY", kder)}
	l.Cert, _ = x509.ParseCertificate(der)
	if l.TLS, err = tls.X509KeyPair(l.CertPEM, l.KeyPEM); err != nil {
		t.Fatal(err)
	}
	l.CertFile, l.KeyFile = filepath.Join(ca.dir, file+".pem"), filepath.Join(ca.dir, file+"-key.pem")
	write(t, l.CertFile, l.CertPEM)
	write(t, l.KeyFile, l.KeyPEM)
	return l
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func serial(t testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func pemOf(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func write(t testing.TB, file string, b []byte) {
	t.Helper()
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
