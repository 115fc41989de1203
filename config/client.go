package config

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/egret-proxy/egret/internal/username"
	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/bcrypt"
)

// Client is one identity of the `clients` key: who it is (source CIDRs
// and/or a proxy username) and which products decide for it.
type Client struct {
	// Name is shown as `identity` in the decision log.
	Name string
	// Sources are the client's source CIDRs.
	Sources []netip.Prefix
	// Username is the Basic Proxy-Authorization user; "" if the client is
	// known by source only. Exactly one of Password, PasswordEnv and
	// PasswordBcrypt is set when Username is.
	Username string
	// Password is the password in plain text (for tests).
	Password string
	// PasswordEnv names the environment variable holding the password.
	PasswordEnv string
	// PasswordBcrypt is a bcrypt hash of the password.
	PasswordBcrypt string
	// Products decide for this client.
	Products []string
	// Mode is "enforce", "report", or "" to inherit the global mode.
	Mode string
	// Listener, when set ("explicit", "transparent" or "dns", the DNS
	// door), limits the client to connections or queries arriving on that
	// listener; a client with a listener and no sources or username is
	// every client of that listener.
	Listener string
	// CertSubject is a client certificate's whole subject as RFC 4514
	// text, as pkix.Name.String() writes it (CN=connector-a,O=Example);
	// CertSAN are names of which any one, matched exactly against the
	// certificate's DNS, URI and e-mail SANs, names the client. Only a
	// certificate verified against client_ca is looked at.
	CertSubject string
	CertSAN     []string
}

// String describes c without its password.
func (c Client) String() string {
	var b strings.Builder
	b.WriteString(c.Name)
	if len(c.Sources) > 0 {
		fmt.Fprintf(&b, " sources=%v", c.Sources)
	}
	if c.Username != "" {
		fmt.Fprintf(&b, " username=%s", c.Username)
	}
	fmt.Fprintf(&b, " products=%v", c.Products)
	if c.Mode != "" {
		fmt.Fprintf(&b, " mode=%s", c.Mode)
	}
	if c.Listener != "" {
		fmt.Fprintf(&b, " listener=%s", c.Listener)
	}
	if c.CertSubject != "" {
		fmt.Fprintf(&b, " cert_subject=%s", c.CertSubject)
	}
	if len(c.CertSAN) > 0 {
		fmt.Fprintf(&b, " cert_san=%v", c.CertSAN)
	}
	return b.String()
}

// ExpectedPassword returns what c's password is checked against: the plain
// password (from password, or read now from the password_env variable) with
// hashed false, or the password_bcrypt hash with hashed true. It returns
// ("", false) when c has no password.
func (c Client) ExpectedPassword() (secret string, hashed bool) {
	switch {
	case c.PasswordBcrypt != "":
		return c.PasswordBcrypt, true
	case c.PasswordEnv != "":
		return os.Getenv(c.PasswordEnv), false
	default:
		return c.Password, false
	}
}

// CheckPassword reports whether pw is c's password. Plain and environment
// passwords are compared in constant time; an empty expected password
// never matches. A bcrypt check costs what the hash's cost says (tens of
// milliseconds at cost 10): callers should cache successes.
func (c Client) CheckPassword(pw string) bool {
	secret, hashed := c.ExpectedPassword()
	if secret == "" {
		return false
	}
	if hashed {
		return bcrypt.CompareHashAndPassword([]byte(secret), []byte(pw)) == nil
	}
	// Hashing first makes the comparison independent of the lengths.
	want, got := sha256.Sum256([]byte(secret)), sha256.Sum256([]byte(pw))
	return subtle.ConstantTimeCompare(want[:], got[:]) == 1
}

// clientNameRE is what a client name may be: it is shown in the log.
var clientNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// clients decodes and checks the `clients` list. EGRET_CLIENTS holds the
// list as YAML (flow style fits one line: [{name: a, sources: [...], ...}]).
func (l *loader) clients(clientCA string) []Client {
	val, src, p := l.get("clients")
	if s, ok := val.(string); ok && src.kind == srcEnv {
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(s), &n); err != nil {
			l.bad(src, p, "not a YAML list of clients (e.g. [{name: app, sources: [10.0.1.0/24], products: [netapp-connector-aws]}]): %v", err)
			return nil
		}
		val = toAny(&n)
	}
	list, ok := val.([]any)
	if !ok {
		if val != nil {
			l.bad(src, p, "want a list of clients (- name: ..., sources: [...], products: [...])")
		}
		return nil
	}
	var out []Client
	names, users, certs := map[string]int{}, map[string]int{}, map[string]int{}
	for i, e := range list {
		ep := p.with(i)
		m, ok := e.(map[string]any)
		if !ok {
			l.bad(src, ep, "want a mapping with name, sources and/or username, products")
			continue
		}
		c := l.client(m, src, ep)
		l.checkCertIdentity(c, clientCA, src, ep)
		l.uniqueCertNames(c, i, certs, src, ep)
		if first, dup := names[c.Name]; dup && c.Name != "" {
			l.bad(src, ep.with("name"), "%q is also the name of clients[%d] (names must differ)", c.Name, first)
		}
		user := username.Key(c.Username) // domain\user and domain%92user are one user
		if first, dup := users[user]; dup && c.Username != "" {
			l.bad(src, ep.with("username"), "%q is also the username of clients[%d] (usernames must differ; domain\\user and domain%%92user are the same user)", c.Username, first)
		}
		if _, dup := names[c.Name]; !dup {
			names[c.Name] = i
		}
		if _, dup := users[user]; !dup {
			users[user] = i
		}
		out = append(out, c)
	}
	return out
}

