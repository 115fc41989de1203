package proxy

import (
	"crypto/x509"
	"encoding/base64"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/egret-proxy/egret/allowlists"
	"github.com/egret-proxy/egret/internal/username"
)

// Rules is everything a configuration reload may change. The server holds
// one *Rules at a time and swaps it atomically; a connection keeps the
// Rules it started with for each request it decides.
type Rules struct {
	Policy  *allowlists.Policy
	Clients []Client
	// Default is the identity of clients no other identity matches.
	Default Client
	// AuthOptional sends clients without credentials to Default even when
	// some client has a username (else they get 407).
	AuthOptional bool
	Guard        Guard
	// Pins maps normalised names to the address to dial (--resolve).
	Pins map[string]netip.Addr
	// Resolver looks up names that are not pinned. If nil,
	// net.DefaultResolver is used. Tests point it at a DNS server on
	// loopback.
	Resolver *net.Resolver
	// Upstream, when set, is a proxy all allowed traffic is sent through.
	Upstream *url.URL
	// Intercept, when set, terminates TLS for path rules (DESIGN §8a).
	Intercept *Intercept
	Limits    Limits
	// RequireDNSMatch denies (reason dns-mismatch) a redirected connection
	// whose original address the DNS door did not answer for its name;
	// it has effect only on a server with a DNS door (WithDNSAnswers).
	RequireDNSMatch bool
	// ECH is what the transparent listener does with a ClientHello that
	// offers Encrypted Client Hello (default ECHDeny).
	ECH ECHMode

	transport *http.Transport // for plain HTTP and intercepted requests; built by SetRules
}

// Limits bound what one client can make the proxy spend. Zero values take
// the defaults of DESIGN §4.
type Limits struct {
	ReadHeaderTimeout time.Duration // request line and headers; ClientHello (default 10s)
	DialTimeout       time.Duration // resolving and connecting upstream (default 10s)
	IdleTimeout       time.Duration // a tunnel with no bytes either way (default 5m)
	MaxHeaderBytes    int           // request line and headers (default 64 KiB)
	MaxConns          int           // client connections at once (default 10000)
}

func (l Limits) withDefaults() Limits {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&l.ReadHeaderTimeout, 10*time.Second)
	def(&l.DialTimeout, 10*time.Second)
	def(&l.IdleTimeout, 5*time.Minute)
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = 64 << 10
	}
	if l.MaxConns <= 0 {
		l.MaxConns = 10000
	}
	return l
}

// Client is a client identity: who it is, how it is recognised, and what
// it may reach.
type Client struct {
	Name     string
	Sources  []netip.Prefix
	Username string
	// CheckPassword reports whether a password is this client's; it must
	// compare in constant time.
	CheckPassword func(string) bool
	Identity      allowlists.Identity
	Mode          Mode
	// Listener limits the client to one listener (ListenerExplicit,
	// ListenerTransparent or ListenerDNS); "" is every listener.
	Listener string
	// CertSubject and CertSANs name the client by a client certificate
	// verified on the HTTPS proxy listener: the subject as
	// pkix.Name.String() writes it, or any one DNS, URI or e-mail SAN.
	CertSubject string
	CertSANs    []string
}

// The listeners, as named in the decision log and in a client's listener.
const (
	ListenerExplicit    = "explicit"
	ListenerTransparent = "transparent"
	ListenerDNS         = "dns" // the DNS door (package dns)
)

// on reports whether the client may be identified on listener.
func (c *Client) on(listener string) bool { return c.Listener == "" || c.Listener == listener }

// identify finds the client of a request on the explicit listeners in the
// order of DESIGN §5: a verified client certificate (HTTPS listener only;
// cert is nil otherwise), credentials, then source address, then listener,
// then the default. It returns nil when the client must be challenged with
// 407 (wrong credentials, or none where they are required). A certificate
// that names no client is no identity: the request goes on to the next
// step, as one without a certificate would.
func (r *Rules) identify(cert *x509.Certificate, src netip.Addr, proxyAuth string) *Client {
	if cert != nil {
		if cl := r.byCertificate(cert); cl != nil {
			return cl
		}
	}
	if proxyAuth != "" && r.hasUsernames() {
		user, pass, ok := parseBasic(proxyAuth)
		if !ok {
			return nil
		}
		user = fromLatin1(username.Key(user))
		for i := range r.Clients {
			c := &r.Clients[i]
			if c.Username != "" && username.Key(c.Username) == user && c.on(ListenerExplicit) &&
				c.CheckPassword != nil && (c.CheckPassword(pass) || !utf8.ValidString(pass) && c.CheckPassword(fromLatin1(pass))) {
				return c
			}
		}
		return nil
	}
	if cl := r.byAddress(ListenerExplicit, src); cl != nil {
		return cl
	}
	if r.authRequired() {
		return nil
	}
	return &r.Default
}

