package config

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/egret-proxy/egret/internal/testpki"
)

// TestHTTPSListenerErrors: each HTTPS-listener key refused with its line.
func TestHTTPSListenerErrors(t *testing.T) {
	ca := testpki.NewCA(t, "front")
	srv, other := ca.Server("srv"), ca.Server("other")
	tlsKeys := "listen_tls: 127.0.0.1:3129\ntls_cert: " + srv.CertFile + "\ntls_key: " + srv.KeyFile + "\n"
	certClient := func(extra string) string {
		return tlsKeys + "client_ca: " + ca.File + "\nclients:\n  - name: c\n    products: [p]\n" + extra
	}
	for _, tc := range []struct{ name, yaml, want string }{
		{"listen_tls not host:port", "listen_tls: https", `egret.yaml:1: listen_tls: "https" is not host:port`},
		{"no certificate", "listen_tls: :3129", `egret.yaml:1: listen_tls: needs a certificate: set tls_cert`},
		{"no key", "listen_tls: :3129\ntls_cert: " + srv.CertFile, `egret.yaml:1: listen_tls: needs the certificate's private key too: set tls_key`},
		{"certificate missing", "listen_tls: :3129\ntls_cert: /nonexistent/cert.pem\ntls_key: " + srv.KeyFile, `egret.yaml:2: tls_cert: /nonexistent/cert.pem with key ` + srv.KeyFile + `: open /nonexistent/cert.pem: no such file or directory`},
		{"key of another certificate", "listen_tls: :3129\ntls_cert: " + srv.CertFile + "\ntls_key: " + other.KeyFile, `egret.yaml:2: tls_cert: ` + srv.CertFile + ` with key ` + other.KeyFile + `: tls: private key does not match public key`},
		{"certificate without listen_tls", "tls_cert: " + srv.CertFile, `egret.yaml:1: tls_cert: tls_cert is for the HTTPS proxy listener: set listen_tls too`},
		{"require without listen_tls", "mode: enforce\nrequire_client_cert: true", `egret.yaml:2: require_client_cert: require_client_cert is for the HTTPS proxy listener`},
		{"client CA not PEM", tlsKeys + "client_ca: " + srv.KeyFile, `egret.yaml:4: client_ca: ` + srv.KeyFile + `: no PEM certificate in it`},
		{"require without client CA", tlsKeys + "require_client_cert: true", `egret.yaml:4: require_client_cert: a client certificate is verified against client_ca: set client_ca too`},
		{"cert_subject without client CA", tlsKeys + "clients:\n  - name: c\n    cert_subject: CN=c\n    products: [p]", `egret.yaml:6: clients[0].cert_subject: a client certificate names an identity only when it is verified: set client_ca`},
		{"cert_subject not RFC 4514", certClient("    cert_subject: connector-a"), `egret.yaml:8: clients[0].cert_subject: "connector-a": want the whole subject as RFC 4514 text`},
		{"cert_san with a space", certClient("    cert_san: [\"a b\"]"), `egret.yaml:8: clients[0].cert_san[0]: "a b": want a DNS name, URI or e-mail address`},
		{"cert_san on the transparent listener", certClient("    listener: transparent\n    cert_san: [a.example]"), `egret.yaml:9: clients[0].cert_san: clients of the transparent listener present no certificate to egret`},
		{"one subject, two clients", certClient("    cert_subject: CN=a\n  - name: d\n    products: [p]\n    cert_subject: CN=a"), `egret.yaml:11: clients[1].cert_subject: also names clients[0] (a certificate must name one client)`},
		{"one SAN, two clients", certClient("    cert_san: [a.example]\n  - name: d\n    products: [p]\n    cert_san: [b.example, a.example]"), `egret.yaml:11: clients[1].cert_san[1]: also names clients[0]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := writeConfig(t, tc.yaml)
			c, err := Load(serveFlags(t, "--config", file))
			if err == nil {
				t.Fatalf("no error; got %+v", c)
			}
			if !strings.Contains(err.Error(), filepath.Dir(file)+"/"+tc.want) {
				t.Errorf("error\n  %v\nwant it to contain\n  %s", err, tc.want)
			}
		})
	}
}

func TestHTTPSListenerKeys(t *testing.T) {
	ca := testpki.NewCA(t, "front")
	srv := ca.Server("srv")
	file := writeConfig(t, "listen_tls: 127.0.0.1:3129\ntls_cert: "+srv.CertFile+"\ntls_key: "+srv.KeyFile+"\nclient_ca: "+ca.File+
		"\nrequire_client_cert: true\nclients:\n  - name: connector\n    cert_subject: CN=connector-a,O=Example\n    cert_san: [spiffe://example.org/connector, ops@example.org]\n    products: [p]\n")
	c, err := Load(serveFlags(t, "--config", file))
	if err != nil {
		t.Fatal(err)
	}
	if c.ListenTLS != "127.0.0.1:3129" || c.TLSCert != srv.CertFile || c.TLSKey != srv.KeyFile || c.ClientCA != ca.File || !c.RequireClientCert {
		t.Errorf("listener keys: %+v", c)
	}
	cl := c.Clients[0]
	if cl.CertSubject != "CN=connector-a,O=Example" || !reflect.DeepEqual(cl.CertSAN, []string{"spiffe://example.org/connector", "ops@example.org"}) {
		t.Errorf("client: %+v", cl)
	}
	// The flags set the same keys.
	c, err = Load(serveFlags(t, "--listen-tls", ":3129", "--tls-cert", srv.CertFile, "--tls-key", srv.KeyFile, "--client-ca", ca.File, "--require-client-cert"))
	if err != nil {
		t.Fatal(err)
	}
	if c.ListenTLS != ":3129" || !c.RequireClientCert || c.ClientCA != ca.File {
		t.Errorf("from flags: %+v", c)
	}
	old := *c
	c.TLSCert, c.RequireClientCert = "other.pem", false
	if got := RestartNeeded(&old, c); !reflect.DeepEqual(got, []string{"tls_cert/tls_key", "require_client_cert"}) {
		t.Errorf("RestartNeeded = %v", got)
	}
}
