// Package config reads egret serve's configuration: command-line flags,
// EGRET_* environment variables, a YAML file and defaults, merged in that
// order of precedence (DESIGN §4), validated, and watched for changes
// (DESIGN §5).
//
// Load builds a fresh Config on every call and never keeps state; Watch only
// tells the caller when to call Load again. Swapping the running
// configuration is the caller's decision.
package config

import (
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/egret-proxy/egret/logsink"
	"github.com/spf13/pflag"
)

// Config is egret serve's whole configuration after flags, EGRET_* env,
// file and defaults are merged.
type Config struct {
	// File is the configuration file, "" if none.
	File string

	// Listen is the explicit proxy's address (default ":3128").
	Listen string
	// Transparent is the transparent listener's address; "" (the default)
	// means no transparent listener.
	Transparent string
	// TransparentTProxy makes the transparent listener take connections
	// an iptables/nftables TPROXY rule delivers (IP_TRANSPARENT): the
	// accepted socket's own address is the original destination. Without
	// it the listener expects REDIRECT and asks SO_ORIGINAL_DST.
	TransparentTProxy bool
	// ListenTLS is the HTTPS proxy listener's address: the explicit proxy
	// over TLS, "" (the default) for none. TLSCert and TLSKey are its
	// certificate (PEM, chain after the leaf) and key, read again when the
	// files change. ClientCA, when set, verifies client certificates, which
	// then name identities (clients[].cert_subject, cert_san);
	// RequireClientCert refuses a handshake without one.
	ListenTLS         string
	TLSCert           string
	TLSKey            string
	ClientCA          string
	RequireClientCert bool
	// Admin is the admin listener's address (default "127.0.0.1:9090");
	// "" means no admin listener.
	Admin string

	// Mode is "enforce" (the default) or "report".
	Mode string
	// DecisionLog is "-" (standard output, the default), a file path, a
	// syslog server (syslog://HOST:PORT, syslog+tcp://, syslog+udp://) or
	// "otlp" (the OTLP collector of the environment).
	DecisionLog string
	// DecisionLogMaxSize rotates the decision log file when it would grow
	// past this many bytes (0: only on SIGUSR1); DecisionLogKeep is how
	// many rotated files are kept.
	DecisionLogMaxSize int
	DecisionLogKeep    int

	// Products are the default identity's products (key `product`).
	Products []string
	// Allowlists are extra allowlist directories.
	Allowlists []string
	// Vars are the key `variables` merged with the `var` K=V entries,
	// which win.
	Vars map[string]string
	// Deny lists names, patterns, addresses or CIDRs denied on every port.
	Deny []string
	// Resolve pins normalised host names to addresses (key `resolve`).
	Resolve map[string]netip.Addr
	// AllowRanges are private ranges let through the private-address guard
	// (key `allow_range`).
	AllowRanges []netip.Prefix
	// ProxyProtocolFrom are the load balancers whose connections carry a
	// PROXY protocol header (key `proxy_protocol_from`); empty: none do.
	ProxyProtocolFrom []netip.Prefix

	// Clients are the identities other than the default one.
	Clients []Client
	// AuthOptional sends requests without credentials that no source CIDR
	// matches to the default identity instead of answering 407.
	AuthOptional bool
	// UpstreamProxy is the corporate proxy allowed traffic goes through,
	// nil if unset. It may carry a user and password: never log it whole
	// (use Redacted).
	UpstreamProxy *url.URL

	// ReadHeaderTimeout bounds reading a request's headers or a
	// ClientHello (default 10s).
	ReadHeaderTimeout time.Duration
	// DialTimeout bounds dialling an upstream (default 10s).
	DialTimeout time.Duration
	// IdleTimeout closes a tunnel with no bytes either way (default 5m).
	IdleTimeout time.Duration
	// ShutdownGrace is how long tunnels may drain after SIGTERM (default 30s).
	ShutdownGrace time.Duration
	// MaxHeaderBytes bounds a request's headers (default 64 KiB).
	MaxHeaderBytes int
	// MaxConns bounds concurrent client connections (default 10000).
	MaxConns int

	// InterceptCA, UpstreamCA and InterceptHosts are carried for TLS
	// interception (DESIGN §8a); they are not validated here.
	InterceptCA    string
	UpstreamCA     string
	InterceptHosts []string

	// RequireDNSMatch denies a redirected connection whose original
	// address egret's DNS door did not answer for its SNI or Host (key
	// require_dns_match; only with a DNS door).
	RequireDNSMatch bool
	// ECH is what the transparent listener does with a ClientHello that
	// offers Encrypted Client Hello: "deny" (the default) or "outer-sni".
	ECH string

	// DNS is the DNS door's address (UDP and TCP); "" (the default) means
	// no DNS door.
	DNS string
	// DNSUpstream is the resolver the door forwards allowed queries to,
	// as ip:port; "" means the first nameserver of /etc/resolv.conf.
	DNSUpstream string
	// DNSMaxTTL caps the TTLs the door passes on (default 5m).
	DNSMaxTTL time.Duration
	// DNSDeny is the answer to a denied name: "refused" (the default) or
	// "nxdomain".
	DNSDeny string
	// NftSets is the nftables table (family inet) whose sets the door
	// fills with its answers; "" means none.
	NftSets string
}

