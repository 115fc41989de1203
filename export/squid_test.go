package export

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/egret-proxy/egret/allowlists"
)

// requireSquid skips without Squid, or without its OpenSSL build (the one
// that knows ssl::server_name) when openssl is set, and fails under CI,
// which installs squid-openssl.
func requireSquid(t *testing.T, openssl bool) {
	t.Helper()
	out, err := exec.Command("squid", "-v").CombinedOutput()
	missing := ""
	switch {
	case err != nil:
		missing = "squid"
	case openssl && !strings.Contains(string(out), "--with-openssl"):
		missing = "squid built with OpenSSL (Debian's squid-openssl)"
	}
	if missing == "" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("this test needs %s; .ci/run installs it", missing)
	}
	t.Skipf("needs %s", missing)
}

// squidDir is a directory Squid's effective user (proxy, when the test
// runs as root) can write.
func squidDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	// t.TempDir's parent is private to its owner: let proxy through it.
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
func squidConf(t *testing.T, dir, fragment, listen, extra string) string {
	t.Helper()
	frag := filepath.Join(dir, "egret.conf")
	if err := os.WriteFile(frag, []byte(fragment), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`http_port %[1]s
pid_filename %[2]s/squid.pid
cache_log %[2]s/cache.log
access_log stdio:%[2]s/access.log
coredump_dir %[2]s
cache deny all
shutdown_lifetime 0 seconds
%[3]s
include %[4]s
`, listen, dir, extra, frag)
	path := filepath.Join(dir, "squid.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// squidLoopback keeps Squid's name resolution on the machine: every name
// a test sends is in the hosts file, mapped to 127.0.0.1, and the
// nameserver is the loopback (where nothing answers), so nothing outside
// is ever asked or dialled.
func squidLoopback(t *testing.T, dir string, names []string) string {
	t.Helper()
	var hosts strings.Builder
	for _, n := range names {
		fmt.Fprintf(&hosts, "127.0.0.1 %s\n", n)
	}
	if err := os.WriteFile(filepath.Join(dir, "hosts"), []byte(hosts.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("hosts_file %s/hosts\ndns_nameservers 127.0.0.1\ndns_timeout 2 seconds\n"+
		"connect_timeout 2 seconds\nread_timeout 5 seconds\n", dir)
}

// bumpCert writes a self-signed certificate and key for an ssl-bump port.
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

var squidSeq atomic.Int32

// squidService is a service name of its own for each Squid the tests
// run: Squid names its shared memory segments after it, and two Squids
// of one name (another package's benchmark, a parallel run) collide.
func squidService() string {
	return fmt.Sprintf("egret%x%d", os.Getpid(), squidSeq.Add(1))
}

var squidComplaintRE = regexp.MustCompile(`(?m)^.*(FATAL|ERROR|WARNING|Bungled|not found).*$`)

// Every embedded product, in both Squid formats, is a fragment a bare
// squid.conf can include: squid -k parse accepts it without a complaint,
// with egret's default ACL prefix and with the longest --name.
func TestSquidEveryProductParses(t *testing.T) {
	requireSquid(t, false)
	dir := squidDir(t)
	cert := bumpCert(t, dir)
	bumpPort := "https_port 127.0.0.1:19398 intercept ssl-bump name=%s_tls tls-cert=" + cert + " generate-host-certificates=off"
	plain, withVars := compile(t, nil), compile(t, everyVariableSet(t))
	const longName = "egret_twenty_chars_x" // --name takes at most 20
	version, _ := exec.Command("squid", "-v").CombinedOutput()
	openssl := strings.Contains(string(version), "--with-openssl")
	if !openssl {
		if os.Getenv("CI") != "" {
			t.Fatal("squid-sslbump needs Squid's OpenSSL build; .ci/run installs squid-openssl")
		}
		t.Log("squid is the GnuTLS build: only the squid format is checked")
	}
	for _, prod := range plain.Catalog().Names() {
		for _, c := range []struct {
			format string
			write  Writer
			p      *allowlists.Policy
			name   string
		}{
			{"squid", WriteSquid, plain, "egret"},
			{"squid, every variable set, long --name", WriteSquid, withVars, longName},
			{"squid-sslbump", WriteSquidSSLBump, plain, "egret"},
			{"squid-sslbump, every variable set, long --name", WriteSquidSSLBump, withVars, longName},
		} {
			extra := ""
			if strings.HasPrefix(c.format, "squid-sslbump") {
				if !openssl {
					continue // the GnuTLS build refuses the bump ACLs
				}
				extra = fmt.Sprintf(bumpPort, c.name)
			}
			out, _ := render(t, c.write, c.p, []string{prod}, Options{Name: c.name})
			conf := squidConf(t, dir, out, "127.0.0.1:19399", extra)
			got, err := exec.Command("squid", "-n", squidService(), "-k", "parse", "-f", conf).CombinedOutput()
			if err != nil || squidComplaintRE.Match(got) {
				t.Errorf("%s, %s: squid -k parse: %v\n%s\n--- fragment:\n%s", prod, c.format, err, squidComplaintRE.FindAll(got, 5), numbered(out))
			}
		}
	}
}

// squidRun is a Squid running in the foreground for one test.
type squidRun struct {
	port    int
	dir     string
	service string
}

// startSquid runs Squid in the foreground and waits (bounded) until it
// accepts on its port. Cleanup stops it (SIGTERM, then SIGKILL) and
// removes the shared memory segments it may leave.
func startSquid(t *testing.T, conf, dir string, port int) *squidRun {
	t.Helper()
	s := &squidRun{port: port, dir: dir, service: squidService()}
	cmd := exec.Command("squid", "-n", s.service, "-N", "-f", conf)
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		shm, _ := filepath.Glob("/dev/shm/" + s.service + "-*")
		for _, f := range shm {
			os.Remove(f)
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond); err == nil {
			c.Close()
			return s
		}
		select {
		case <-done:
			t.Fatalf("squid exited:\n%s", logs.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("squid did not listen on %d within 15s:\n%s", port, logs.String())
	return nil
}

// accessLog returns Squid's access.log.
func (s *squidRun) accessLog(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.dir, "access.log"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var squidDeniedRE = regexp.MustCompile(`TCP_DENIED\S*/403`)

// waitDenied checks that access.log has one TCP_DENIED line per denied
// probe, waiting (bounded) for Squid to write the last ones.
func (s *squidRun) waitDenied(t *testing.T, want int) {
	t.Helper()
	var log string
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if log = s.accessLog(t); len(squidDeniedRE.FindAllString(log, -1)) == want {
			return
		}
	}
	t.Errorf("access.log has %d TCP_DENIED lines, want one per denied probe (%d):\n%s", len(squidDeniedRE.FindAllString(log, -1)), want, log)
}

func squidFreePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// A real Squid with a product's export allows and denies what egret
// decides, on every rule's names and ports and on near misses: the apex
// of a wildcard, a look-alike suffix, a wrong port, a name no rule has,
// an IP literal, and plain-HTTP paths inside and outside a rule's
// prefixes, with dot segments and escapes. Every name resolves to
// 127.0.0.1 through Squid's hosts file, and egret is asked with that
// address (as serve resolves it): nothing leaves the machine.
func TestSquidAgreesWithEgret(t *testing.T) {
	requireSquid(t, false)
	total, totalAllowed := 0, 0
	for _, prod := range []string{
		"netapp-connector-aws",       // 000: names, regional patterns, paths
		"netapp-connector-install",   // 000: paths on the installer's downloads
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
			port := squidFreePort(t)
			out, _ := render(t, WriteSquid, p, []string{prod}, Options{})
			conf := squidConf(t, dir, out, fmt.Sprintf("127.0.0.1:%d", port), squidLoopback(t, dir, probeNames(probes)))
			sq := startSquid(t, conf, dir, port)
			allowed := 0
			for _, pr := range probes {
				d, err := allowlists.NewDest(pr.host, pr.port, pr.path)
				if err != nil {
					t.Fatal(err)
				}
				want := p.Decide(id, d.WithAddr(netip.MustParseAddr("127.0.0.1"))).Allow
				if got := sq.allows(t, pr); got != want {
					t.Errorf("%s %s:%d%s: squid allowed=%v, egret allows=%v", pr.method, pr.host, pr.port, pr.path, got, want)
				}
				if want {
					allowed++
				}
			}
			if allowed == 0 || allowed == len(probes) {
				t.Errorf("%d of %d probes allowed: the sample must hold allows and denies", allowed, len(probes))
			}
			if !t.Failed() {
				sq.waitDenied(t, len(probes)-allowed)
			}
			total += len(probes)
			totalAllowed += allowed
			t.Logf("%s: squid and egret agree on %d probes (%d allowed)", prod, len(probes), allowed)
		})
	}
	t.Logf("%d probes in all, %d allowed", total, totalAllowed)
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
					for _, suffix := range []string{"", "/x", "x", "/x?q=1", "/./x", "/%41", "/../x", "/%2e%2E/x", "/%5c", "/%zz", "/%3f/../../x"} {
						add("GET", name, int(port), path+suffix)
					}
				}
				if len(r.Paths) > 0 {
					add("GET", name, int(port), "/elsewhere")
				}
			}
		}
	}
	for _, host := range []string{"no-rule.example.org", "127.0.0.1"} {
		add("CONNECT", host, 443, "")
		add("CONNECT", host, 80, "")
		add("CONNECT", host, 8443, "")
		add("GET", host, 80, "/")
	}
	return probes
}

