package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/egret-proxy/egret/config"
)

func caFile(t *testing.T, dir string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatal("ca.pem holds no PEM block")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// writeAllowlist writes one extension allowlist file in a fresh directory.
func writeAllowlist(t *testing.T, doc string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "site.yaml"), []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestCertsInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	code, out, errOut := egret(t, "certs", "init", "--dir", dir, "--product", "netapp-connector-aws", "--intercept-host", "*.corp.example")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"ca.pem", "ca-key.pem", "mode 0600", "repo1.maven.org", "--intercept-ca " + dir} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	ca := caFile(t, dir)
	// The hosts of netapp-connector-aws's rules with paths, and the pattern.
	want := []string{"corp.example", "oss.sonatype.org", "repo1.maven.org", "support.netapp.com"}
	if !slices.Equal(ca.PermittedDNSDomains, want) || !ca.PermittedDNSDomainsCritical || len(ca.ExcludedIPRanges) != 2 {
		t.Errorf("constraints: permitted %q (critical %v), excluded IPs %v; want %q", ca.PermittedDNSDomains, ca.PermittedDNSDomainsCritical, ca.ExcludedIPRanges, want)
	}
	st, err := os.Stat(filepath.Join(dir, "ca-key.pem"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v", err, st.Mode())
	}
	key, _ := os.ReadFile(filepath.Join(dir, "ca-key.pem"))

	code, _, errOut = egret(t, "certs", "init", "--dir", dir, "--product", "netapp-connector-gcp")
	if code != 2 || !strings.Contains(errOut, "--force") {
		t.Fatalf("init over an existing CA: exit %d, stderr %q; want 2 naming --force", code, errOut)
	}
	if again, _ := os.ReadFile(filepath.Join(dir, "ca-key.pem")); !bytes.Equal(again, key) {
		t.Fatal("the refused init changed the key")
	}
	if code, out, errOut := egret(t, "certs", "init", "--dir", dir, "--product", "netapp-connector-install", "--force"); code != 0 {
		t.Fatalf("init --force: exit %d\n%s%s", code, out, errOut)
	}
	want = []string{"dev.mysql.com", "dl.fedoraproject.org", "s3.amazonaws.com"}
	if got := caFile(t, dir).PermittedDNSDomains; !slices.Equal(got, want) {
		t.Errorf("after --force: permitted %q, want %q", got, want)
	}
}

func TestCertsInitVariablesAndGlobs(t *testing.T) {
	vars := writeAllowlist(t, `product: site
source: site policy
variables:
  region: {description: "AWS region"}
proxy:
  - {host: "mirror.${region}.corp.example", paths: [/repo], purpose: regional mirror}
  - {cidr: 10.1.2.0/24, paths: [/api], purpose: an internal service}
`)
	dir := filepath.Join(t.TempDir(), "ca")
	code, _, errOut := egret(t, "certs", "init", "--dir", dir, "--allowlists", vars, "--product", "site")
	if code != 2 || !strings.Contains(errOut, "site.yaml:6") || !strings.Contains(errOut, "--var") {
		t.Fatalf("unset variable: exit %d, stderr %q; want 2 naming the file, line and --var", code, errOut)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatal("a refused init created the directory")
	}
	code, out, errOut := egret(t, "certs", "init", "--dir", dir, "--allowlists", vars, "--product", "site", "--var", "region=eu-west-1")
	if code != 0 {
		t.Fatalf("with --var: exit %d\n%s%s", code, out, errOut)
	}
	if got := caFile(t, dir).PermittedDNSDomains; !slices.Equal(got, []string{"mirror.eu-west-1.corp.example"}) {
		t.Errorf("permitted %q", got)
	}
	if !strings.Contains(errOut, "10.1.2.0/24") || !strings.Contains(errOut, "unenforced") {
		t.Errorf("no warning about the cidr rule with paths: %q", errOut)
	}

	globs := writeAllowlist(t, "product: site\nsource: s\nproxy:\n  - {host: \"mirror{1,2}.corp.example\", paths: [/repo], purpose: p}\n")
	code, _, errOut = egret(t, "certs", "init", "--dir", filepath.Join(t.TempDir(), "ca"), "--allowlists", globs, "--product", "site")
	if code != 2 || !strings.Contains(errOut, "site.yaml:4") || !strings.Contains(errOut, "exact names and *.domain only") {
		t.Fatalf("glob: exit %d, stderr %q", code, errOut)
	}
}

func TestCertsInitUsageErrors(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	for name, tt := range map[string]struct {
		args []string
		want string
	}{
		"no --dir":            {[]string{"certs", "init", "--product", "netapp-connector-aws"}, "--dir"},
		"no names":            {[]string{"certs", "init", "--dir", dir}, "--product"},
		"unknown product":     {[]string{"certs", "init", "--dir", dir, "--product", "nope"}, "unknown product"},
		"no rules with paths": {[]string{"certs", "init", "--dir", dir, "--product", "dt-cloud-connector"}, "nothing to intercept"},
		"public suffix":       {[]string{"certs", "init", "--dir", dir, "--intercept-host", "*.com"}, "public suffix"},
		"IP address":          {[]string{"certs", "init", "--dir", dir, "--intercept-host", "10.0.0.1"}, "IP address"},
		"argument":            {[]string{"certs", "init", "--dir", dir, "extra"}, "unknown command"},
	} {
		t.Run(name, func(t *testing.T) {
			code, _, errOut := egret(t, tt.args...)
			if code != 2 || !strings.Contains(errOut, tt.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, errOut, tt.want)
			}
		})
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Error("a failed init left a directory behind")
	}
}

