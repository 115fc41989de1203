package export

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/egret-proxy/egret/allowlists"
)

// requireSquid skips without Squid's OpenSSL build (the one that knows
// ssl::server_name), and fails under CI, which installs squid-openssl.
func requireSquid(t *testing.T) {
	t.Helper()
	out, err := exec.Command("squid", "-v").CombinedOutput()
	missing := ""
	switch {
	case err != nil:
		missing = "squid"
	case !strings.Contains(string(out), "--with-openssl"):
		missing = "squid built with OpenSSL (Debian's squid-openssl)"
	case os.Geteuid() != 0:
		missing = "root (Squid drops to its effective user)"
	}
	if missing == "" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("this test needs %s; .ci/run installs it", missing)
	}
	t.Skipf("needs %s", missing)
}

// squidDir is a directory Squid's effective user (proxy) can write.
func squidDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	// t.TempDir's parent is private to root: let proxy through it.
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return dir
}

// squidConf writes a bare squid.conf around the fragment: nothing of
// Debian's default configuration, so the fragment must stand alone.
func squidConf(t *testing.T, dir, fragment string, port int, extra string) string {
	t.Helper()
	frag := filepath.Join(dir, "egret.conf")
	if err := os.WriteFile(frag, []byte(fragment), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`http_port 127.0.0.1:%d
pid_filename %[2]s/squid.pid
cache_log %[2]s/cache.log
access_log stdio:%[2]s/access.log
cache deny all
shutdown_lifetime 0 seconds
%[3]s
include %[4]s
`, port, dir, extra, frag)
	path := filepath.Join(dir, "squid.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// bumpCert writes a self-signed certificate and key for the ssl-bump port.
func bumpCert(t *testing.T, dir string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "egret squid test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pemData := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})...)
	path := filepath.Join(dir, "bump.pem")
	if err := os.WriteFile(path, pemData, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

var squidComplaintRE = regexp.MustCompile(`(?m)^.*(FATAL|ERROR|WARNING|Bungled|not found).*$`)

// Every embedded product, in both Squid formats, is a fragment a bare
// squid.conf can include: squid -k parse accepts it without a complaint.
func TestSquidEveryProductParses(t *testing.T) {
	requireSquid(t)
	dir := squidDir(t)
	cert := bumpCert(t, dir)
	bumpPort := "https_port 127.0.0.1:19398 intercept ssl-bump name=egret_tls tls-cert=" + cert + " generate-host-certificates=off"
	plain, withVars := compile(t, nil), compile(t, everyVariableSet(t))
	for _, prod := range plain.Catalog().Names() {
		for _, c := range []struct {
			format string
			write  Writer
			p      *allowlists.Policy
			extra  string
		}{
			{"squid", WriteSquid, plain, ""},
			{"squid-sslbump", WriteSquidSSLBump, plain, bumpPort},
			{"squid-sslbump, every variable set", WriteSquidSSLBump, withVars, bumpPort},
		} {
			out, _ := render(t, c.write, c.p, []string{prod}, Options{})
			conf := squidConf(t, dir, out, 19399, c.extra)
			got, err := exec.Command("squid", "-k", "parse", "-f", conf).CombinedOutput()
			if err != nil || squidComplaintRE.Match(got) {
				t.Errorf("%s, %s: squid -k parse: %v\n%s\n--- fragment:\n%s", prod, c.format, err, squidComplaintRE.FindAll(got, 5), numbered(out))
			}
		}
	}
}

// A real Squid with a product's export allows and denies what egret
// decides, on every rule's names and ports and on near misses: the apex
// of a wildcard, a look-alike suffix, a wrong port, a name no rule has,
// and plain-HTTP paths inside and outside a rule's prefixes. Every name
// resolves to 127.0.0.1 through Squid's hosts file; nothing leaves the
// machine.
func TestSquidAgreesWithEgret(t *testing.T) {
	requireSquid(t)
	for _, prod := range []string{
		"netapp-connector-aws",       // 000: names, regional patterns, paths
		"netapp-cvo-aws-ha-mediator", // 001: *.amazonaws.com
		"cisco-cloudcenter-ccm",      // 002: the documented host "*" and 0.0.0.0/0 on 80/443
		"dt-cloud-connector-wildcard",
		"azure-cassandra-mi", // 004: names and cidr rules
	} {
		t.Run(prod, func(t *testing.T) {
			p := compile(t, map[string]string{"region": "eu-west-1"})
			id, err := p.Identity("test", prod)
			if err != nil {
				t.Fatal(err)
			}
			probes := squidProbes(p, prod)
			dir := squidDir(t)
			var hosts strings.Builder
			for _, pr := range probes {
				fmt.Fprintf(&hosts, "127.0.0.1 %s\n", pr.host)
			}
			if err := os.WriteFile(filepath.Join(dir, "hosts"), []byte(hosts.String()), 0o644); err != nil {
				t.Fatal(err)
			}
			port := freePort(t)
			out, _ := render(t, WriteSquid, p, []string{prod}, Options{})
			conf := squidConf(t, dir, out, port, fmt.Sprintf(
				"hosts_file %s/hosts\ndns_nameservers 127.0.0.1\ndns_timeout 2 seconds\nconnect_timeout 2 seconds", dir))
			startSquid(t, conf, port)
			agree, allowed := 0, 0
			for _, pr := range probes {
				d, err := allowlists.NewDest(pr.host, pr.port, pr.path)
				if err != nil {
					t.Fatal(err)
				}
				want := p.Decide(id, d).Allow
				got := squidAllows(t, port, pr)
				if got != want {
					t.Errorf("%s %s:%d%s: squid allowed=%v, egret allows=%v", pr.method, pr.host, pr.port, pr.path, got, want)
				} else {
					agree++
				}
				if want {
					allowed++
				}
			}
			if allowed == 0 || allowed == len(probes) {
				t.Errorf("%d of %d probes allowed: the sample must hold allows and denies", allowed, len(probes))
			}
			t.Logf("%s: squid and egret agree on %d of %d probes (%d allowed)", prod, agree, len(probes), allowed)
		})
	}
}

type squidProbe struct {
	method, host string
	port         int
	path         string
}

// squidProbes are the names and ports to try for a product: each active
// host rule's name (a name under each wildcard) on its ports and a wrong
// port, near misses, and paths for rules that have them.
func squidProbes(p *allowlists.Policy, prod string) []squidProbe {
	var probes []squidProbe
	add := func(method, host string, port int, path string) {
		probes = append(probes, squidProbe{method, host, port, path})
	}
	for _, r := range p.Rules(prod) {
		if r.Host == "" || r.IsAnyHost() {
			continue
		}
		for _, name := range nameFor(r) {
			for _, port := range r.Ports {
				add("CONNECT", name, int(port), "")
				add("CONNECT", name, int(port)+1000, "")
				for _, path := range r.Paths {
					add("GET", name, int(port), path+"/x")
					add("GET", name, int(port), path+"x")
				}
				if len(r.Paths) > 0 {
					add("GET", name, int(port), "/elsewhere")
				}
			}
		}
	}
	add("CONNECT", "no-rule.example.org", 443, "")
	add("CONNECT", "no-rule.example.org", 80, "")
	add("CONNECT", "no-rule.example.org", 8443, "")
	add("GET", "no-rule.example.org", 80, "/")
	return probes
}

// nameFor returns names the rule's pattern covers and near misses: for
// *.d, a name under d, d itself and "evild"; for an exact name, the name
// and a look-alike; for other patterns, one instance.
func nameFor(r *allowlists.Rule) []string {
	h := r.Host
	switch {
	case strings.HasPrefix(h, "*.") && !strings.ContainsAny(h[2:], "*?[]{}$"):
		return []string{"a.b." + h[2:], h[2:], "evil" + h[2:]}
	case !strings.ContainsAny(h, "*?[]{}$"):
		return []string{h, "x" + h, h + ".evil.example"}
	}
	inst := regexp.MustCompile(`\{([^,}]*)[^}]*\}`).ReplaceAllString(h, "$1")
	inst = regexp.MustCompile(`\[([^\]-])[^\]]*\]`).ReplaceAllString(inst, "$1")
	inst = strings.NewReplacer("*.", "a.", "*", "x", "?", "q").Replace(inst)
	if !r.MatchesName(inst) {
		return nil
	}
	return []string{inst}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startSquid runs Squid in the foreground and waits (bounded) until it
// accepts on port.
func startSquid(t *testing.T, conf string, port int) {
	t.Helper()
	cmd := exec.Command("squid", "-N", "-f", conf)
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond); err == nil {
			c.Close()
			return
		}
		select {
		case <-done:
			t.Fatalf("squid exited:\n%s", logs.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("squid did not listen on %d within 15s:\n%s", port, logs.String())
}

// squidAllows sends one request through Squid: a 403 is its deny (its
// http_access), anything else (200, or 503 when nothing listens on the
// loopback port it dialled) means the ACLs let the request through.
func squidAllows(t *testing.T, port int, pr squidProbe) bool {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	authority := net.JoinHostPort(pr.host, fmt.Sprint(pr.port))
	if pr.method == "CONNECT" {
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", authority, authority)
	} else {
		fmt.Fprintf(c, "GET http://%s%s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", authority, pr.path, authority)
	}
	status, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("%s %s: no status line from squid: %v", pr.method, authority, err)
	}
	return !strings.Contains(status, " 403 ")
}
