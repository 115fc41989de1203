//go:build linux

package netnstest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Chromium is Debian's headless browser; CI installs it (.ci/run).
const Chromium = "/usr/bin/chromium"

// ChromiumDOM loads url in headless Chromium inside namespace ns, with
// name mapped to the gateway's remote address (Remote4) and every other
// name to NOTFOUND, so the browser resolves nothing, and returns the DOM
// it prints once the page has loaded (nothing when it could not load it).
// The flags keep Chromium from reaching for the network on its own.
func ChromiumDOM(t testing.TB, ns, name, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	profile := t.TempDir()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, Chromium, "--headless", "--no-sandbox", "--disable-gpu",
		"--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update",
		"--disable-sync", "--user-data-dir="+profile, "--ignore-certificate-errors",
		"--host-resolver-rules=MAP "+name+" "+Remote4+", MAP * ~NOTFOUND", "--dump-dom", url)
	cmd.Env = append(os.Environ(), "HOME="+profile)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	return stdout.String()
}

// ChromiumRetry runs load, for a page egret lets through, up to three
// times while it prints no DOM: headless Chromium prints none for a page
// it could not load, and on a busy machine (go test -race beside other
// packages) it has now and then given up on a page whose every
// connection egret allowed.
func ChromiumRetry(t testing.TB, load func() string) string {
	t.Helper()
	for range 2 {
		if dom := load(); strings.TrimSpace(dom) != "" {
			return dom
		}
		t.Log("chromium printed no DOM; running it again")
	}
	return load()
}