// byCertificate returns the first explicit-listener client that cert's
// subject or one of its DNS, URI or e-mail SANs names, or nil.
func (r *Rules) byCertificate(cert *x509.Certificate) *Client {
	var subject string // built once, and only if a client asks for it
	for i := range r.Clients {
		c := &r.Clients[i]
		if !c.on(ListenerExplicit) || c.CertSubject == "" && len(c.CertSANs) == 0 {
			continue
		}
		if c.CertSubject != "" {
			if subject == "" {
				subject = cert.Subject.String()
			}
			if subject == c.CertSubject {
				return c
			}
		}
		for _, san := range c.CertSANs {
			if certHasSAN(cert, san) {
				return c
			}
		}
	}
	return nil
}

// certHasSAN reports whether name is one of cert's DNS, URI or e-mail
// SANs, compared exactly (a DNS SAN is compared as written: no wildcard in
// a client certificate stands for a name).
func certHasSAN(cert *x509.Certificate, name string) bool {
	if slices.Contains(cert.DNSNames, name) || slices.Contains(cert.EmailAddresses, name) {
		return true
	}
	for _, u := range cert.URIs {
		if u.String() == name {
			return true
		}
	}
	return false
}

// identifyTransparent finds the client of a redirected connection, which
// carries no credentials: by source address, then listener, else the
// default identity.
func (r *Rules) identifyTransparent(src netip.Addr) *Client {
	if cl := r.byAddress(ListenerTransparent, src); cl != nil {
		return cl
	}
	return &r.Default
}

// byAddress returns the first client of listener whose sources contain
// src, else the first client known by that listener alone, or nil.
func (r *Rules) byAddress(listener string, src netip.Addr) *Client {
	var byListener *Client
	for i := range r.Clients {
		c := &r.Clients[i]
		if !c.on(listener) {
			continue
		}
		for _, p := range c.Sources {
			if p.Contains(src.Unmap()) {
				return c
			}
		}
		if byListener == nil && c.Listener != "" && len(c.Sources) == 0 && c.Username == "" {
			byListener = c
		}
	}
	return byListener
}

func (r *Rules) authRequired() bool {
	return !r.AuthOptional && r.hasUsernames()
}

// hasUsernames reports whether any client is identified by credentials.
// When none is, credentials a client sends anyway are ignored.
func (r *Rules) hasUsernames() bool {
	for _, c := range r.Clients {
		if c.Username != "" {
			return true
		}
	}
	return false
}

// proxyChallenge is the 407's Proxy-Authenticate. The charset parameter
// (RFC 7617) asks clients to encode credentials as UTF-8, as the
// configuration holds them; Java's HttpClient, for one, encodes them as
// ISO-8859-1 without it.
const proxyChallenge = `Basic realm="egret", charset="UTF-8"`

// fromLatin1 reads s as ISO-8859-1 when it is not valid UTF-8: what a client
// that ignores the challenge's charset sends (RFC 7617 leaves the default
// encoding open, and Java and older browsers use ISO-8859-1). Valid UTF-8 is
// returned as it is.
func fromLatin1(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	b := make([]rune, 0, len(s))
	for i := 0; i < len(s); i++ {
		b = append(b, rune(s[i])) // ISO-8859-1 is the first 256 code points
	}
	return string(b)
}

// parseBasic decodes a Basic Proxy-Authorization value.
func parseBasic(h string) (user, pass string, ok bool) {
	scheme, cred, found := strings.Cut(h, " ")
	if !found || !strings.EqualFold(scheme, "Basic") {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return "", "", false
	}
	return strings.Cut(string(raw), ":")
}
