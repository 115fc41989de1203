package config

import (
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/egret-proxy/egret/allowlists"
	"github.com/egret-proxy/egret/logsink"
	"github.com/egret-proxy/egret/telemetry"
)

const (
	kib = 1 << 10
	mib = 1 << 20
)

// decode fills l.cfg from the merged sources, recording every problem.
func (l *loader) decode() {
	c := &Config{File: l.file}
	c.Listen = l.address("listen", false)
	c.Transparent = l.address("transparent", true)
	val, src, p := l.get("transparent_tproxy")
	if c.TransparentTProxy = l.boolean(val, src, p); c.TransparentTProxy && c.Transparent == "" {
		l.bad(src, p, "TPROXY delivers to the transparent listener: set transparent too (e.g. transparent: :3129)")
	}
	c.Admin = l.address("admin", true)
	l.tlsFrontDoor(c)
	c.Mode = l.mode(l.get("mode"))
	c.DecisionLog = l.decisionLog()
	val, src, p = l.get("decision_log_max_size")
	switch c.DecisionLogMaxSize = l.sizeRange(val, src, p, 0, 1<<40); {
	case c.DecisionLogMaxSize%mib != 0:
		l.bad(src, p, "%s: rotate in whole MiB (e.g. 100MiB), or 0 for SIGUSR1 only", formatSize(c.DecisionLogMaxSize))
	case c.DecisionLogMaxSize > 0 && !c.DecisionLogIsFile():
		l.bad(src, p, "rotation is for a decision log file; decision_log is %s", c.DecisionLog)
	}
	val, src, p = l.get("decision_log_keep")
	c.DecisionLogKeep = l.intRange(val, src, p, 1, 100000)
	c.Products = l.list(l.get("product"))
	c.Allowlists = l.allowlists()
	c.Vars = l.vars()
	c.Deny = l.list(l.get("deny"))
	c.Resolve = l.resolve()
	c.AllowRanges = l.prefixes(l.get("allow_range"))
	c.ProxyProtocolFrom = l.prefixes(l.get("proxy_protocol_from"))
	c.Clients = l.clients(c.ClientCA)
	c.AuthOptional = l.boolean(l.get("auth_optional"))
	c.UpstreamProxy = l.upstreamProxy()
	c.ReadHeaderTimeout = l.positiveDuration(l.get("read_header_timeout"))
	c.DialTimeout = l.positiveDuration(l.get("dial_timeout"))
	c.IdleTimeout = l.positiveDuration(l.get("idle_timeout"))
	c.ShutdownGrace = l.positiveDuration(l.get("shutdown_grace"))
	val, src, p = l.get("max_header_bytes")
	c.MaxHeaderBytes = l.sizeRange(val, src, p, 1*kib, 16*mib)
	val, src, p = l.get("max_conns")
	c.MaxConns = l.intRange(val, src, p, 1, 1<<31-1)
	c.InterceptCA, _ = l.str(l.get("intercept_ca"))
	c.UpstreamCA, _ = l.str(l.get("upstream_ca"))
	c.InterceptHosts = l.list(l.get("intercept_host"))
	c.RequireDNSMatch = l.boolean(l.get("require_dns_match"))
	c.ECH = l.ech()
	l.dnsDoor(c)
	l.cfg = c
}

// ech decodes what the transparent listener does with a hello offering
// ECH: deny or outer-sni.
func (l *loader) ech() string {
	val, src, p := l.get("ech")
	s, ok := l.str(val, src, p)
	if ok && s != "deny" && s != "outer-sni" {
		l.bad(src, p, "%q: want deny (the default) or outer-sni (decide by the outer SNI)", s)
	}
	return s
}

// address decodes a listener's host:port; optional ones may be empty.
func (l *loader) address(key string, optional bool) string {
	val, src, p := l.get(key)
	s, ok := l.str(val, src, p)
	if !ok || s == "" {
		if ok && !optional {
			l.bad(src, p, "an address is required (e.g. :3128 or 127.0.0.1:3128)")
		}
		return ""
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		l.bad(src, p, "%q is not host:port (e.g. :3128 or 127.0.0.1:3128)", s)
		return s
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		l.bad(src, p, "%q: the port must be a number from 0 to 65535", s)
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil {
			if _, err := allowlists.NormalizeName(host); err != nil {
				l.bad(src, p, "%q: %q is not an IP address or host name", s, host)
			}
		}
	}
	return s
}

// mode decodes enforce or report; "" (inherit) only for clients.
func (l *loader) mode(val any, src source, p path) string {
	s, ok := l.str(val, src, p)
	if ok && s != "enforce" && s != "report" && !(s == "" && len(p) > 1) {
		l.bad(src, p, "%q is not a mode (enforce or report)", s)
	}
	return s
}

