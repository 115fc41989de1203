package config

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// TestFileErrors loads one broken file per case and looks for the
// expected `egret.yaml:LINE: key: message` in the error.
func TestFileErrors(t *testing.T) {
	dir := t.TempDir() // an existing directory, for {dir}
	client := "clients:\n  - name: c\n    sources: [10.0.0.0/8]\n    products: [p]\n"
	for _, tc := range []struct {
		name, yaml, want string
	}{
		// Listeners, mode, decision log.
		{"listen not host:port", `listen: "3128"`, `egret.yaml:1: listen: "3128" is not host:port (e.g. :3128 or 127.0.0.1:3128)`},
		{"listen empty string", `listen: ""`, `egret.yaml:1: listen: an address is required`},
		{"admin port too big", "mode: enforce\nadmin: localhost:99999", `egret.yaml:2: admin: "localhost:99999": the port must be a number from 0 to 65535`},
		{"transparent port not a number", `transparent: ":https"`, `egret.yaml:1: transparent: ":https": the port must be a number`},
		{"listen bad host", `listen: "bad host!:3128"`, `egret.yaml:1: listen: "bad host!:3128": "bad host!" is not an IP address or host name`},
		{"listen a list", "listen:\n  - :3128", `egret.yaml:2: listen: want a single value, not a list`},
		{"mode", "\n\nmode: deny", `egret.yaml:3: mode: "deny" is not a mode (enforce or report)`},
		{"decision log directory missing", `decision_log: /nonexistent/egret/decisions.log`, `egret.yaml:1: decision_log: "/nonexistent/egret/decisions.log": directory /nonexistent/egret does not exist`},
		{"decision log is a directory", `decision_log: {dir}`, `egret.yaml:1: decision_log: "{dir}" is a directory (name a file in it)`},
		{"decision log syslog without port", `decision_log: syslog://logs.corp`, `egret.yaml:1: decision_log: "syslog://logs.corp": the server is HOST:PORT`},
		{"decision log syslog facility", `decision_log: "syslog+udp://127.0.0.1:514?facility=news9"`, `egret.yaml:1: decision_log: "syslog+udp://127.0.0.1:514?facility=news9": "news9" is not a facility`},
		{"decision log other scheme", `decision_log: https://logs.corp/ingest`, `egret.yaml:1: decision_log: "https://logs.corp/ingest": a network sink is syslog://HOST:PORT, syslog+udp://HOST:PORT or otlp`},
		{"decision log otlp without endpoint", `decision_log: otlp`, `egret.yaml:1: decision_log: otlp sends decisions to the OTLP collector: set OTEL_EXPORTER_OTLP_ENDPOINT`},
		{"rotation of a syslog sink", "decision_log: syslog://127.0.0.1:514\ndecision_log_max_size: 10MiB", `egret.yaml:2: decision_log_max_size: rotation is for a decision log file; decision_log is syslog://127.0.0.1:514`},
		{"decision log empty", `decision_log: ""`, `egret.yaml:1: decision_log: want - (standard output) or a file path`},

		// Limits.
		{"read header timeout zero", `read_header_timeout: 0s`, `egret.yaml:1: read_header_timeout: "0s": must be more than zero (e.g. 10s)`},
		{"dial timeout negative", `dial_timeout: -1s`, `egret.yaml:1: dial_timeout: "-1s": must be more than zero`},
		{"idle timeout without unit", `idle_timeout: 10`, `egret.yaml:1: idle_timeout: "10" is not a duration (e.g. 10s, 5m, 1h30m)`},
		{"shutdown grace zero", `shutdown_grace: 0`, `egret.yaml:1: shutdown_grace: "0": must be more than zero`},
		{"max conns zero", `max_conns: 0`, `egret.yaml:1: max_conns: "0": must be from 1 to`},
		{"max conns not a number", `max_conns: lots`, `egret.yaml:1: max_conns: "lots" is not a whole number (e.g. 10000)`},
		{"max header bytes too small", `max_header_bytes: 512`, `egret.yaml:1: max_header_bytes: "512": must be from 1KiB to 16MiB`},
		{"max header bytes too big", `max_header_bytes: 17MiB`, `egret.yaml:1: max_header_bytes: "17MiB": must be from 1KiB to 16MiB`},
		{"max header bytes SI unit", `max_header_bytes: 64KB`, `egret.yaml:1: max_header_bytes: "64KB" is not a size (e.g. 65536 or 64KiB)`},

		// Policy keys.
		{"var without =", "var: [region]", `egret.yaml:1: var[0]: "region": write K=V`},
		{"var bad name", "var:\n  - ok=1\n  - Region=eu", `egret.yaml:3: var[1]: "Region=eu": write K=V with K a variable name`},
		{"variables bad name", "variables:\n  region: a\n  Zone: b", `egret.yaml:3: variables.Zone: a variable name is [a-z][a-z0-9_]*`},
		{"variables a list", "variables: [a]", `egret.yaml:1: variables: want a mapping of variable names to values`},
		{"variables value a list", "variables:\n  region: [a, b]", `egret.yaml:2: variables.region: want a single value, not a list`},
		{"resolve without =", "resolve:\n  - a.example.com", `egret.yaml:2: resolve[0]: "a.example.com": write HOST=IP`},
		{"resolve bad address", "resolve: [a.example.com=999.1.1.1]", `egret.yaml:1: resolve[0]: "a.example.com=999.1.1.1": "999.1.1.1" is not an IP address`},
		{"resolve bad host", "resolve: [a..example.com=192.0.2.1]", `egret.yaml:1: resolve[0]: "a..example.com=192.0.2.1": `},
		{"resolve conflicting pins", "resolve:\n  - a.example.com=192.0.2.1\n  - A.example.com=192.0.2.2", `egret.yaml:3: resolve[1]: "A.example.com=192.0.2.2": a.example.com is already pinned to 192.0.2.1`},
		{"allow range host bits", "allow_range: [10.0.0.1/8]", `egret.yaml:1: allow_range[0]: "10.0.0.1/8" has bits set after the prefix length (write 10.0.0.0/8)`},
		{"allow range garbage", "allow_range:\n  - 10.0.0.0/8\n  - private", `egret.yaml:3: allow_range[1]: "private" is not a CIDR (e.g. 10.0.1.0/24)`},
		{"proxy_protocol_from garbage", "proxy_protocol_from:\n  - 10.1.2.10/32\n  - the-nlb", `egret.yaml:3: proxy_protocol_from[1]: "the-nlb" is not a CIDR (e.g. 10.0.1.0/24)`},
		{"decision log size not in MiB", "decision_log_max_size: 1500KiB", `egret.yaml:1: decision_log_max_size: 1500KiB: rotate in whole MiB (e.g. 100MiB), or 0 for SIGUSR1 only`},
		{"allowlists missing", "allowlists: [/nonexistent/allowlists]", `egret.yaml:1: allowlists[0]: "/nonexistent/allowlists" is not a directory of allowlist files`},
		{"product a mapping", "product: {a: b}", `egret.yaml:1: product: want a list`},
		{"auth optional", "auth_optional: maybe", `egret.yaml:1: auth_optional: "maybe" is not true or false`},
		{"require dns match", "require_dns_match: sometimes", `egret.yaml:1: require_dns_match: "sometimes" is not true or false`},
		{"ech unknown", "ech: allow", `egret.yaml:1: ech: "allow": want deny (the default) or outer-sni`},

		// Upstream proxy; never show its password.
		{"upstream proxy https", "upstream_proxy: https://proxy:8080", `egret.yaml:1: upstream_proxy: "https://proxy:8080": the scheme must be http://`},
		{"upstream proxy no port", "upstream_proxy: http://u:s3cret@proxy", `egret.yaml:1: upstream_proxy: "http://u:xxxxx@proxy" needs host:port`},
		{"upstream proxy path", "upstream_proxy: http://proxy:8080/x", `egret.yaml:1: upstream_proxy: "http://proxy:8080/x": write only http://[user:password@]host:port`},
		{"upstream proxy not a URL", "upstream_proxy: \"http://u:s3cret@proxy:80%\"", `egret.yaml:1: upstream_proxy: "http://u:xxxxx@proxy:80%" is not a URL`},

		// The DNS door.
		{"dns not an address", "dns: fifty-three", `egret.yaml:1: dns: "fifty-three" is not host:port`},
		{"dns upstream a name", "dns_upstream: resolver.corp", `egret.yaml:1: dns_upstream: "resolver.corp" is not an IP address with an optional port`},
		{"dns upstream port zero", "dns_upstream: 10.0.0.2:0", `egret.yaml:1: dns_upstream: "10.0.0.2:0" is not an IP address`},
		{"dns max ttl below a second", "dns_max_ttl: 500ms", `egret.yaml:1: dns_max_ttl: 500ms: must be at least 1s`},
		{"dns max ttl zero", "dns_max_ttl: 0s", `egret.yaml:1: dns_max_ttl: "0s": must be more than zero`},
		{"dns deny", "dns_deny: drop", `egret.yaml:1: dns_deny: "drop": want refused (the default) or nxdomain`},
		{"nft sets bad name", "dns: :53\nnft_sets: \"inet egret\"", `egret.yaml:2: nft_sets: "inet egret" is not an nftables table name`},
		{"nft sets without dns", "nft_sets: egret", `egret.yaml:1: nft_sets: "egret": the sets are filled by the DNS door; set dns too`},

		// Clients.
		{"client source not a CIDR", `# the example of the design
listen: ":3128"
mode: enforce
clients:
  - name: first
    sources: [10.0.0.0/24]
    products: [p]
  - name: second
    products:
      - p
    sources:
      - 10.0.1.0/33
`, `egret.yaml:12: clients[1].sources[0]: "10.0.1.0/33" is not a CIDR (e.g. 10.0.1.0/24)`},
		{"client without name", "clients:\n  - sources: [10.0.0.0/8]\n    products: [p]", `egret.yaml:2: clients[0].name: every client needs a name`},
		{"client named default", "clients:\n  - name: default\n    sources: [10.0.0.0/8]\n    products: [p]", `egret.yaml:2: clients[0].name: "default" is the identity of unmatched clients`},
		{"client name with space", "clients:\n  - name: my app\n    sources: [10.0.0.0/8]\n    products: [p]", `egret.yaml:2: clients[0].name: "my app": a name is letters, digits`},
		{"client without sources or username", "clients:\n  - name: c\n    products: [p]", `egret.yaml:2: clients[0]: needs sources (CIDRs), a username, a listener, a client certificate (cert_subject, cert_san), or a combination`},
		{"client listener", "clients:\n  - name: c\n    listener: socks\n    products: [p]", `egret.yaml:3: clients[0].listener: "socks" is not a listener (explicit, transparent or dns)`},
		{"client dns with username", "clients:\n  - name: c\n    listener: dns\n    username: u\n    password: x\n    products: [p]", `egret.yaml:4: clients[0].username: clients of the dns listener send no proxy credentials`},
		{"client transparent with username", "clients:\n  - name: c\n    listener: transparent\n    username: u\n    password: x\n    products: [p]", `egret.yaml:4: clients[0].username: clients of the transparent listener send no proxy credentials`},
		{"client without products", "clients:\n  - name: c\n    sources: [10.0.0.0/8]", `egret.yaml:2: clients[0].products: needs at least one product`},
		{"client with empty products", "clients:\n  - name: c\n    sources: [10.0.0.0/8]\n    products: []", `egret.yaml:4: clients[0].products: needs at least one product`},
		{"client mode", "clients:\n  - name: c\n    sources: [10.0.0.0/8]\n    products: [p]\n    mode: audit", `egret.yaml:5: clients[0].mode: "audit" is not a mode (enforce or report)`},
		{"client two passwords", "clients:\n  - name: c\n    username: u\n    password: a\n    password_bcrypt: b\n    products: [p]", `egret.yaml:2: clients[0]: set only one of password, password_env and password_bcrypt`},
		{"client username without password", "clients:\n  - name: c\n    username: u\n    products: [p]", `egret.yaml:3: clients[0].username: needs one of password, password_env or password_bcrypt`},
		{"client password without username", "clients:\n  - name: c\n    sources: [10.0.0.0/8]\n    password: a\n    products: [p]", `egret.yaml:2: clients[0]: a password without a username: set username too`},
		{"client username with colon", "clients:\n  - name: c\n    username: a:b\n    password: x\n    products: [p]", `egret.yaml:3: clients[0].username: "a:b": a username cannot contain ':'`},
		{"client password env unset", "clients:\n  - name: c\n    username: u\n    password_env: EGRET_TEST_UNSET_PASSWORD\n    products: [p]", `egret.yaml:4: clients[0].password_env: "EGRET_TEST_UNSET_PASSWORD" is not set in egret's environment`},
		{"client bad bcrypt", "clients:\n  - name: c\n    username: u\n    password_bcrypt: \"$2a$10$tooshort\"\n    products: [p]", `egret.yaml:4: clients[0].password_bcrypt: not a bcrypt hash`},
		{"client names differ", client + "  - name: c\n    sources: [10.1.0.0/16]\n    products: [p]", `egret.yaml:5: clients[1].name: "c" is also the name of clients[0] (names must differ)`},
		{"client usernames differ", "clients:\n  - name: a\n    username: u\n    password: x\n    products: [p]\n  - name: b\n    username: u\n    password: y\n    products: [p]", `egret.yaml:7: clients[1].username: "u" is also the username of clients[0]`},
		{"domain user forms are one user", "clients:\n  - name: a\n    username: 'corp\\svc'\n    password: x\n    products: [p]\n  - name: b\n    username: corp%92svc\n    password: y\n    products: [p]", `egret.yaml:7: clients[1].username: "corp%92svc" is also the username of clients[0]`},
		{"clients not a list", "clients: everyone", `egret.yaml:1: clients: want a list of clients`},
		{"client not a mapping", "clients:\n  - connector", `egret.yaml:2: clients[0]: want a mapping`},

		// Keys and YAML.
		{"unknown key", "listen: \":3128\"\nlisten_addr: \":3129\"", `egret.yaml:2: listen_addr: unknown key`},
		{"misspelt key", "mode: report\n\nprodcut: [p]", `egret.yaml:3: prodcut: unknown key (did you mean product?)`},
		{"flag spelling of a key", "decision-log: /tmp/x.log", `egret.yaml:1: decision-log: unknown key (did you mean decision_log?)`},
		{"upper case key", "Listen: \":3128\"", `egret.yaml:1: Listen: unknown key (did you mean listen?)`},
		{"unknown client key", client + "    pasword: x", `egret.yaml:5: clients[0].pasword: unknown key (did you mean password?)`},
		{"unrelated client key", client + "    colour: blue", `egret.yaml:5: clients[0].colour: unknown key (keys here: name, sources, username`},
		{"key written twice", "listen: \":1\"\nmode: report\nlisten: \":2\"", `egret.yaml:3: listen: key written twice (first at line 1); keep one`},
		{"config names a file", "config: other.yaml", `egret.yaml:1: config: the file cannot name another configuration file`},
		{"YAML syntax", "listen: \":3128\"\nmode: report\nproduct: a: b", `egret.yaml:3: mapping values are not allowed in this context (YAML syntax)`},
		{"YAML tab", "listen: \":3128\"\n\tmode: report", `egret.yaml:2: found character that cannot start any token (YAML syntax); indent with spaces, not tabs`},
		{"not a mapping", "- listen: \":3128\"", `egret.yaml:1: the configuration must be a mapping of keys to values`},
		{"two documents", "listen: \":3128\"\n---\nmode: report", `egret.yaml:2: a second YAML document`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := strings.ReplaceAll(tc.yaml, "{dir}", dir)
			want := strings.ReplaceAll(tc.want, "{dir}", dir)
			file := writeConfig(t, text)
			c, err := Load(serveFlags(t, "--config", file))
			if err == nil {
				t.Fatalf("no error; got %+v", c)
			}
			if !strings.Contains(err.Error(), filepath.Dir(file)+"/"+want) {
				t.Errorf("error\n  %v\nwant it to contain\n  %s", err, want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("the error shows a password: %v", err)
			}
		})
	}
}

