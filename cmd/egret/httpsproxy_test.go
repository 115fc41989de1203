package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/egret-proxy/egret/internal/testpki"
)

// TestServeHTTPSProxyReloadsItsCertificate runs the built binary with
// --listen-tls and a client CA: a client certificate names the identity,
// and a certificate renewed on disk is served from the next handshake
// while a tunnel opened before goes on.
func TestServeHTTPSProxyReloadsItsCertificate(t *testing.T) {
	_, port := upstream(t)
	front, clients := testpki.NewCA(t, "front"), testpki.NewCA(t, "clients")
	first, renewed := front.Server("egret"), front.Server("egret-renewed")
	connector := clients.Client("connector", pkix.Name{CommonName: "connector-a", Organization: []string{"Example"}})
	cfg := "product: [netapp-connector-aws]\nclients:\n  - name: connector\n    cert_subject: CN=connector-a,O=Example\n    products: [local]\n"
	tlsAddr := freeAddr(t)
	s := startServe(t, cfg, port, "--listen-tls", tlsAddr, "--tls-cert", first.CertFile, "--tls-key", first.KeyFile, "--client-ca", clients.File)
	s.waitFor(func() bool { return strings.Contains(s.stderr.String(), "egret: HTTPS proxy on "+tlsAddr) }, "the HTTPS listener announced")

	dial := func() (*tls.Conn, *bufio.Reader, int) {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", tlsAddr,
			&tls.Config{RootCAs: front.Pool(), Certificates: []tls.Certificate{connector.TLS}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "CONNECT example.com:%d HTTP/1.1\r\nHost: example.com:%d\r\n\r\n", port, port)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
		if err != nil {
			t.Fatal(err)
		}
		return c, br, resp.StatusCode
	}
	serial := func(c *tls.Conn) string { return c.ConnectionState().PeerCertificates[0].SerialNumber.String() }

	old, oldBr, code := dial()
	if code != 200 {
		t.Fatalf("CONNECT with the connector's certificate: %d\n%s", code, s.stdout.String())
	}
	if got := get(t, old, oldBr, "/before"); got != "upstream /before" {
		t.Fatalf("through the tunnel: %q", got)
	}
	if serial(old) != first.Cert.SerialNumber.String() {
		t.Fatal("not the first certificate")
	}

	// Renew: both files renamed over, as certbot's or cert-manager's writers do.
	for _, f := range []struct {
		from []byte
		to   string
	}{{renewed.KeyPEM, first.KeyFile}, {renewed.CertPEM, first.CertFile}} {
		if err := os.WriteFile(f.to+".new", f.from, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(f.to+".new", f.to); err != nil {
			t.Fatal(err)
		}
	}
	s.waitFor(func() bool {
		c, _, code := dial()
		defer c.Close()
		return code == 200 && serial(c) == renewed.Cert.SerialNumber.String()
	}, "the renewed certificate on a new handshake")
	if !strings.Contains(s.stderr.String(), "egret: HTTPS proxy certificate reloaded from "+first.CertFile) {
		t.Errorf("stderr does not say the certificate was reloaded:\n%s", s.stderr.String())
	}
	old.SetDeadline(time.Now().Add(10 * time.Second))
	if got := get(t, old, oldBr, "/after"); got != "upstream /after" {
		t.Fatalf("the tunnel opened before the renewal: %q", got)
	}
	s.waitFor(func() bool {
		return strings.Count(s.stdout.String(), `"msg":"decision","decision":"allow"`) >= 2 &&
			strings.Contains(s.stdout.String(), `"identity":"connector"`)
	}, "the connector's allow lines")
}
