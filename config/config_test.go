package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/crypto/bcrypt"
)

// TestMain runs the tests without any EGRET_ variable of the environment
// they were started in, and without Watch's polling.
func TestMain(m *testing.M) {
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "EGRET_") {
			os.Unsetenv(name)
		}
	}
	pollInterval = time.Hour // the watch tests see events, not polls
	os.Exit(m.Run())
}

// serveFlags returns the serve flags parsed from args.
func serveFlags(t *testing.T, args ...string) *pflag.FlagSet {
	t.Helper()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	Flags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	return fs
}

// writeConfig writes an egret.yaml in a fresh directory.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "egret.yaml")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

func mustLoad(t *testing.T, fs *pflag.FlagSet) *Config {
	t.Helper()
	c, err := Load(fs)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return c
}

func wantDefaults(file string) *Config {
	return &Config{
		File:              file,
		Listen:            ":3128",
		Admin:             "127.0.0.1:9090",
		Mode:              "enforce",
		DecisionLog:       "-",
		DecisionLogKeep:   10,
		Vars:              map[string]string{},
		Resolve:           map[string]netip.Addr{},
		ReadHeaderTimeout: 10 * time.Second,
		DialTimeout:       10 * time.Second,
		IdleTimeout:       5 * time.Minute,
		ShutdownGrace:     30 * time.Second,
		MaxHeaderBytes:    64 << 10,
		MaxConns:          10000,
		ECH:               "deny",
		DNSMaxTTL:         5 * time.Minute,
		DNSDeny:           "refused",
	}
}

