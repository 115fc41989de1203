package config

import (
	"crypto/tls"
	"strings"

	"github.com/egret-proxy/egret/internal/tlsfiles"
)

// tlsFrontDoor decodes the HTTPS proxy listener's keys: listen_tls,
// tls_cert, tls_key, client_ca and require_client_cert. The files are read
// here so that a certificate that does not load is refused with its key's
// line, at start and on a reload alike.
func (l *loader) tlsFrontDoor(c *Config) {
	c.ListenTLS = l.address("listen_tls", true)
	_, lnSrc, lnPath := l.get("listen_tls")
	certVal, certSrc, certPath := l.get("tls_cert")
	c.TLSCert, _ = l.str(certVal, certSrc, certPath)
	keyVal, keySrc, keyPath := l.get("tls_key")
	c.TLSKey, _ = l.str(keyVal, keySrc, keyPath)
	caVal, caSrc, caPath := l.get("client_ca")
	c.ClientCA, _ = l.str(caVal, caSrc, caPath)
	reqVal, reqSrc, reqPath := l.get("require_client_cert")
	c.RequireClientCert = l.boolean(reqVal, reqSrc, reqPath)

	if c.ListenTLS == "" {
		for _, k := range []struct {
			set  bool
			src  source
			p    path
			name string
		}{
			{c.TLSCert != "", certSrc, certPath, "tls_cert"},
			{c.TLSKey != "", keySrc, keyPath, "tls_key"},
			{c.ClientCA != "", caSrc, caPath, "client_ca"},
			{c.RequireClientCert, reqSrc, reqPath, "require_client_cert"},
		} {
			if k.set {
				l.bad(k.src, k.p, "%s is for the HTTPS proxy listener: set listen_tls too (e.g. listen_tls: :3130)", k.name)
			}
		}
		return
	}
	switch {
	case c.TLSCert == "":
		l.bad(lnSrc, lnPath, "needs a certificate: set tls_cert (a PEM file, the chain after the leaf) and tls_key")
	case c.TLSKey == "":
		l.bad(lnSrc, lnPath, "needs the certificate's private key too: set tls_key (a PEM file)")
	default:
		if _, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey); err != nil {
			l.bad(certSrc, certPath, "%s with key %s: %v", c.TLSCert, c.TLSKey, err)
		}
	}
	if c.ClientCA != "" {
		if _, err := tlsfiles.LoadCertPool(c.ClientCA); err != nil {
			l.bad(caSrc, caPath, "%v", err)
		}
	}
	if c.RequireClientCert && c.ClientCA == "" {
		l.bad(reqSrc, reqPath, "a client certificate is verified against client_ca: set client_ca too")
	}
}

// checkCertIdentity checks a client's cert_subject and cert_san: they need
// client_ca (only a certificate verified against it names an identity),
// and they identify clients of the explicit listeners only.
func (l *loader) checkCertIdentity(c Client, clientCA string, src source, p path) {
	if c.CertSubject == "" && len(c.CertSAN) == 0 {
		return
	}
	key := "cert_subject"
	if c.CertSubject == "" {
		key = "cert_san"
	}
	switch {
	case clientCA == "":
		l.bad(src, p.with(key), "a client certificate names an identity only when it is verified: set client_ca (and listen_tls)")
	case c.Listener == "transparent" || c.Listener == "dns":
		l.bad(src, p.with(key), "clients of the %s listener present no certificate to egret", c.Listener)
	}
	if c.CertSubject != "" && !strings.Contains(c.CertSubject, "=") {
		l.bad(src, p.with("cert_subject"), "%q: want the whole subject as RFC 4514 text, as openssl x509 -subject -nameopt RFC2253 prints it (e.g. CN=connector-a,O=Example)", c.CertSubject)
	}
	for i, s := range c.CertSAN {
		if s == "" || strings.ContainsAny(s, " \t") {
			l.bad(src, p.with("cert_san").with(i), "%q: want a DNS name, URI or e-mail address as in the certificate, without a type prefix", s)
		}
	}
}