// nameFor returns names the rule's pattern covers and near misses: for
// *.d, a name under d, d itself and "evild"; for an exact name, the name,
// in capitals, with a trailing dot, and look-alikes; for other patterns,
// one instance.
func nameFor(r *allowlists.Rule) []string {
	h := r.Host
	switch {
	case strings.HasPrefix(h, "*.") && !strings.ContainsAny(h[2:], "*?[]{}$"):
		return []string{"a.b." + h[2:], h[2:], "evil" + h[2:]}
	case !strings.ContainsAny(h, "*?[]{}$"):
		return []string{h, strings.ToUpper(h), h + ".", "x" + h, h + ".evil.example"}
	}
	inst := regexp.MustCompile(`\{([^,}]*)[^}]*\}`).ReplaceAllString(h, "$1")
	inst = regexp.MustCompile(`\[([^\]-])[^\]]*\]`).ReplaceAllString(inst, "$1")
	inst = strings.NewReplacer("*.", "a.", "*", "x", "?", "q").Replace(inst)
	if !r.MatchesName(inst) {
		return nil
	}
	return []string{inst}
}

// probeNames are the names the probes send, as Squid looks them up (it
// lowers the case and drops a trailing dot), for the hosts file.
func probeNames(probes []squidProbe) []string {
	var names []string
	for _, pr := range probes {
		n := strings.TrimSuffix(strings.ToLower(pr.host), ".")
		if _, err := netip.ParseAddr(n); err == nil || slices.Contains(names, n) {
			continue
		}
		names = append(names, n)
	}
	return names
}