func TestDefaults(t *testing.T) {
	empty := writeConfig(t, "")
	comments := writeConfig(t, "# nothing set here\n")
	nulls := writeConfig(t, "listen:\nmode: ~\nproduct: []\nclients:\n")
	for _, tc := range []struct {
		name string
		fs   *pflag.FlagSet
		file string
	}{
		{"no flag set", nil, ""},
		{"flags registered, none set", serveFlags(t), ""},
		{"empty file", serveFlags(t, "--config", empty), empty},
		{"comments only", serveFlags(t, "--config", comments), comments},
		{"null values", serveFlags(t, "--config", nulls), nulls},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := mustLoad(t, tc.fs)
			want := wantDefaults(tc.file)
			if tc.file == nulls {
				want.Products = []string{} // an explicit empty list
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestFlagDefaultsMatchKeys(t *testing.T) {
	fs := serveFlags(t)
	for flag, want := range map[string]string{
		"config": "", "listen": ":3128", "mode": "enforce", "transparent": "", "admin": "127.0.0.1:9090",
		"decision-log": "-", "read-header-timeout": "10s", "dial-timeout": "10s", "idle-timeout": "5m0s",
		"max-header-bytes": "64KiB", "max-conns": "10000", "shutdown-grace": "30s",
		"product": "[]", "allowlists": "[]", "var": "[]", "resolve": "[]", "allow-range": "[]",
		"intercept-ca": "", "intercept-host": "[]", "upstream-ca": "",
	} {
		f := fs.Lookup(flag)
		if f == nil {
			t.Errorf("--%s is not registered", flag)
			continue
		}
		if f.DefValue != want {
			t.Errorf("--%s default = %q, want %q", flag, f.DefValue, want)
		}
		if f.Usage == "" || strings.Contains(f.Usage, "\n") {
			t.Errorf("--%s help %q is not one line", flag, f.Usage)
		}
	}
	// Registering on a flag set that already has --config keeps it.
	fs2 := pflag.NewFlagSet("x", pflag.ContinueOnError)
	fs2.String("config", "/etc/egret.yaml", "root's")
	Flags(fs2)
	if got := fs2.Lookup("config").DefValue; got != "/etc/egret.yaml" {
		t.Errorf("existing --config replaced: default %q", got)
	}
}

func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := writeConfig(t, `
listen: ":1111"
mode: report
product: [file-product]
decision_log: `+filepath.Join(dir, "file.log")+`
require_dns_match: true
ech: outer-sni
dns: 127.0.0.1:5353
dns_max_ttl: 1m
`)
	keys := []struct {
		key                          string
		get                          func(*Config) any
		def, fromFile, fromEnv, flag any
		env                          string
		args                         []string
	}{
		{"listen", func(c *Config) any { return c.Listen }, ":3128", ":1111", ":2222", ":3333",
			":2222", []string{"--listen", ":3333"}},
		{"mode", func(c *Config) any { return c.Mode }, "enforce", "report", "enforce", "report",
			"enforce", []string{"--mode", "report"}},
		{"product", func(c *Config) any { return c.Products }, []string(nil), []string{"file-product"},
			[]string{"env-a", "env-b", "env-c"}, []string{"flag-a", "flag-b"},
			"env-a, env-b env-c", []string{"--product", "flag-a", "--product", "flag-b"}},
		{"decision_log", func(c *Config) any { return c.DecisionLog }, "-", filepath.Join(dir, "file.log"),
			filepath.Join(dir, "env.log"), "-",
			filepath.Join(dir, "env.log"), []string{"--decision-log", "-"}},
		{"require_dns_match", func(c *Config) any { return c.RequireDNSMatch }, false, true, false, true,
			"false", []string{"--require-dns-match"}},
		{"ech", func(c *Config) any { return c.ECH }, "deny", "outer-sni", "deny", "outer-sni",
			"deny", []string{"--ech", "outer-sni"}},
		{"dns", func(c *Config) any { return c.DNS }, "", "127.0.0.1:5353", ":53", "[::1]:53",
			":53", []string{"--dns", "[::1]:53"}},
		{"dns_max_ttl", func(c *Config) any { return c.DNSMaxTTL }, 5 * time.Minute, time.Minute, 30 * time.Second, 2 * time.Second,
			"30s", []string{"--dns-max-ttl", "2s"}},
	}
	for _, k := range keys {
		env := envName(k.key)
		t.Run(k.key+"/default", func(t *testing.T) {
			if got := k.get(mustLoad(t, serveFlags(t))); !reflect.DeepEqual(got, k.def) {
				t.Errorf("got %#v, want the default %#v", got, k.def)
			}
		})
		t.Run(k.key+"/file over default", func(t *testing.T) {
			if got := k.get(mustLoad(t, serveFlags(t, "--config", file))); !reflect.DeepEqual(got, k.fromFile) {
				t.Errorf("got %#v, want the file's %#v", got, k.fromFile)
			}
		})
		t.Run(k.key+"/env over file", func(t *testing.T) {
			t.Setenv(env, k.env)
			if got := k.get(mustLoad(t, serveFlags(t, "--config", file))); !reflect.DeepEqual(got, k.fromEnv) {
				t.Errorf("got %#v, want %s's %#v", got, env, k.fromEnv)
			}
		})
		t.Run(k.key+"/flag over env", func(t *testing.T) {
			t.Setenv(env, k.env)
			args := append([]string{"--config", file}, k.args...)
			if got := k.get(mustLoad(t, serveFlags(t, args...))); !reflect.DeepEqual(got, k.flag) {
				t.Errorf("got %#v, want the flag's %#v", got, k.flag)
			}
		})
	}
	t.Run("EGRET_CONFIG names the file", func(t *testing.T) {
		t.Setenv("EGRET_CONFIG", file)
		if c := mustLoad(t, serveFlags(t)); c.File != file || c.Listen != ":1111" {
			t.Errorf("File %q Listen %q", c.File, c.Listen)
		}
	})
	t.Run("--config over EGRET_CONFIG", func(t *testing.T) {
		t.Setenv("EGRET_CONFIG", filepath.Join(dir, "missing.yaml"))
		if c := mustLoad(t, serveFlags(t, "--config", file)); c.File != file {
			t.Errorf("File %q", c.File)
		}
	})
}

func TestFullFile(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("EGRET_TEST_PW", "from-env")
	file := writeConfig(t, `# every key
listen: 127.0.0.1:3128
transparent: "[::]:3129"
admin: localhost:9091
mode: report
decision_log: `+filepath.Join(dir, "decisions.log")+`
decision_log_max_size: 100MiB
decision_log_keep: 5
proxy_protocol_from: [10.1.2.10/32]
product: netapp-connector-aws       # one value is a list of one
allowlists: [`+dir+`]
variables:
  region: eu-west-1
  account: "0123"
var: [region=us-east-1, extra=a=b]
deny: [evil.example.com, 203.0.113.0/24]
resolve:
  - API.Example.COM.=203.0.113.7
  - v4mapped.example.com=::ffff:192.0.2.1
allow_range: [10.0.0.0/8, 192.168.1.5]
clients:
  - name: connector
    sources: [10.0.1.0/24]
    username: connector
    password: 0123
    products: [netapp-connector-aws]
    mode: enforce
  - name: ccm
    sources: [10.0.2.0/24, "2001:db8::/32"]
    products: [cisco-cloudcenter-ccm]
  - name: envpw
    username: envpw
    password_env: EGRET_TEST_PW
    products: [a, b]
auth_optional: true
upstream_proxy: http://user:p%40ss@proxy.corp:8080
read_header_timeout: 3s
dial_timeout: 4s
idle_timeout: 1h
shutdown_grace: 1m
max_header_bytes: 1MiB
max_conns: 500
intercept_ca: /etc/egret/ca
upstream_ca: /etc/egret/upstream.pem
intercept_host: ["*.example.com"]
require_dns_match: true
ech: outer-sni
dns: "[::]:53"
dns_upstream: 10.0.0.2
dns_max_ttl: 1m
dns_deny: nxdomain
nft_sets: egret
`)
	c := mustLoad(t, serveFlags(t, "--config", file))
	want := &Config{
		File: file, Listen: "127.0.0.1:3128", Transparent: "[::]:3129", Admin: "localhost:9091",
		Mode: "report", DecisionLog: filepath.Join(dir, "decisions.log"), DecisionLogMaxSize: 100 << 20, DecisionLogKeep: 5,
		ProxyProtocolFrom: []netip.Prefix{netip.MustParsePrefix("10.1.2.10/32")},
		Products:          []string{"netapp-connector-aws"},
		Allowlists:        []string{dir},
		Vars:              map[string]string{"region": "us-east-1", "account": "0123", "extra": "a=b"},
		Deny:              []string{"evil.example.com", "203.0.113.0/24"},
		Resolve: map[string]netip.Addr{
			"api.example.com":      netip.MustParseAddr("203.0.113.7"),
			"v4mapped.example.com": netip.MustParseAddr("192.0.2.1"),
		},
		AllowRanges: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.5/32")},
		Clients: []Client{
			{Name: "connector", Sources: []netip.Prefix{netip.MustParsePrefix("10.0.1.0/24")},
				Username: "connector", Password: "0123", Products: []string{"netapp-connector-aws"}, Mode: "enforce"},
			{Name: "ccm", Sources: []netip.Prefix{netip.MustParsePrefix("10.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32")},
				Products: []string{"cisco-cloudcenter-ccm"}},
			{Name: "envpw", Username: "envpw", PasswordEnv: "EGRET_TEST_PW", Products: []string{"a", "b"}},
		},
		AuthOptional:      true,
		ReadHeaderTimeout: 3 * time.Second, DialTimeout: 4 * time.Second,
		IdleTimeout: time.Hour, ShutdownGrace: time.Minute,
		MaxHeaderBytes: 1 << 20, MaxConns: 500,
		InterceptCA: "/etc/egret/ca", UpstreamCA: "/etc/egret/upstream.pem",
		InterceptHosts:  []string{"*.example.com"},
		RequireDNSMatch: true, ECH: "outer-sni",
		DNS: "[::]:53", DNSUpstream: "10.0.0.2:53", DNSMaxTTL: time.Minute, DNSDeny: "nxdomain", NftSets: "egret",
	}
	if c.UpstreamProxy == nil || c.UpstreamProxy.Host != "proxy.corp:8080" || c.UpstreamProxy.User.Username() != "user" {
		t.Errorf("UpstreamProxy = %v", c.UpstreamProxy)
	} else if pw, _ := c.UpstreamProxy.User.Password(); pw != "p@ss" {
		t.Errorf("upstream password %q", pw)
	}
	c.UpstreamProxy = nil
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
}

func TestEnvironment(t *testing.T) {
	dir := t.TempDir()
	for k, v := range map[string]string{
		"EGRET_PRODUCT":          "a,b  c",
		"EGRET_VAR":              "region=eu-west-1, zone=b",
		"EGRET_VARIABLES":        "region=ignored account=42",
		"EGRET_DENY":             "x.example.com",
		"EGRET_RESOLVE":          "a.example.com=192.0.2.1",
		"EGRET_ALLOW_RANGE":      "10.0.0.0/8 172.16.0.0/12",
		"EGRET_ALLOWLISTS":       dir,
		"EGRET_CLIENTS":          "[{name: app, sources: [10.0.0.0/8], products: [p1, p2]}]",
		"EGRET_AUTH_OPTIONAL":    "true",
		"EGRET_UPSTREAM_PROXY":   "http://proxy:3128",
		"EGRET_MAX_HEADER_BYTES": "32KiB",
		"EGRET_MAX_CONNS":        "7",
		"EGRET_IDLE_TIMEOUT":     "90s",
		"EGRET_TRANSPARENT":      ":3129",
		"EGRET_ADMIN":            "",
		"EGRET_INTERCEPT_HOST":   "a.example.com,b.example.com",
	} {
		t.Setenv(k, v)
	}
	c := mustLoad(t, serveFlags(t))
	checks := []struct {
		name      string
		got, want any
	}{
		{"Products", c.Products, []string{"a", "b", "c"}},
		{"Vars", c.Vars, map[string]string{"region": "eu-west-1", "zone": "b", "account": "42"}},
		{"Deny", c.Deny, []string{"x.example.com"}},
		{"Resolve", c.Resolve, map[string]netip.Addr{"a.example.com": netip.MustParseAddr("192.0.2.1")}},
		{"AllowRanges", c.AllowRanges, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("172.16.0.0/12")}},
		{"Allowlists", c.Allowlists, []string{dir}},
		{"Clients", c.Clients, []Client{{Name: "app", Sources: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Products: []string{"p1", "p2"}}}},
		{"AuthOptional", c.AuthOptional, true},
		{"UpstreamProxy", c.UpstreamProxy.String(), "http://proxy:3128"},
		{"MaxHeaderBytes", c.MaxHeaderBytes, 32 << 10},
		{"MaxConns", c.MaxConns, 7},
		{"IdleTimeout", c.IdleTimeout, 90 * time.Second},
		{"Transparent", c.Transparent, ":3129"},
		{"Admin (empty env is unset)", c.Admin, "127.0.0.1:9090"},
		{"InterceptHosts", c.InterceptHosts, []string{"a.example.com", "b.example.com"}},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("%s = %#v, want %#v", ch.name, ch.got, ch.want)
		}
	}
}