// DecisionLogIsFile reports whether the decision log goes to a file: the
// one sink that rotates (by size, and on SIGUSR1).
func (c *Config) DecisionLogIsFile() bool {
	return c.DecisionLog != "-" && c.DecisionLog != "otlp" && !logsink.IsSyslog(c.DecisionLog)
}

// RestartNeeded lists the keys whose change between old and new needs a
// restart: the listener addresses (listen, listen_tls, transparent, admin,
// dns), the HTTPS listener's file names and client-certificate settings,
// and the nftables table the DNS door fills (nft_sets).
func RestartNeeded(old, new *Config) []string {
	if old == nil || new == nil {
		return nil
	}
	var keys []string
	if old.Listen != new.Listen {
		keys = append(keys, "listen")
	}
	if old.Transparent != new.Transparent {
		keys = append(keys, "transparent")
	}
	if old.TransparentTProxy != new.TransparentTProxy {
		keys = append(keys, "transparent_tproxy")
	}
	if old.ListenTLS != new.ListenTLS {
		keys = append(keys, "listen_tls")
	}
	// The files' contents reload by themselves; which files, and whether a
	// certificate is asked for, are the listener's and set at start.
	if old.TLSCert != new.TLSCert || old.TLSKey != new.TLSKey {
		keys = append(keys, "tls_cert/tls_key")
	}
	if old.ClientCA != new.ClientCA {
		keys = append(keys, "client_ca")
	}
	if old.RequireClientCert != new.RequireClientCert {
		keys = append(keys, "require_client_cert")
	}
	if old.Admin != new.Admin {
		keys = append(keys, "admin")
	}
	if old.DNS != new.DNS {
		keys = append(keys, "dns")
	}
	if old.NftSets != new.NftSets {
		keys = append(keys, "nft_sets")
	}
	return keys
}

// kind is how a key's value is written and decoded.
type kind uint8

const (
	kString   kind = iota
	kList          // a list of strings
	kDuration      // a Go duration, e.g. 10s
	kSize          // a byte count, e.g. 65536 or 64KiB
	kInt           // a whole number
	kBool          // true or false
	kVars          // a mapping of variable name to value
	kClients       // a list of client mappings
)

// keyDef describes one configuration key.
type keyDef struct {
	key  string // the config key; its env var is EGRET_ + upper case
	flag string // the flag's name, "" if the key has no flag
	kind kind
	def  any    // the default: string, []string or nil
	help string // the flag's help text
	// array marks list flags that are not split on commas (values may
	// contain them).
	array bool
}