func TestAllErrorsByLine(t *testing.T) {
	file := writeConfig(t, "max_conns: 0\nmode: x\nlisten: nope\nbogus: 1\n")
	_, err := Load(serveFlags(t, "--config", file))
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %T %v is not an *Error", err, err)
	}
	// The unknown key stops decoding: its line comes alone.
	if p := e.Problems(); len(p) != 1 || !strings.HasSuffix(p[0], "egret.yaml:4: bogus: unknown key (keys here: listen, listen_tls, tls_cert, tls_key, client_ca, require_client_cert, product, mode, transparent, transparent_tproxy, admin, decision_log, decision_log_max_size, decision_log_keep, allowlists, var, resolve, allow_range, proxy_protocol_from, read_header_timeout, dial_timeout, idle_timeout, max_header_bytes, max_conns, shutdown_grace, intercept_ca, intercept_host, upstream_ca, require_dns_match, ech, dns, dns_upstream, dns_max_ttl, dns_deny, nft_sets, variables, deny, clients, auth_optional, upstream_proxy)") {
		t.Errorf("problems %q", p)
	}
	file = writeConfig(t, "max_conns: 0\nmode: x\nlisten: nope\n")
	_, err = Load(serveFlags(t, "--config", file))
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], ":1: max_conns") ||
		!strings.Contains(lines[1], ":2: mode") || !strings.Contains(lines[2], ":3: listen") {
		t.Errorf("want one problem per line in file order, got\n%v", err)
	}
}

