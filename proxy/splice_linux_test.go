package proxy

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// openPipes counts this process's pipe descriptors: what Go's splice
// borrows from its pipe pool for each direction of a tunnel.
func openPipes(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && strings.HasPrefix(target, "pipe:") {
			n++
		}
	}
	return n
}

// An idle tunnel holds its two sockets and nothing else: no splice pipes
// while it waits for data (issue: a bare splice relay holds six
// descriptors per idle tunnel, and runs out of them a third sooner).
func TestIdleTunnelsHoldNoSplicePipes(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	settle := func() int {
		// Pipes returned to Go's pool are closed by finalizers once the
		// pool is dropped, which takes two collections.
		for range 3 {
			runtime.GC()
		}
		return openPipes(t)
	}
	baseline := settle()
	const tunnels = 40
	for i := range tunnels {
		c := dialRaw(t, h.addr)
		if resp, _ := c.connect(t, fmt.Sprintf("example.com:%d", h.httpPort), ""); resp.StatusCode != 200 {
			t.Fatalf("CONNECT: %s", resp.Status)
		}
		// One request and response: both directions have spliced.
		c.send(t, fmt.Sprintf("GET /%d HTTP/1.1\r\nHost: example.com\r\n\r\n", i))
		if resp, body := c.response(t, "GET"); resp.StatusCode != 200 || !strings.HasPrefix(body, "http upstream") {
			t.Fatalf("through the tunnel: %s %q", resp.Status, body)
		}
	}
	var held int
	waitFor(t, "splice pipes to be released", func() bool {
		held = settle() - baseline
		return held <= 4 // a pipe pair or two may still sit in the pool
	})
	t.Logf("%d idle tunnels hold %d pipe descriptors", tunnels, held)
}