// keys are every configuration key but `config`, which names the file.
var keys = []keyDef{
	{key: "listen", flag: "listen", kind: kString, def: ":3128", help: "address of the explicit proxy listener (host:port)"},
	{key: "listen_tls", flag: "listen-tls", kind: kString, def: "", help: "address of the HTTPS proxy listener, the explicit proxy over TLS (host:port; none if empty)"},
	{key: "tls_cert", flag: "tls-cert", kind: kString, def: "", help: "PEM certificate of the HTTPS proxy listener, chain after the leaf (read again when it changes)"},
	{key: "tls_key", flag: "tls-key", kind: kString, def: "", help: "PEM private key of --tls-cert"},
	{key: "client_ca", flag: "client-ca", kind: kString, def: "", help: "PEM CAs that verify client certificates on the HTTPS proxy listener (clients[].cert_subject, cert_san)"},
	{key: "require_client_cert", flag: "require-client-cert", kind: kBool, def: "false", help: "refuse a TLS handshake on the HTTPS proxy listener without a client certificate from --client-ca"},
	{key: "product", flag: "product", kind: kList, help: "product of the default identity, for clients no other identity matches (repeatable)"},
	{key: "mode", flag: "mode", kind: kString, def: "enforce", help: "enforce (deny) or report (let through, log would-deny)"},
	{key: "transparent", flag: "transparent", kind: kString, def: "", help: "address of the transparent listener for redirected traffic (host:port; none if empty)"},
	{key: "transparent_tproxy", flag: "transparent-tproxy", kind: kBool, def: "false", help: "the transparent listener takes TPROXY-delivered connections (IP_TRANSPARENT, needs CAP_NET_ADMIN or CAP_NET_RAW) instead of REDIRECTed ones"},
	{key: "admin", flag: "admin", kind: kString, def: "127.0.0.1:9090", help: "address of the admin listener: health and metrics (host:port; none if empty)"},
	{key: "decision_log", flag: "decision-log", kind: kString, def: "-", help: "where decisions go: - (standard output), a file, syslog://HOST:PORT (TCP) or syslog+udp://HOST:PORT (RFC 5424), or otlp (the OTEL_EXPORTER_OTLP_ENDPOINT collector)"},
	{key: "decision_log_max_size", flag: "decision-log-max-size", kind: kSize, def: "0", help: "rotate the decision log file when it reaches this size, in MiB steps (e.g. 100MiB; 0: only on SIGUSR1)"},
	{key: "decision_log_keep", flag: "decision-log-keep", kind: kInt, def: "10", help: "rotated decision log files kept (the oldest beyond are removed)"},
	{key: "allowlists", flag: "allowlists", kind: kList, array: true, help: "directory of extra allowlist files (repeatable)"},
	{key: "var", flag: "var", kind: kList, array: true, help: "variable value K=V for the allowlists (repeatable; wins over the variables key)"},
	{key: "resolve", flag: "resolve", kind: kList, array: true, help: "pin HOST to IP, as HOST=IP (repeatable)"},
	{key: "allow_range", flag: "allow-range", kind: kList, help: "private CIDR let through the private-address guard (repeatable)"},
	{key: "proxy_protocol_from", flag: "proxy-protocol-from", kind: kList, help: "CIDR of a load balancer that sends a PROXY protocol v1/v2 header; its connections must carry one, others must not (repeatable)"},
	{key: "read_header_timeout", flag: "read-header-timeout", kind: kDuration, def: "10s", help: "time to read a request's headers or a ClientHello"},
	{key: "dial_timeout", flag: "dial-timeout", kind: kDuration, def: "10s", help: "time to connect to an upstream"},
	{key: "idle_timeout", flag: "idle-timeout", kind: kDuration, def: "5m0s", help: "close a tunnel with no bytes either way for this long"},
	{key: "max_header_bytes", flag: "max-header-bytes", kind: kSize, def: "64KiB", help: "largest request header block (e.g. 65536 or 64KiB)"},
	{key: "max_conns", flag: "max-conns", kind: kInt, def: "10000", help: "most concurrent client connections (beyond: 503, or close)"},
	{key: "shutdown_grace", flag: "shutdown-grace", kind: kDuration, def: "30s", help: "time tunnels may drain after SIGTERM"},
	{key: "intercept_ca", flag: "intercept-ca", kind: kString, def: "", help: "directory of the CA that signs intercepted hosts' certificates"},
	{key: "intercept_host", flag: "intercept-host", kind: kList, help: "host pattern whose TLS is intercepted for path rules (repeatable)"},
	{key: "upstream_ca", flag: "upstream-ca", kind: kString, def: "", help: "PEM file of CAs trusted for intercepted upstreams (default: system roots)"},
	{key: "require_dns_match", flag: "require-dns-match", kind: kBool, def: "false", help: "deny a redirected connection to an address egret's DNS door did not answer for its name"},
	{key: "ech", flag: "ech", kind: kString, def: "deny", help: "a ClientHello offering ECH on the transparent listener: deny, or outer-sni (decide by the outer name)"},
	{key: "dns", flag: "dns", kind: kString, def: "", help: "address of the DNS door, UDP and TCP (host:port; none if empty)"},
	{key: "dns_upstream", flag: "dns-upstream", kind: kString, def: "", help: "resolver the DNS door forwards allowed queries to, IP[:port] (default: first nameserver of /etc/resolv.conf)"},
	{key: "dns_max_ttl", flag: "dns-max-ttl", kind: kDuration, def: "5m0s", help: "cap on the TTLs the DNS door passes on, and so on its set elements' timeouts"},
	{key: "dns_deny", flag: "dns-deny", kind: kString, def: "refused", help: "DNS door's answer to a denied name: refused or nxdomain"},
	{key: "nft_sets", flag: "nft-sets", kind: kString, def: "", help: "nftables table (inet) whose sets the DNS door fills with its answers (none if empty)"},
	{key: "variables", kind: kVars},
	{key: "deny", kind: kList},
	{key: "clients", kind: kClients},
	{key: "auth_optional", kind: kBool, def: "false"},
	{key: "upstream_proxy", kind: kString, def: ""},
}