// uniqueCertNames refuses a certificate subject or SAN that names two
// clients: the first would always win, silently.
func (l *loader) uniqueCertNames(c Client, i int, seen map[string]int, src source, p path) {
	claim := func(key string, p path) {
		if first, dup := seen[key]; dup && first != i {
			l.bad(src, p, "also names clients[%d] (a certificate must name one client)", first)
		} else if !dup {
			seen[key] = i
		}
	}
	if c.CertSubject != "" {
		claim("subject\x00"+c.CertSubject, p.with("cert_subject"))
	}
	for j, s := range c.CertSAN {
		claim("san\x00"+s, p.with("cert_san", j))
	}
}

// client decodes one clients entry.
func (l *loader) client(m map[string]any, src source, p path) Client {
	if src.kind != srcFile { // the file's keys were checked with their lines
		for k := range m {
			if !slices.Contains(clientKeys, k) {
				l.bad(src, p.with(k), "unknown key (keys here: %s)", strings.Join(clientKeys, ", "))
			}
		}
	}
	field := func(k string) string { s, _ := l.str(m[k], src, p.with(k)); return s }
	c := Client{
		Name:           field("name"),
		Sources:        l.prefixes(m["sources"], src, p.with("sources")),
		Username:       field("username"),
		Password:       field("password"),
		PasswordEnv:    field("password_env"),
		PasswordBcrypt: field("password_bcrypt"),
		Products:       l.list(m["products"], src, p.with("products")),
		Mode:           l.mode(m["mode"], src, p.with("mode")),
		Listener:       field("listener"),
		CertSubject:    field("cert_subject"),
		CertSAN:        l.list(m["cert_san"], src, p.with("cert_san")),
	}
	switch {
	case c.Name == "":
		l.bad(src, p.with("name"), "every client needs a name (shown as identity in the log)")
	case c.Name == "default":
		l.bad(src, p.with("name"), `"default" is the identity of unmatched clients: set its products with the top-level product key`)
	case !clientNameRE.MatchString(c.Name):
		l.bad(src, p.with("name"), "%q: a name is letters, digits, '.', '_' and '-' (e.g. connector)", c.Name)
	}
	switch c.Listener {
	case "", "explicit", "transparent", "dns":
	default:
		l.bad(src, p.with("listener"), "%q is not a listener (explicit, transparent or dns)", c.Listener)
	}
	if m["sources"] == nil && c.Username == "" && c.Listener == "" && c.CertSubject == "" && m["cert_san"] == nil {
		l.bad(src, p, "needs sources (CIDRs), a username, a listener, a client certificate (cert_subject, cert_san), or a combination")
	}
	if c.Username != "" && (c.Listener == "transparent" || c.Listener == "dns") {
		l.bad(src, p.with("username"), "clients of the %s listener send no proxy credentials", c.Listener)
	}
	if len(c.Products) == 0 {
		l.bad(src, p.with("products"), "needs at least one product (e.g. products: [netapp-connector-aws])")
	}
	l.checkCredentials(c, src, p)
	return c
}

// checkCredentials checks the username and its one password source.
func (l *loader) checkCredentials(c Client, src source, p path) {
	n := 0
	for _, s := range []string{c.Password, c.PasswordEnv, c.PasswordBcrypt} {
		if s != "" {
			n++
		}
	}
	switch {
	case n > 1:
		l.bad(src, p, "set only one of password, password_env and password_bcrypt")
	case n == 1 && c.Username == "":
		l.bad(src, p, "a password without a username: set username too")
	case n == 0 && c.Username != "":
		l.bad(src, p.with("username"), "needs one of password, password_env or password_bcrypt")
	}
	if strings.Contains(c.Username, ":") {
		l.bad(src, p.with("username"), "%q: a username cannot contain ':' (Basic auth splits on it)", c.Username)
	}
	if c.PasswordEnv != "" && os.Getenv(c.PasswordEnv) == "" {
		l.bad(src, p.with("password_env"), "%q is not set in egret's environment (export it, or use password_bcrypt)", c.PasswordEnv)
	}
	if c.PasswordBcrypt != "" {
		if _, err := bcrypt.Cost([]byte(c.PasswordBcrypt)); err != nil {
			l.bad(src, p.with("password_bcrypt"), "not a bcrypt hash (make one with: htpasswd -nbB USER PASSWORD, and keep what follows the colon)")
		}
	}
}