func TestFlagValues(t *testing.T) {
	c := mustLoad(t, serveFlags(t,
		"--product", "a", "--product", "b,c",
		"--var", "list=x,y", "--var", "region=eu",
		"--resolve", "h.example.com=192.0.2.9",
		"--allow-range", "10.0.0.0/8,192.168.0.0/16",
		"--max-header-bytes", "65536", "--max-conns", "3",
		"--read-header-timeout", "2s", "--transparent", ":3129", "--admin", "",
	))
	if want := []string{"a", "b", "c"}; !slices.Equal(c.Products, want) {
		t.Errorf("Products %q, want %q", c.Products, want)
	}
	if want := map[string]string{"list": "x,y", "region": "eu"}; !reflect.DeepEqual(c.Vars, want) {
		t.Errorf("Vars %v, want %v", c.Vars, want)
	}
	if len(c.AllowRanges) != 2 || c.MaxHeaderBytes != 65536 || c.MaxConns != 3 ||
		c.ReadHeaderTimeout != 2*time.Second || c.Transparent != ":3129" || c.Admin != "" ||
		c.Resolve["h.example.com"] != netip.MustParseAddr("192.0.2.9") {
		t.Errorf("got %+v", c)
	}
	c = mustLoad(t, serveFlags(t, "--max-header-bytes", "64KiB"))
	if c.MaxHeaderBytes != 64<<10 {
		t.Errorf("--max-header-bytes 64KiB = %d", c.MaxHeaderBytes)
	}
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	fs.SetOutput(&strings.Builder{})
	Flags(fs)
	if err := fs.Parse([]string{"--max-header-bytes", "64KB"}); err == nil || !strings.Contains(err.Error(), "is not a size") {
		t.Errorf("--max-header-bytes 64KB: %v", err)
	}
}

