package deploy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestImage builds the proxy image with podman from a `make build` binary
// (the Dockerfile's BINARY=prebuilt, on BASE=scratch: nothing is pulled)
// and runs it as a deployment would: uid 65532, a read-only root
// filesystem, the explicit port published on the host's loopback. An
// allowed and a denied request go through it, the decision lines are read
// from the container's standard output, and SIGTERM stops it with exit 0.
//
// The allowed request's upstream is a second egret container in the
// proxy's network namespace (its admin listener's /healthz), so nothing
// but loopback and the containers' own namespace is dialled.
//
// What this machine needs, and the shipped instructions do not: Debian's
// runc (crun fails here: "cgroups in hybrid mode not supported") and
// explicit ulimits (the default ones are refused by setrlimit here).
func TestImage(t *testing.T) {
	podman := requirePodman(t)
	root, _ := filepath.Abs("..")
	run(t, 5*time.Minute, root, "make", "build")
	ctxDir := t.TempDir()
	os.MkdirAll(filepath.Join(ctxDir, "bin"), 0o755)
	copyFile(t, filepath.Join(root, "bin", "egret"), filepath.Join(ctxDir, "bin", "egret"))
	copyFile(t, filepath.Join(root, "Dockerfile"), filepath.Join(ctxDir, "Dockerfile"))

	image := fmt.Sprintf("localhost/egret-image-test:%d", os.Getpid())
	run(t, 5*time.Minute, ctxDir, podman, "build", "--target", "egret",
		"--build-arg", "BASE=scratch", "--build-arg", "BINARY=prebuilt", "-t", image, ".")
	t.Cleanup(func() { exec.Command(podman, "rmi", "-f", image).Run() })

	// The allowlist of the test upstream, mounted read-only.
	lists := t.TempDir()
	os.WriteFile(filepath.Join(lists, "local.yaml"), []byte("product: local\ntitle: the test upstream\nsource: test\nproxy:\n"+
		"  - {host: upstream.test, ports: [18080], purpose: the second container's /healthz}\n"), 0o644)
	port := freePort(t)
	name := fmt.Sprintf("egret-image-test-%d", os.Getpid())
	hostRun := []string{"--runtime", "runc", "run", "-d", "--ulimit", "nofile=16384:16384", "--ulimit", "nproc=4096:4096", "--read-only"}
	args := append(append([]string{}, hostRun...), "--name", name, "-p", fmt.Sprintf("127.0.0.1:%d:3128", port),
		"-v", lists+":/allowlists:ro", image,
		"serve", "--admin", ":9090", "--allowlists", "/allowlists", "--product", "local",
		"--allow-range", "127.0.0.0/8", "--resolve", "upstream.test=127.0.0.1")
	run(t, time.Minute, "", podman, args...)
	t.Cleanup(func() { exec.Command(podman, "rm", "-f", "-t", "0", name).Run() })
	upName := name + "-upstream"
	args = append(append([]string{}, hostRun...), "--name", upName, "--network", "container:"+name, image,
		"serve", "--listen", "127.0.0.1:13128", "--admin", "127.0.0.1:18080")
	run(t, time.Minute, "", podman, args...)
	t.Cleanup(func() { exec.Command(podman, "rm", "-f", "-t", "0", upName).Run() })

	// uid 65532 and a read-only root, as the running container has them.
	var state struct {
		State      struct{ Pid int }
		HostConfig struct{ ReadonlyRootfs bool }
	}
	var inspected []json.RawMessage
	if err := json.Unmarshal([]byte(run(t, time.Minute, "", podman, "inspect", name)), &inspected); err != nil || len(inspected) != 1 {
		t.Fatalf("podman inspect: %v", err)
	}
	json.Unmarshal(inspected[0], &state)
	if !state.HostConfig.ReadonlyRootfs {
		t.Error("the root filesystem is not read-only")
	}
	if uid := procUID(t, state.State.Pid); uid != "65532" {
		t.Errorf("egret runs as uid %s, want 65532", uid)
	}

	proxyURL, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", port))
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL), DisableKeepAlives: true}}
	status := func(target string) int {
		resp, err := client.Get(target)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	deadline := time.Now().Add(30 * time.Second)
	for status("http://upstream.test:18080/healthz") != 200 {
		if time.Now().After(deadline) {
			t.Fatalf("no 200 through the container for upstream.test:18080\n%s", run(t, time.Minute, "", podman, "logs", name))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := status("http://denied.example/"); got != 403 {
		t.Errorf("denied.example through the container: %d, want 403", got)
	}

	// SIGTERM: drained and exit 0.
	run(t, time.Minute, "", podman, "kill", "--signal", "TERM", name)
	if code := strings.TrimSpace(run(t, time.Minute, "", podman, "wait", name)); code != "0" {
		t.Errorf("exit code after SIGTERM %s, want 0", code)
	}
	logs := run(t, time.Minute, "", podman, "logs", name)
	var allow, deny bool
	sc := bufio.NewScanner(strings.NewReader(logs))
	for sc.Scan() {
		var l map[string]any
		if json.Unmarshal(sc.Bytes(), &l) != nil || l["msg"] != "decision" {
			continue
		}
		allow = allow || l["decision"] == "allow" && l["host"] == "upstream.test" && l["port"] == 18080.0
		deny = deny || l["decision"] == "deny" && l["host"] == "denied.example" && l["reason"] == "no-rule"
	}
	if !allow || !deny {
		t.Errorf("the container's standard output lacks the allow (%v) or the deny (%v):\n%s", allow, deny, logs)
	}
	if !strings.Contains(logs, "egret: stopped") {
		t.Errorf("no \"egret: stopped\" after SIGTERM:\n%s", logs)
	}
}

// requirePodman fails under CI (which installs podman and runc, and runs
// as root) and skips elsewhere when the image cannot be built and run.
func requirePodman(t *testing.T) string {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	podman, err := exec.LookPath("podman")
	if err != nil {
		missing = append(missing, "podman")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		if _, err := os.Stat("/usr/sbin/runc"); err != nil {
			missing = append(missing, "runc")
		}
	}
	if len(missing) > 0 {
		if os.Getenv("CI") != "" {
			t.Fatalf("the image test needs %v; .ci/run installs them", missing)
		}
		t.Skipf("needs %v", missing)
	}
	return podman
}

// run runs a command within timeout and returns its standard output; it
// fails the test on an error.
func run(t *testing.T, timeout time.Duration, dir, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out) + stderr.String()
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
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

// procUID is the real uid of process pid.
func procUID(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] == "Uid:" {
			return f[1]
		}
	}
	t.Fatalf("no Uid in /proc/%d/status", pid)
	return ""
}