// allows sends one request through Squid and reports whether its
// http_access let it through: a deny is Squid's own 403 page
// (X-Squid-Error: ERR_ACCESS_DENIED); anything else (200, or 503 when
// nothing listens on the loopback port it dialled) is an allow.
func (s *squidRun) allows(t *testing.T, pr squidProbe) bool {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.port), 2*time.Second)
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
	status, squidError, err := readSquidHead(bufio.NewReader(c))
	if err != nil {
		t.Fatalf("%s %s%s: %v", pr.method, authority, pr.path, err)
	}
	return !(strings.Contains(status, " 403 ") && strings.HasPrefix(squidError, "ERR_ACCESS_DENIED"))
}

// readSquidHead reads a response's status line and X-Squid-Error header.
func readSquidHead(br *bufio.Reader) (status, squidError string, err error) {
	status, err = br.ReadString('\n')
	if err != nil {
		return "", "", fmt.Errorf("no status line from squid: %w", err)
	}
	for range 100 {
		line, err := br.ReadString('\n')
		if err != nil || strings.TrimSpace(line) == "" {
			break
		}
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "X-Squid-Error") {
			squidError = strings.TrimSpace(v)
		}
	}
	return status, squidError, nil
}

// squidBumpProduct writes an allowlist with rules on the upstream's port
// (and one on another), for the ssl_bump test.
func squidBumpProduct(t *testing.T, port int) *allowlists.Policy {
	t.Helper()
	dir := t.TempDir()
	yaml := fmt.Sprintf(`product: squid-bump-test
title: rules for the ssl_bump test
source: squid_test.go
proxy:
  - host: allowed.test
    ports: [%[1]d]
    purpose: an exact name
  - host: "*.wild.test"
    ports: [%[1]d]
    purpose: a wildcard
  - host: "db-*.pattern.test"
    ports: [%[1]d]
    purpose: a pattern within a label
  - host: paths.test
    ports: [%[1]d]
    paths: [/p]
    purpose: a name with paths, allowed in a tunnel
  - host: otherport.test
    ports: [%[2]d]
    purpose: a name on another port
`, port, port+1)
	if err := os.WriteFile(filepath.Join(dir, "squid-bump-test.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cat, err := allowlists.LoadCatalog(dir)
	if err != nil {
		t.Fatal(err)
	}
	p, _, err := allowlists.Compile(cat, allowlists.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// sniRecorder is a TLS upstream on the loopback that records the SNI of
// each ClientHello it receives and hangs up: a ClientHello arriving is a
// connection Squid spliced.
func sniRecorder(t *testing.T) (port int, snis <-chan string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ch := make(chan string, 64)
	stop := errors.New("recorded")
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			tls.Server(c, &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
				ch <- h.ServerName
				return nil, stop
			}}).Handshake()
			c.Close()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port, ch
}

// Squid with the squid-sslbump export peeks at a tunnel's ClientHello
// and splices exactly the SNI names egret's transparent listener allows
// on that port; the rest it terminates, and the upstream never hears of
// them. The tunnels go through an ssl-bump http_port with CONNECT to an
// allowed name, so that the SNI alone decides; every name resolves to
// 127.0.0.1 and the upstream is a recorder there.
func TestSquidSSLBumpSplicesBySNI(t *testing.T) {
	requireSquid(t, true)
	upstream, snis := sniRecorder(t)
	p := squidBumpProduct(t, upstream)
	id, err := p.Identity("test", "squid-bump-test")
	if err != nil {
		t.Fatal(err)
	}
	dir := squidDir(t)
	port := squidFreePort(t)
	out, _ := render(t, WriteSquidSSLBump, p, []string{"squid-bump-test"}, Options{})
	names := []string{"allowed.test", "a.b.wild.test", "wild.test", "evilwild.test", "db-1.pattern.test",
		"db.pattern.test", "x.db-1.pattern.test", "paths.test", "otherport.test", "other.test"}
	listen := fmt.Sprintf("127.0.0.1:%d ssl-bump tls-cert=%s generate-host-certificates=off", port, bumpCert(t, dir))
	conf := squidConf(t, dir, out, listen, squidLoopback(t, dir, names))
	sq := startSquid(t, conf, dir, port)

	spliced := 0
	for _, sni := range append(names, "ALLOWED.TEST") {
		d, err := allowlists.NewDest(sni, upstream, "")
		if err != nil {
			t.Fatal(err)
		}
		want := p.Decide(id, d).Allow
		got := sq.splices(t, "allowed.test", upstream, sni, snis)
		if got != want {
			t.Errorf("SNI %s: squid spliced=%v, egret allows=%v\n--- fragment:\n%s", sni, got, want, numbered(out))
		}
		if got {
			spliced++
		}
	}
	if spliced == 0 {
		t.Errorf("nothing spliced")
	}
	// A CONNECT http_access refuses is not spliced either, whatever the
	// SNI (Squid answers 200 on an ssl-bump port and serves its error
	// inside TLS).
	for _, host := range []string{"other.test", "otherport.test"} {
		if sq.splices(t, host, upstream, "allowed.test", snis) {
			t.Errorf("CONNECT %s with SNI allowed.test: spliced", host)
		}
	}
}

// splices opens a tunnel to host through Squid, sends a ClientHello for
// sni and reports whether it reached the upstream.
func (s *squidRun) splices(t *testing.T, host string, upstream int, sni string, snis <-chan string) bool {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.port), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	authority := fmt.Sprintf("%s:%d", host, upstream)
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", authority, authority)
	br := bufio.NewReader(c)
	status, _, err := readSquidHead(br)
	if err != nil || !strings.Contains(status, " 200 ") {
		t.Fatalf("CONNECT %s: %q %v", authority, status, err)
	}
	// The handshake fails either way: Squid terminates, or the upstream
	// hangs up after reading the ClientHello.
	tls.Client(c, &tls.Config{ServerName: sni, InsecureSkipVerify: true}).Handshake()
	select {
	case got := <-snis:
		if !strings.EqualFold(got, sni) {
			t.Fatalf("SNI %s: the upstream received %q", sni, got)
		}
		return true
	case <-time.After(time.Second):
		return false
	}
}

// Wildcards and patterns are regular expressions with egret's meaning,
// exact names dstdomain; Squid's own ".example.com" (which matches the
// apex) is never written.
func TestSquidHostACLs(t *testing.T) {
	p := compile(t, nil)
	out, _ := render(t, WriteSquid, p, []string{"dt-cloud-connector-wildcard", "netapp-connector-aws"}, Options{})
	for _, want := range []string{
		`acl egret_dt_cloud_connector_wildcard_p1 dstdom_regex -n -i ^([^.]+\.)+disruptive-technologies\.com$`,
		`acl egret_netapp_connector_aws_p7 dstdomain -n api.services.cloud.netapp.com`,
		`acl egret_netapp_connector_aws_p1 dstdom_regex -n -i ^cloudformation\.[^.]*\.amazonaws\.com$`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("missing %s", want)
		}
	}
	for _, prod := range p.Catalog().Names() {
		out, _ := render(t, WriteSquid, p, []string{prod}, Options{})
		if m := regexp.MustCompile(`(?m)^acl \S+ (dstdomain|ssl::server_name) .*( \.|\*).*$`).FindString(out); m != "" {
			t.Errorf("%s: a Squid domain wildcard: %s", prod, m)
		}
		for _, m := range regexp.MustCompile(`(?m)^acl \S+ dstdom_regex -n -i (\S+)$`).FindAllStringSubmatch(out, -1) {
			re := regexp.MustCompile("(?i)" + m[1])
			for _, literal := range []string{"127.0.0.1", "2130706433", "0x7f.1", "::1"} {
				if re.MatchString(literal) {
					t.Errorf("%s: %s matches the IP literal %s", prod, m[1], literal)
				}
			}
		}
	}
}

