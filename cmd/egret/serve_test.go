package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binary is egret built once for the serve tests, which run it as a real
// process so that signals, files and exit codes are real.
var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func egretBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "egret-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "egret")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// served is a running `egret serve` process.
type served struct {
	t       *testing.T
	cmd     *exec.Cmd
	proxy   string
	admin   string
	stdout  *lockedBuffer
	stderr  *lockedBuffer
	dir     string
	cfgPath string
}

// localPolicy is an extension allowlist: a product for the test upstream.
func localPolicy(port int) string {
	return fmt.Sprintf("product: local\ntitle: the test upstream\nsource: test\nproxy:\n  - {host: example.com, ports: [%d], purpose: test upstream}\n", port)
}

func startServe(t *testing.T, config string, upstreamPort int, args ...string) *served {
	t.Helper()
	s := &served{t: t, stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, dir: t.TempDir()}
	os.MkdirAll(filepath.Join(s.dir, "allowlists"), 0o755)
	os.WriteFile(filepath.Join(s.dir, "allowlists", "local.yaml"), []byte(localPolicy(upstreamPort)), 0o644)
	s.cfgPath = filepath.Join(s.dir, "egret.yaml")
	os.WriteFile(s.cfgPath, []byte(config), 0o644)
	s.proxy, s.admin = freeAddr(t), freeAddr(t)
	all := append([]string{"serve", "--config", s.cfgPath, "--listen", s.proxy, "--admin", s.admin,
		"--allowlists", filepath.Join(s.dir, "allowlists"), "--allow-range", "127.0.0.0/8",
		"--resolve", "example.com=127.0.0.1"}, args...)
	s.cmd = exec.Command(egretBinary(t), all...)
	s.cmd.Stdout, s.cmd.Stderr = s.stdout, s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			s.cmd.Process.Kill()
			s.cmd.Wait()
		}
	})
	s.waitFor(func() bool {
		resp, err := http.Get("http://" + s.admin + "/readyz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	}, "readyz")
	return s
}

func (s *served) waitFor(cond func() bool, what string) {
	s.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			s.t.Fatalf("waiting for %s: timed out\nstderr:\n%s", what, s.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tunnel opens a CONNECT tunnel and returns the connection and the status.
func (s *served) tunnel(target string) (net.Conn, *bufio.Reader, int) {
	s.t.Helper()
	c, err := net.DialTimeout("tcp", s.proxy, 5*time.Second)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
	if err != nil {
		s.t.Fatal(err)
	}
	return c, br, resp.StatusCode
}

// get sends a plain GET through an open tunnel and returns the body.
func get(t *testing.T, c net.Conn, br *bufio.Reader, path string) string {
	t.Helper()
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: example.com\r\n\r\n", path)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("through the tunnel: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func upstream(t *testing.T) (*httptest.Server, int) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "upstream %s", r.URL.Path)
	}))
	t.Cleanup(up.Close)
	_, port, _ := net.SplitHostPort(up.Listener.Addr().String())
	var p int
	fmt.Sscan(port, &p)
	return up, p
}

func TestServeReloadKeepsTunnelsAndOldPolicyOnError(t *testing.T) {
	_, port := upstream(t)
	s := startServe(t, "product: [local]\n", port)
	target := fmt.Sprintf("example.com:%d", port)
	c, br, status := s.tunnel(target)
	if status != 200 {
		t.Fatalf("CONNECT status %d", status)
	}
	if got := get(t, c, br, "/one"); got != "upstream /one" {
		t.Fatalf("first request: %q", got)
	}

	// Bad: an unknown key. The old policy stays and the error names file and line.
	os.WriteFile(s.cfgPath, []byte("product: [local]\nmdoe: report\n"), 0o644)
	s.waitFor(func() bool { return strings.Contains(s.stderr.String(), "reload failed") }, "the failed reload")
	if !strings.Contains(s.stderr.String(), "egret.yaml:2") {
		t.Errorf("reload error does not name the file and line:\n%s", s.stderr.String())
	}
	if _, _, st := s.tunnel(target); st != 200 {
		t.Errorf("after a bad reload, CONNECT got %d; the old policy should stand", st)
	}

	// Good again, now denying the upstream: new tunnels are refused, the open one works.
	os.WriteFile(s.cfgPath, []byte("product: [netapp-connector-aws]\n"), 0o644)
	s.waitFor(func() bool { _, _, st := s.tunnel(target); return st == 403 }, "the new policy")
	if got := get(t, c, br, "/two"); got != "upstream /two" {
		t.Fatalf("the open tunnel after reloads: %q", got)
	}
}

func TestServeSIGHUPReloads(t *testing.T) {
	_, port := upstream(t)
	s := startServe(t, "product: [netapp-connector-aws]\n", port)
	target := fmt.Sprintf("example.com:%d", port)
	if _, _, st := s.tunnel(target); st != 403 {
		t.Fatalf("before: %d", st)
	}
	// Rewrite the file and signal; the watcher may also notice, either way it reloads.
	os.WriteFile(s.cfgPath, []byte("product: [local]\n"), 0o644)
	s.cmd.Process.Signal(syscall.SIGHUP)
	s.waitFor(func() bool { _, _, st := s.tunnel(target); return st == 200 }, "the reload by SIGHUP")
}

