// Package certs is egret's certificate authority for optional TLS
// interception (DESIGN §8a): it creates a name-constrained CA, loads it,
// and mints short-lived leaf certificates for the names the CA's own
// constraints permit, and for no other.
package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// The files of a CA directory.
const (
	CertFile = "ca.pem"     // the CA certificate, for workloads to trust
	KeyFile  = "ca-key.pem" // its private key (PKCS #8), mode 0600
)

// CAValidity is how long a CA made by Init is valid. Workloads must be
// given a new ca.pem when it is replaced, so it is a year rather than
// days; leaves are short-lived (LeafValidity).
const CAValidity = 365 * 24 * time.Hour

// clockSkew backdates certificates so that a client whose clock is a
// little behind still accepts them.
const clockSkew = time.Hour

// ErrExists is wrapped by Init's error when the directory already holds a
// CA and force is not set.
var ErrExists = errors.New("a CA already exists")

// CA is a loaded certificate authority.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// Init creates a CA in dir (created with mode 0700 if missing) whose X.509
// name constraints permit only the given patterns' names ("*.domain"
// permits domain's subtree) and exclude every IPv4 and IPv6 address. The
// key is ECDSA P-256, written with mode 0600. Init refuses to replace an
// existing ca.pem or ca-key.pem unless force is set: workloads trust the
// old one.
func Init(dir string, patterns []HostPattern, force bool) (*CA, error) {
	if len(patterns) == 0 {
		return nil, errors.New("no names to permit: a CA without permitted names would sign for nothing")
	}
	if !force {
		for _, f := range []string{CertFile, KeyFile} {
			if _, err := os.Lstat(filepath.Join(dir, f)); err == nil {
				return nil, fmt.Errorf("%s: %w; workloads may trust it: pass --force to replace it", filepath.Join(dir, f), ErrExists)
			}
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:                randomSerial(),
		Subject:                     pkix.Name{CommonName: "egret interception CA", Organization: []string{"egret"}},
		NotBefore:                   now.Add(-clockSkew),
		NotAfter:                    now.Add(CAValidity),
		KeyUsage:                    x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid:       true,
		IsCA:                        true,
		MaxPathLenZero:              true, // it signs leaves only, never another CA
		PermittedDNSDomainsCritical: true,
		PermittedDNSDomains:         constraintNames(patterns),
		ExcludedIPRanges: []*net.IPNet{
			{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
			{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)},
		},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	// The key first: a ca.pem is never left without its key.
	if err := writeFileAtomic(filepath.Join(dir, KeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(dir, CertFile), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key}, nil
}

// constraintNames turns patterns into permitted DNS names, sorted and
// without duplicates: "*.domain" and "domain" both become domain.
func constraintNames(patterns []HostPattern) []string {
	seen := map[string]bool{}
	var names []string
	for _, p := range patterns {
		if !seen[p.Domain] {
			seen[p.Domain] = true
			names = append(names, p.Domain)
		}
	}
	sort.Strings(names)
	return names
}

// writeFileAtomic writes data to a temporary file in the same directory
// with mode perm from the start, then renames it over path, so that path
// is never half-written nor, for a key, readable by others for a moment.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// LoadCA reads dir's ca.pem and ca-key.pem. It refuses a certificate that
// is not a CA, has expired, does not match the key, or carries no
// critical permitted-DNS-name constraint: egret only signs with a CA that
// cannot sign for every name.
func LoadCA(dir string) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)
	cert, err := readCert(certPath)
	if err != nil {
		return nil, err
	}
	key, err := readKey(keyPath)
	if err != nil {
		return nil, err
	}
	switch now := time.Now(); {
	case !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0:
		return nil, fmt.Errorf("%s is not a CA certificate; create one with egret certs init", certPath)
	case len(cert.PermittedDNSDomains) == 0 || !cert.PermittedDNSDomainsCritical:
		return nil, fmt.Errorf("%s has no critical permitted-DNS-name constraints, so it could sign for any name; create one with egret certs init", certPath)
	case !excludesAllIPs(cert):
		return nil, fmt.Errorf("%s does not exclude every IP address (0.0.0.0/0 and ::/0), so it could sign for addresses; create one with egret certs init", certPath)
	case now.After(cert.NotAfter):
		return nil, fmt.Errorf("%s expired on %s; create a new one with egret certs init --force", certPath, cert.NotAfter.Format(time.DateOnly))
	case now.Before(cert.NotBefore):
		return nil, fmt.Errorf("%s is not valid before %s", certPath, cert.NotBefore.Format(time.RFC3339))
	}
	if pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%s is not the key of %s", keyPath, certPath)
	}
	return &CA{Cert: cert, Key: key}, nil
}

func readCert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM CERTIFICATE block", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cert, nil
}

func readKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	var key any
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("%s: PEM block %q is not a private key", path, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: key of type %T cannot sign", path, key)
	}
	return signer, nil
}

// randomSerial returns a random 128-bit serial number (RFC 5280 allows up
// to 20 octets; unpredictable serials are CA/B Forum practice).
func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return n.Add(n, big.NewInt(1))
}

// excludesAllIPs reports whether cert's name constraints exclude every
// IPv4 and every IPv6 address, as egret's CAs do (DESIGN §8a).
func excludesAllIPs(cert *x509.Certificate) bool {
	var v4, v6 bool
	for _, n := range cert.ExcludedIPRanges {
		if ones, _ := n.Mask.Size(); ones != 0 {
			continue
		}
		if n.IP.To4() != nil {
			v4 = true
		} else {
			v6 = true
		}
	}
	return v4 && v6
}