// The path ACLs, read as Squid reads them (escapes decoded), agree with
// egret for the maven rule, except where Squid is stricter and for an
// escaped '/', which Squid sees decoded and egret refuses.
func TestSquidPathsMeanEgret(t *testing.T) {
	p := compile(t, nil)
	id, err := p.Identity("test", "netapp-connector-aws")
	if err != nil {
		t.Fatal(err)
	}
	prefix := regexp.MustCompile(squidPathRegexps([]string{"/maven2"}))
	unsafe := regexp.MustCompile("(?i)" + strings.Join(squidUnsafePath, "|"))
	const (
		same     = iota
		stricter // Squid refuses what egret allows
		looser   // Squid allows what egret refuses
	)
	for _, c := range []struct {
		path string
		want int
	}{
		{"/maven2", same}, {"/maven2/", same}, {"/maven2/org/x.jar", same}, {"/maven2/x?q", same},
		{"/maven2x", same}, {"/maven", same}, {"/", same}, {"/x/maven2", same}, {"/maven2%3fx", same},
		{"/maven2/./x", same}, {"/maven2/.", same}, {"/maven2/%41", same}, {"/maven2/..x", same}, {"/mave%6e2/x", same},
		{"/maven2/..", same}, {"/maven2/../x", same}, {"/maven2/%2e%2e/x", same}, {"/maven2/.%2E", same},
		{"/maven2%2f..%2fx", same}, {"/maven2/%3f/../../x", same},
		{"/maven2/a%5Cb", same}, {"/maven2/%zz", same}, {"/maven2/%4", same}, {"/maven2/x%", same},
		{"/maven2/x?a=%2f", same}, {"/maven2/x?a=..", same},
		{"/maven2?q", stricter}, {"/maven2/x/..", stricter}, {"/maven2/x/../y", stricter}, {"/maven2/a\\b", stricter},
		{"/maven2/%25zz", stricter}, {"/maven2/a%2fb", looser},
	} {
		d, err := allowlists.NewDest("repo1.maven.org", 443, c.path)
		if err != nil {
			t.Fatal(err)
		}
		egret := p.Decide(id, d).Allow
		decoded := squidUnescape(c.path)
		squid := prefix.MatchString(decoded) && !unsafe.MatchString(decoded)
		got := same
		switch {
		case squid && !egret:
			got = looser
		case !squid && egret:
			got = stricter
		}
		if got != c.want {
			t.Errorf("%s: Squid allows=%v, egret allows=%v", c.path, squid, egret)
		}
	}
	if got := squidPathRegexps([]string{"/dir/"}); got != `^/dir/` {
		t.Errorf("a prefix ending in /: %s", got)
	}
}