// keyFor returns the definition of key, nil if there is none.
func keyFor(key string) *keyDef {
	for i := range keys {
		if keys[i].key == key {
			return &keys[i]
		}
	}
	return nil
}

// Flags registers every serve flag on fs with its default and help text.
// A flag fs already has (a persistent --config, say) is left alone.
func Flags(fs *pflag.FlagSet) {
	if fs.Lookup("config") == nil {
		fs.String("config", "", "configuration file (YAML)")
	}
	for _, k := range keys {
		if k.flag == "" || fs.Lookup(k.flag) != nil {
			continue
		}
		def, _ := k.def.(string)
		switch k.kind {
		case kString:
			fs.String(k.flag, def, k.help)
		case kList:
			if k.array {
				fs.StringArray(k.flag, nil, k.help)
			} else {
				fs.StringSlice(k.flag, nil, k.help)
			}
		case kDuration:
			d, _ := time.ParseDuration(def)
			fs.Duration(k.flag, d, k.help)
		case kSize:
			n, _ := parseSize(def)
			v := sizeValue(n)
			fs.Var(&v, k.flag, k.help)
		case kInt:
			n, _ := strconv.Atoi(def)
			fs.Int(k.flag, n, k.help)
		case kBool:
			fs.Bool(k.flag, def == "true", k.help)
		}
	}
}

// flagValue returns a changed flag's value for viper: the list for list
// flags, the text otherwise (decoded like an environment variable's).
func flagValue(f *pflag.Flag) any {
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		return slices.Clone(sv.GetSlice())
	}
	return f.Value.String()
}