func TestPasswords(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("hashed-secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("EGRET_PW_ENVCLIENT", "env-secret")
	file := writeConfig(t, `
clients:
  - name: plain
    username: plain
    password: plain-secret
    products: [p]
  - name: envclient
    username: envclient
    password_env: EGRET_PW_ENVCLIENT
    products: [p]
  - name: bcrypt
    username: bcrypt
    password_bcrypt: "`+string(hash)+`"
    products: [p]
  - name: nouser
    sources: [10.0.0.0/8]
    products: [p]
`)
	c := mustLoad(t, serveFlags(t, "--config", file))
	for _, tc := range []struct {
		client, right string
		hashed        bool
	}{
		{"plain", "plain-secret", false},
		{"envclient", "env-secret", false},
		{"bcrypt", "hashed-secret", true},
	} {
		i := slices.IndexFunc(c.Clients, func(cl Client) bool { return cl.Name == tc.client })
		cl := c.Clients[i]
		if !cl.CheckPassword(tc.right) {
			t.Errorf("%s: right password refused", tc.client)
		}
		for _, wrong := range []string{"", "wrong", tc.right + "x", strings.ToUpper(tc.right)} {
			if cl.CheckPassword(wrong) {
				t.Errorf("%s: wrong password %q accepted", tc.client, wrong)
			}
		}
		secret, hashed := cl.ExpectedPassword()
		if hashed != tc.hashed || (!hashed && secret != tc.right) || (hashed && secret != string(hash)) {
			t.Errorf("%s: ExpectedPassword() = %q, %v", tc.client, secret, hashed)
		}
		if s := cl.String(); strings.Contains(s, tc.right) || strings.Contains(s, string(hash)) {
			t.Errorf("%s: String() shows the password: %s", tc.client, s)
		}
	}
	if nouser := c.Clients[3]; nouser.CheckPassword("") || nouser.CheckPassword("x") {
		t.Error("a client without a password accepted one")
	}
	t.Setenv("EGRET_PW_ENVCLIENT", "")
	if c.Clients[1].CheckPassword("") {
		t.Error("an empty environment password matched the empty password")
	}
}

func TestRestartNeeded(t *testing.T) {
	old := wantDefaults("")
	same := wantDefaults("")
	same.Mode, same.Products, same.MaxConns = "report", []string{"p"}, 5
	same.DNSUpstream, same.DNSMaxTTL, same.DNSDeny = "10.0.0.2:53", time.Second, "nxdomain"
	if got := RestartNeeded(old, same); got != nil {
		t.Errorf("reloadable changes: RestartNeeded = %q", got)
	}
	moved := wantDefaults("")
	moved.Listen, moved.Transparent, moved.Admin, moved.DNS, moved.NftSets = ":1", ":2", ":3", ":53", "egret"
	if got, want := RestartNeeded(old, moved), []string{"listen", "transparent", "admin", "dns", "nft_sets"}; !slices.Equal(got, want) {
		t.Errorf("RestartNeeded = %q, want %q", got, want)
	}
	tproxy := wantDefaults("")
	tproxy.TransparentTProxy = true
	if got := RestartNeeded(old, tproxy); !slices.Equal(got, []string{"transparent_tproxy"}) {
		t.Errorf("RestartNeeded(REDIRECT → TPROXY) = %q", got)
	}
	if got := RestartNeeded(nil, moved); got != nil {
		t.Errorf("RestartNeeded(nil, …) = %q", got)
	}
}

// TestTransparentTProxy: the key turns the transparent listener to TPROXY,
// and without a transparent listener it is refused with its line.
func TestTransparentTProxy(t *testing.T) {
	c, err := Load(serveFlags(t, "--config", writeConfig(t, "transparent: :3129\ntransparent_tproxy: true")))
	if err != nil || !c.TransparentTProxy || c.Transparent != ":3129" {
		t.Fatalf("Load = %+v, %v", c, err)
	}
	c, err = Load(serveFlags(t, "--transparent", ":3129", "--transparent-tproxy"))
	if err != nil || !c.TransparentTProxy {
		t.Fatalf("flags: Load = %+v, %v", c, err)
	}
	file := writeConfig(t, "mode: enforce\ntransparent_tproxy: true")
	_, err = Load(serveFlags(t, "--config", file))
	want := filepath.Dir(file) + "/egret.yaml:2: transparent_tproxy: TPROXY delivers to the transparent listener: set transparent too"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error\n  %v\nwant it to contain\n  %s", err, want)
	}
}