func TestBuildInterceptRefusesBadSettings(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	if code, out, errOut := egret(t, "certs", "init", "--dir", dir, "--intercept-host", "*.corp.example"); code != 0 {
		t.Fatalf("init: %d %s%s", code, out, errOut)
	}
	notPEM := filepath.Join(t.TempDir(), "roots.pem")
	os.WriteFile(notPEM, []byte("not a certificate\n"), 0o644)
	for name, tt := range map[string]struct {
		cfg  config.Config
		want string
	}{
		"host without CA":      {config.Config{InterceptHosts: []string{"a.corp.example"}}, "need intercept_ca"},
		"upstream CA alone":    {config.Config{UpstreamCA: notPEM}, "need intercept_ca"},
		"missing CA":           {config.Config{InterceptCA: filepath.Join(dir, "none")}, "intercept_ca"},
		"host outside the CA":  {config.Config{InterceptCA: dir, InterceptHosts: []string{"api.other.example"}}, "cannot sign for it"},
		"upstream CA not PEM":  {config.Config{InterceptCA: dir, UpstreamCA: notPEM}, "no PEM certificate"},
		"upstream CA missing":  {config.Config{InterceptCA: dir, UpstreamCA: notPEM + ".gone"}, "no such file"},
		"unconstrainable host": {config.Config{InterceptCA: dir, InterceptHosts: []string{"*"}}, "every name"},
	} {
		t.Run(name, func(t *testing.T) {
			ic, err := buildIntercept(&tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("buildIntercept = %v, %v; want an error containing %q", ic, err, tt.want)
			}
		})
	}
	ic, err := buildIntercept(&config.Config{InterceptCA: dir, InterceptHosts: []string{"*.corp.example"}})
	if err != nil || ic == nil || len(ic.Hosts) != 1 || ic.UpstreamRoots != nil {
		t.Errorf("good settings: %+v, %v", ic, err)
	}
	if ic, err := buildIntercept(&config.Config{}); ic != nil || err != nil {
		t.Errorf("no interception configured: %v, %v", ic, err)
	}
}

// The built binary, configured with intercept_ca and upstream_ca, enforces
// a path rule inside a CONNECT tunnel.
func TestServeInterceptsPathRules(t *testing.T) {
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "upstream %s", r.URL.Path)
	}))
	defer up.Close()
	_, portStr, _ := net.SplitHostPort(up.Listener.Addr().String())
	var port int
	fmt.Sscan(portStr, &port)
	rules := writeAllowlist(t, fmt.Sprintf("product: paths\nsource: test\nproxy:\n  - {host: secure.example.com, ports: [%s], paths: [/allowed], purpose: path rule}\n", portStr))
	caDir := filepath.Join(t.TempDir(), "ca")
	if code, out, errOut := egret(t, "certs", "init", "--dir", caDir, "--allowlists", rules, "--product", "paths"); code != 0 {
		t.Fatalf("certs init: %d %s%s", code, out, errOut)
	}
	upCA := filepath.Join(t.TempDir(), "upstream.pem")
	os.WriteFile(upCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: up.Certificate().Raw}), 0o644)

	s := startServe(t, fmt.Sprintf("product: [paths]\nintercept_ca: %s\nupstream_ca: %s\n", caDir, upCA), port,
		"--allowlists", rules, "--resolve", "secure.example.com=127.0.0.1")
	c, br, status := s.tunnel("secure.example.com:" + portStr)
	if status != 200 || br.Buffered() != 0 {
		t.Fatalf("CONNECT: %d", status)
	}
	roots := x509.NewCertPool()
	roots.AddCert(caFile(t, caDir))
	tc := tls.Client(c, &tls.Config{ServerName: "secure.example.com", RootCAs: roots})
	tbr := bufio.NewReader(tc)
	for path, want := range map[string]int{"/allowed/x": 200, "/other": 403} {
		fmt.Fprintf(tc, "GET %s HTTP/1.1\r\nHost: secure.example.com:%s\r\n\r\n", path, portStr)
		resp, err := http.ReadResponse(tbr, nil)
		if err != nil {
			t.Fatalf("GET %s: %v\n%s", path, err, s.stderr.String())
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want || (want == 200 && string(body) != "upstream "+path) {
			t.Errorf("GET %s: %d %q, want %d", path, resp.StatusCode, body, want)
		}
	}
	s.waitFor(func() bool {
		return strings.Contains(s.stdout.String(), `"path":"/other","rule":"secure.example.com"`) &&
			strings.Contains(s.stdout.String(), `"reason":"path"`) && strings.Contains(s.stdout.String(), `"sni":"secure.example.com"`)
	}, "the decision line of the denied path")
}