// TestFlagAndEnvErrors checks that errors name the flag or variable the
// bad value came from.
func TestFlagAndEnvErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"flag", nil, []string{"--listen", "nope"}, `--listen: "nope" is not host:port`},
		{"flag list entry", nil, []string{"--resolve", "a.example.com=1.2.3.4", "--resolve", "b"}, `--resolve: resolve[1]: "b": write HOST=IP`},
		{"flag duration", nil, []string{"--dial-timeout", "0s"}, `--dial-timeout: "0s": must be more than zero`},
		{"env", map[string]string{"EGRET_MODE": "strict"}, nil, `EGRET_MODE: "strict" is not a mode (enforce or report)`},
		{"env list entry", map[string]string{"EGRET_ALLOW_RANGE": "10.0.0.0/8,10.0.0.1/8"}, nil, `EGRET_ALLOW_RANGE: allow_range[1]: "10.0.0.1/8" has bits set`},
		{"env clients", map[string]string{"EGRET_CLIENTS": "[{name: a, products: [p]}]"}, nil, `EGRET_CLIENTS: clients[0]: needs sources (CIDRs), a username, a listener, a client certificate (cert_subject, cert_san), or a combination`},
		{"env client unknown key", map[string]string{"EGRET_CLIENTS": "[{name: a, sources: [10.0.0.0/8], products: [p], colour: blue}]"}, nil, `EGRET_CLIENTS: clients[0].colour: unknown key`},
		{"env clients not YAML", map[string]string{"EGRET_CLIENTS": "[{name: a"}, nil, `EGRET_CLIENTS: not a YAML list of clients`},
		{"env variables", map[string]string{"EGRET_VARIABLES": "region"}, nil, `EGRET_VARIABLES: variables[0]: "region": write K=V`},
		{"env upstream proxy", map[string]string{"EGRET_UPSTREAM_PROXY": "socks5://u:s3cret@p:1080"}, nil, `EGRET_UPSTREAM_PROXY: "socks5://u:xxxxx@p:1080": the scheme must be http://`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, err := Load(serveFlags(t, tc.args...))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v\nwant %s", err, tc.want)
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		_, err := Load(serveFlags(t, "--config", "/nonexistent/egret.yaml"))
		if err == nil || !strings.Contains(err.Error(), "/nonexistent/egret.yaml") {
			t.Errorf("error %v", err)
		}
	})
}