// squidUnescape decodes a path as Squid does before it matches
// urlpath_regex (rfc1738_unescape): each %XX with two hex digits, once;
// anything else stays.
func squidUnescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil && v != 0 {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// A range is written with egret's meaning: IPv4's whole as two halves
// (Squid refuses 0.0.0.0/0), an IPv6 range without the IPv4-mapped block
// (where Squid keeps IPv4 addresses), an IPv4-mapped range not at all.
func TestSquidCIDR(t *testing.T) {
	if got := squidCIDR(netip.MustParsePrefix("0.0.0.0/0")); !slices.Equal(got, []string{"0.0.0.0/1", "128.0.0.0/1"}) {
		t.Errorf("0.0.0.0/0: %v", got)
	}
	for _, s := range []string{"104.40.0.0/13", "2001:db8::/32", "10.1.2.3/32"} {
		if got := squidCIDR(netip.MustParsePrefix(s)); !slices.Equal(got, []string{s}) {
			t.Errorf("%s: %v", s, got)
		}
	}
	if got := squidCIDR(netip.MustParsePrefix("::ffff:10.0.0.0/104")); got != nil {
		t.Errorf("an IPv4-mapped range: %v", got)
	}
	for _, whole := range []string{"::/0", "::/80"} {
		ranges := squidCIDR(netip.MustParsePrefix(whole))
		covers := func(a string) bool {
			for _, r := range ranges {
				if netip.MustParsePrefix(r).Contains(netip.MustParseAddr(a)) {
					return true
				}
			}
			return false
		}
		if covers("::ffff:127.0.0.1") || covers("::ffff:0:0") || covers("::ffff:ffff:ffff") {
			t.Errorf("%s: %v holds IPv4-mapped addresses", whole, ranges)
		}
		for _, a := range []string{"::1", "::fffe:ffff:ffff", "::1:0:0"} {
			if !covers(a) {
				t.Errorf("%s: %v misses %s", whole, ranges, a)
			}
		}
		if whole == "::/0" && !covers("2001:db8::1") {
			t.Errorf("::/0 misses 2001:db8::1")
		}
	}
}

// ACL names fit Squid's 62 characters with the longest --name, and stay
// apart for products whose names are cut.
func TestSquidACLNames(t *testing.T) {
	long := &Entry{ID: allowlists.ID{Product: "a-product-name-far-too-long-for-squid-acl-names-one", Kind: 'p', N: 12}}
	other := &Entry{ID: allowlists.ID{Product: "a-product-name-far-too-long-for-squid-acl-names-two", Kind: 'p', N: 12}}
	const name = "egret_twenty_chars_x"
	a, b := squidID(name, long), squidID(name, other)
	if a == b || len(a+"_port") > squidACLNameMax || !strings.HasSuffix(a, "_p12") {
		t.Errorf("%s, %s", a, b)
	}
	if got := squidID("egret", &Entry{ID: allowlists.ID{Product: "dt-cloud-connector", Kind: 'p', N: 3}}); got != "egret_dt_cloud_connector_p3" {
		t.Errorf("short name: %s", got)
	}
}

// Unset proxy rules are skips; network rules are comments, not skips;
// every proxy rule's provenance is written.
func TestSquidSkipsAndComments(t *testing.T) {
	p := compile(t, nil)
	for _, prod := range []string{"netapp-cloud-manager-aws", "cisco-cloudcenter-ccm", "netapp-cvo-aws"} {
		rs, err := Build(p, []string{prod}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		skips, err := WriteSquid(&b, rs)
		if err != nil {
			t.Fatal(err)
		}
		out := b.String()
		unset := 0
		for i := range rs.Entries {
			e := &rs.Entries[i]
			if !regexp.MustCompile(`(?m)^#\s+` + regexp.QuoteMeta(oneLine(e.Describe())) + `$`).MatchString(out) {
				t.Errorf("%s: no comment for %s", prod, e.ID)
			}
			if e.Proxy && e.Unset != "" {
				unset++
				if !slices.ContainsFunc(skips, func(s Skip) bool { return s.ID == e.ID }) {
					t.Errorf("%s: no skip for %s", prod, e.ID)
				}
			}
		}
		if len(skips) != unset {
			t.Errorf("%s: %d skips, %d unset proxy rules: %v", prod, len(skips), unset, skips)
		}
		if !strings.Contains(out, "\nhttp_access deny all\n") {
			t.Errorf("%s: no http_access deny all", prod)
		}
	}
}