// decisionLog decodes "-", a syslog server (syslog://HOST:PORT,
// syslog+udp://HOST:PORT), otlp (the OTLP collector of the environment),
// or a file in an existing directory.
func (l *loader) decisionLog() string {
	val, src, p := l.get("decision_log")
	s, ok := l.str(val, src, p)
	switch {
	case !ok || s == "-":
	case logsink.IsSyslog(s):
		if _, _, _, err := logsink.ParseSyslog(s); err != nil {
			l.bad(src, p, "%v", err)
		}
	case s == "otlp":
		if !telemetry.LogsConfigured() {
			l.bad(src, p, "otlp sends decisions to the OTLP collector: set OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_LOGS_ENDPOINT)")
		}
	case strings.Contains(s, "://"):
		l.bad(src, p, "%q: a network sink is syslog://HOST:PORT, syslog+udp://HOST:PORT or otlp", s)
	case s == "":
		l.bad(src, p, "want - (standard output) or a file path")
	case isDir(s):
		l.bad(src, p, "%q is a directory (name a file in it)", s)
	case !isDir(filepath.Dir(s)):
		l.bad(src, p, "%q: directory %s does not exist (create it, or use - for standard output)", s, filepath.Dir(s))
	}
	return s
}

func isDir(name string) bool {
	fi, err := os.Stat(name)
	return err == nil && fi.IsDir()
}

// allowlists decodes a list of existing directories.
func (l *loader) allowlists() []string {
	val, src, p := l.get("allowlists")
	dirs := l.list(val, src, p)
	for i, d := range dirs {
		if !isDir(d) {
			l.bad(src, p.with(i), "%q is not a directory of allowlist files", d)
		}
	}
	return dirs
}

// vars merges the `variables` mapping and the `var` K=V entries (which win).
func (l *loader) vars() map[string]string {
	vars := map[string]string{}
	val, src, p := l.get("variables")
	switch v := val.(type) {
	case nil:
	case map[string]any:
		for name, raw := range v {
			if s, ok := l.str(raw, src, p.with(name)); ok {
				vars[name] = s // the file's names were checked with its keys
			}
		}
	case string: // EGRET_VARIABLES="k=v k2=v2"
		l.assignments(splitList(v), src, p, vars)
	default:
		l.bad(src, p, "want a mapping of variable names to values (e.g. region: eu-west-1)")
	}
	val, src, p = l.get("var")
	l.assignments(l.list(val, src, p), src, p, vars)
	return vars
}

// assignments adds K=V entries to vars.
func (l *loader) assignments(entries []string, src source, p path, vars map[string]string) {
	for i, e := range entries {
		k, v, ok := strings.Cut(e, "=")
		if !ok || !variableNameRE.MatchString(k) {
			l.bad(src, p.with(i), "%q: write K=V with K a variable name [a-z][a-z0-9_]* (e.g. region=eu-west-1)", e)
			continue
		}
		vars[k] = v
	}
}

// resolve decodes HOST=IP pins, normalising HOST.
func (l *loader) resolve() map[string]netip.Addr {
	val, src, p := l.get("resolve")
	pins := map[string]netip.Addr{}
	for i, e := range l.list(val, src, p) {
		host, ip, ok := strings.Cut(e, "=")
		if !ok {
			l.bad(src, p.with(i), "%q: write HOST=IP (e.g. api.example.com=203.0.113.7)", e)
			continue
		}
		name, err := allowlists.NormalizeName(host)
		if err != nil {
			l.bad(src, p.with(i), "%q: %v", e, err)
			continue
		}
		addr, err := netip.ParseAddr(ip)
		if err != nil || addr.Zone() != "" {
			l.bad(src, p.with(i), "%q: %q is not an IP address (e.g. %s=203.0.113.7)", e, ip, host)
			continue
		}
		addr = addr.Unmap()
		if old, dup := pins[name]; dup && old != addr {
			l.bad(src, p.with(i), "%q: %s is already pinned to %s (keep one)", e, name, old)
			continue
		}
		pins[name] = addr
	}
	return pins
}

// upstreamProxy decodes http://[user:pass@]host:port. Messages never show
// the password.
func (l *loader) upstreamProxy() *url.URL {
	val, src, p := l.get("upstream_proxy")
	s, ok := l.str(val, src, p)
	if !ok || s == "" {
		return nil
	}
	shown := redactURL(s)
	u, err := url.Parse(s)
	if err != nil || u.Opaque != "" {
		l.bad(src, p, "%q is not a URL (e.g. http://proxy.example.com:8080)", shown)
		return nil
	}
	if u.Scheme != "http" {
		l.bad(src, p, "%q: the scheme must be http:// (e.g. http://proxy.example.com:8080)", shown)
		return nil
	}
	host, port, err := net.SplitHostPort(u.Host)
	if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
		l.bad(src, p, "%q needs host:port with a port from 1 to 65535 (e.g. http://proxy.example.com:8080)", shown)
		return nil
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		l.bad(src, p, "%q: write only http://[user:password@]host:port, without path or query", shown)
		return nil
	}
	u.Path = ""
	return u
}

// redactURL hides the password of a URL that may not parse.
func redactURL(s string) string {
	i := strings.Index(s, "://")
	j := strings.LastIndex(s, "@")
	if i < 0 || j < i {
		return s
	}
	user, _, hasPass := strings.Cut(s[i+3:j], ":")
	if !hasPass {
		return s
	}
	return s[:i+3] + user + ":xxxxx" + s[j:]
}