func TestServeSIGTERMDrains(t *testing.T) {
	_, port := upstream(t)
	s := startServe(t, "product: [local]\n", port, "--shutdown-grace", "20s")
	c, br, status := s.tunnel(fmt.Sprintf("example.com:%d", port))
	if status != 200 {
		t.Fatalf("CONNECT %d", status)
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	s.waitFor(func() bool { return strings.Contains(s.stderr.String(), "draining") }, "draining")
	// No new connections, but the open tunnel is served.
	if c2, err := net.DialTimeout("tcp", s.proxy, time.Second); err == nil {
		c2.SetDeadline(time.Now().Add(2 * time.Second))
		n, _ := c2.Read(make([]byte, 1))
		c2.Close()
		if n > 0 {
			t.Error("a new connection was served after SIGTERM")
		}
	}
	if got := get(t, c, br, "/draining"); got != "upstream /draining" {
		t.Fatalf("open tunnel during drain: %q", got)
	}
	c.Close()
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, s.stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("egret did not exit after its last tunnel closed")
	}
	lines := s.stdout.String()
	if !strings.Contains(lines, `"msg":"close"`) || !strings.Contains(lines, `"bytes_down":`) {
		t.Errorf("no close line for the drained tunnel:\n%s", lines)
	}
}

func TestServeRefusesBadConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "egret.yaml")
	os.WriteFile(cfg, []byte("listen: \":3128\"\nmode: enforce\nproduct: [no-such-product]\n"), 0o644)
	var out, errOut bytes.Buffer
	cmd := exec.Command(egretBinary(t), "serve", "--config", cfg, "--listen", freeAddr(t), "--admin", freeAddr(t))
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(errOut.String(), "no-such-product") {
		t.Fatalf("err %v, stderr %q", err, errOut.String())
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestExampleConfigLoads starts egret on deploy/egret.yaml, the commented
// example of every key, so that the documented file stays valid.
func TestExampleConfigLoads(t *testing.T) {
	cmd := exec.Command(egretBinary(t), "serve", "--config", "../../deploy/egret.yaml",
		"--listen", freeAddr(t), "--admin", freeAddr(t))
	cmd.Env = append(os.Environ(), "EGRET_PW_CONNECTOR=secret")
	var errOut lockedBuffer
	cmd.Stderr, cmd.Stdout = &errOut, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(errOut.String(), "explicit proxy on") {
		if cmd.ProcessState != nil || time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("egret did not start on deploy/egret.yaml:\n%s", errOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
}

// TestServeFailsClosedOnFullDisk logs to /dev/full, where every write
// fails with ENOSPC as on a full disk: egret refuses traffic, says so on
// standard error and /readyz, and keeps running.
func TestServeFailsClosedOnFullDisk(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Fatalf("/dev/full: %v", err)
	}
	_, port := upstream(t)
	s := &served{t: t, stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, dir: t.TempDir()}
	os.MkdirAll(filepath.Join(s.dir, "al"), 0o755)
	os.WriteFile(filepath.Join(s.dir, "al", "local.yaml"), []byte(localPolicy(port)), 0o644)
	s.proxy, s.admin = freeAddr(t), freeAddr(t)
	s.cmd = exec.Command(egretBinary(t), "serve", "--listen", s.proxy, "--admin", s.admin, "--product", "local",
		"--allowlists", filepath.Join(s.dir, "al"), "--allow-range", "127.0.0.0/8",
		"--resolve", "example.com=127.0.0.1", "--decision-log", "/dev/full")
	s.cmd.Stdout, s.cmd.Stderr = s.stdout, s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { s.cmd.Process.Kill(); s.cmd.Wait() }()
	s.waitFor(func() bool { return strings.Contains(s.stderr.String(), "explicit proxy on") }, "start")
	if _, _, st := s.tunnel(fmt.Sprintf("example.com:%d", port)); st != http.StatusServiceUnavailable {
		t.Fatalf("CONNECT with an unwritable log: %d, want 503", st)
	}
	s.waitFor(func() bool {
		return strings.Contains(s.stderr.String(), "no space left on device; refusing traffic")
	}, "stderr to say why traffic is refused")
	resp, err := http.Get("http://" + s.admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(body), "decision log") {
		t.Errorf("/readyz: %d %q", resp.StatusCode, body)
	}
}

// TestServeConfigFileDeleted: the configuration file removed under a
// running egret changes nothing: the policy in force stays (also after a
// SIGHUP, which fails to load and says so), open tunnels stay, and the
// file's return is picked up.
func TestServeConfigFileDeleted(t *testing.T) {
	_, port := upstream(t)
	s := startServe(t, "product: [local]\n", port)
	target := fmt.Sprintf("example.com:%d", port)
	c, br, status := s.tunnel(target)
	if status != 200 {
		t.Fatalf("CONNECT status %d", status)
	}
	if err := os.Remove(s.cfgPath); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // past the watcher's debounce
	if _, _, st := s.tunnel(target); st != 200 {
		t.Fatalf("after the file was removed: CONNECT %d; the policy in force should stand", st)
	}
	s.cmd.Process.Signal(syscall.SIGHUP)
	s.waitFor(func() bool { return strings.Contains(s.stderr.String(), "reload failed") }, "the failed reload")
	if !strings.Contains(s.stderr.String(), "no such file") {
		t.Errorf("the reload error does not say the file is missing:\n%s", s.stderr.String())
	}
	if _, _, st := s.tunnel(target); st != 200 {
		t.Fatalf("after SIGHUP without a file: CONNECT %d", st)
	}
	if got := get(t, c, br, "/still"); got != "upstream /still" {
		t.Fatalf("the open tunnel: %q", got)
	}
	// The file comes back, now denying the upstream.
	os.WriteFile(s.cfgPath, []byte("product: [netapp-connector-aws]\n"), 0o644)
	s.waitFor(func() bool { _, _, st := s.tunnel(target); return st == 403 }, "the recreated file's policy")
	if got := get(t, c, br, "/after"); got != "upstream /after" {
		t.Fatalf("the open tunnel after the file returned: %q", got)
	}
}
