package tlsfiles

import (
	"crypto/tls"
	"crypto/x509/pkix"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/egret-proxy/egret/internal/testpki"
)

// serve runs a TLS echo of the client certificate's CN on loopback with
// s's config and returns its address.
func serve(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", s.Config())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tc := c.(*tls.Conn)
				if tc.Handshake() != nil {
					return
				}
				cn := "-"
				if p := tc.ConnectionState().PeerCertificates; len(p) > 0 {
					cn = p[0].Subject.CommonName
				}
				c.Write([]byte(cn))
			}()
		}
	}()
	return ln.Addr().String()
}

// handshake connects to addr trusting ca and returns the server's leaf CN
// and what the server echoed (the client certificate's CN, or "-").
func handshake(t *testing.T, addr string, ca *testpki.CA, client *testpki.Leaf) (serverCN, echoed string, err error) {
	t.Helper()
	conf := &tls.Config{RootCAs: ca.Pool()}
	if client != nil { // sent even when the server asks for another CA (Go's client would send none)
		conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &client.TLS, nil }
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, conf)
	if err != nil {
		return "", "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 64)
	n, err := c.Read(b)
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName, string(b[:n]), err
}

func TestReloadsWhenTheFilesChange(t *testing.T) {
	ca := testpki.NewCA(t, "front")
	first := ca.Server("first")
	var mu sync.Mutex
	var reloads []error
	s, err := New(Options{CertFile: first.CertFile, KeyFile: first.KeyFile, Interval: -1, OnReload: func(err error) {
		mu.Lock()
		reloads = append(reloads, err)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, s)
	// The first certificate's serial is what the server presents.
	if _, _, err := handshake(t, addr, ca, nil); err != nil {
		t.Fatal(err)
	}
	leafSerial := func() string {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool()})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	if got := leafSerial(); got != first.Cert.SerialNumber.String() {
		t.Fatalf("serving serial %s, want the first certificate's %s", got, first.Cert.SerialNumber)
	}

	// A renewal that writes the certificate first and the key a moment
	// later: in between the pair does not match, and the old one stays.
	second := ca.Server("second")
	if err := os.WriteFile(first.CertFile, second.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := leafSerial(); got != first.Cert.SerialNumber.String() {
		t.Errorf("with a mismatched pair on disk, serving %s, want the old %s", got, first.Cert.SerialNumber)
	}
	// Renamed over the key, as an atomic writer does.
	tmp := first.KeyFile + ".new"
	if err := os.WriteFile(tmp, second.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, first.KeyFile); err != nil {
		t.Fatal(err)
	}
	if got := leafSerial(); got != second.Cert.SerialNumber.String() {
		t.Errorf("after the renewal, serving %s, want the new %s", got, second.Cert.SerialNumber)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reloads) != 2 || reloads[0] == nil || reloads[1] != nil {
		t.Errorf("reloads %v, want a refused mismatched pair then a success", reloads)
	}
}

func TestNewRefusesFilesThatDoNotLoad(t *testing.T) {
	ca := testpki.NewCA(t, "front")
	a, b := ca.Server("a"), ca.Server("b")
	if _, err := New(Options{CertFile: a.CertFile, KeyFile: b.KeyFile}); err == nil || !strings.Contains(err.Error(), a.CertFile) {
		t.Errorf("mismatched pair: err %v, want one naming %s", err, a.CertFile)
	}
	if _, err := New(Options{CertFile: a.CertFile, KeyFile: a.KeyFile, ClientCAFile: a.KeyFile}); err == nil {
		t.Error("a key file as client CA: no error")
	}
}

func TestClientCertificates(t *testing.T) {
	front, clients, other := testpki.NewCA(t, "front"), testpki.NewCA(t, "clients"), testpki.NewCA(t, "other")
	srv := front.Server("srv")
	good := clients.Client("good", pkix.Name{CommonName: "connector-a", Organization: []string{"Example"}})
	stranger := other.Client("stranger", pkix.Name{CommonName: "stranger"})
	for _, require := range []bool{false, true} {
		s, err := New(Options{CertFile: srv.CertFile, KeyFile: srv.KeyFile, ClientCAFile: clients.File,
			RequireClientCert: require})
		if err != nil {
			t.Fatal(err)
		}
		addr := serve(t, s)
		if _, echoed, err := handshake(t, addr, front, good); err != nil || echoed != "connector-a" {
			t.Errorf("require=%v, a certificate from the client CA: echoed %q, err %v; want connector-a", require, echoed, err)
		}
		if _, _, err := handshake(t, addr, front, stranger); err == nil {
			t.Errorf("require=%v: a certificate from another CA was accepted", require)
		}
		_, echoed, err := handshake(t, addr, front, nil)
		switch {
		case require && err == nil:
			t.Errorf("require=true: a handshake without a certificate was accepted (echoed %q)", echoed)
		case require && !isCertificateRequired(err):
			t.Errorf("require=true, no certificate: err %v, want the certificate_required alert", err)
		case !require && (err != nil || echoed != "-"):
			t.Errorf("require=false, no certificate: echoed %q, err %v; want -", echoed, err)
		}
	}
}

func isCertificateRequired(err error) bool {
	var alert tls.AlertError
	return errors.As(err, &alert) && alert == 116 || err != nil && strings.Contains(err.Error(), "certificate required")
}
