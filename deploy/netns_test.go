package deploy_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// requireTools skips the test when a tool it needs is missing (the name
// "root" stands for running as root), and fails it under CI, which runs
// as root and installs them (.ci/run).
func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	var missing []string
	for _, tool := range tools {
		if tool == "root" {
			if os.Geteuid() != 0 {
				missing = append(missing, tool)
			}
		} else if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("CI: missing %v (installed by .ci/run)", missing)
	}
	t.Skipf("missing %v", missing)
}

var netnsSeq atomic.Int32

// netns is a network namespace the test created; it is deleted in
// t.Cleanup, with every interface in it.
type netns struct {
	t    *testing.T
	name string
}

func newNetns(t *testing.T) *netns {
	t.Helper()
	n := &netns{t: t, name: fmt.Sprintf("egret-t%d-%d", os.Getpid(), netnsSeq.Add(1))}
	if out, err := command("ip", "netns", "add", n.name); err != nil {
		t.Fatalf("ip netns add %s: %v\n%s", n.name, err, out)
	}
	t.Cleanup(func() {
		if out, err := command("ip", "netns", "del", n.name); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", n.name, err, out)
		}
	})
	n.run("ip", "link", "set", "lo", "up")
	return n
}

// command runs a command with a time limit and returns its combined output.
func command(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// try runs a command inside the namespace.
func (n *netns) try(args ...string) (string, error) {
	return command("ip", append([]string{"netns", "exec", n.name}, args...)...)
}

// run runs a command inside the namespace and fails the test if it fails.
func (n *netns) run(args ...string) string {
	n.t.Helper()
	out, err := n.try(args...)
	if err != nil {
		n.t.Fatalf("in %s: %s: %v\n%s", n.name, strings.Join(args, " "), err, out)
	}
	return out
}

// inside runs fn on an OS thread moved into the namespace, so that the
// sockets fn creates belong to it. The thread is thrown away afterwards
// (the goroutine exits still locked), so no other goroutine ever runs in
// the namespace by accident.
func (n *netns) inside(fn func()) {
	n.t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open("/run/netns/" + n.name)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", n.name, err)
			return
		}
		fn()
		errc <- nil
	}()
	if err := <-errc; err != nil {
		n.t.Fatal(err)
	}
}

// listen opens a TCP listener inside the namespace.
func (n *netns) listen(addr string) *net.TCPListener {
	n.t.Helper()
	var l net.Listener
	var err error
	n.inside(func() { l, err = net.Listen("tcp", addr) })
	if err != nil {
		n.t.Fatalf("listen %s in %s: %v", addr, n.name, err)
	}
	n.t.Cleanup(func() { l.Close() })
	return l.(*net.TCPListener)
}

// dial connects from inside the namespace as root and writes a line.
func (n *netns) dial(addr string) {
	n.t.Helper()
	var err error
	n.inside(func() {
		var c net.Conn
		if c, err = net.DialTimeout("tcp", addr, 5*time.Second); err == nil {
			_, err = c.Write([]byte("hello\n"))
			c.Close()
		}
	})
	if err != nil {
		n.t.Fatalf("dial %s in %s: %v", addr, n.name, err)
	}
}

// dialAs connects from inside the namespace as uid (and gid) and writes a
// line, in a separate process: the owner match looks at the socket's uid.
func (n *netns) dialAs(uid int, host, port string) {
	n.t.Helper()
	script := fmt.Sprintf("exec 3<>/dev/tcp/%s/%s && echo hello >&3", host, port)
	n.run("setpriv", fmt.Sprintf("--reuid=%d", uid), fmt.Sprintf("--regid=%d", uid), "--clear-groups",
		"bash", "-c", script)
}

// accepts reports whether l accepts a connection within a few seconds.
// Accepted connections are drained and closed.
func accepts(t *testing.T, l *net.TCPListener) bool {
	t.Helper()
	l.SetDeadline(time.Now().Add(3 * time.Second))
	c, err := l.Accept()
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	if err != nil {
		t.Fatalf("accept on %s: %v", l.Addr(), err)
	}
	c.Close()
	return true
}

// none reports whether l has no connection waiting.
func none(l *net.TCPListener) bool {
	l.SetDeadline(time.Now().Add(50 * time.Millisecond))
	c, err := l.Accept()
	if err == nil {
		c.Close()
		return false
	}
	return true
}

// listenUDP opens a UDP socket inside the namespace.
func (n *netns) listenUDP(addr string) *net.UDPConn {
	n.t.Helper()
	var c net.PacketConn
	var err error
	n.inside(func() { c, err = net.ListenPacket("udp", addr) })
	if err != nil {
		n.t.Fatalf("listen udp %s in %s: %v", addr, n.name, err)
	}
	n.t.Cleanup(func() { c.Close() })
	return c.(*net.UDPConn)
}

// sendUDP sends one datagram from inside the namespace as root.
func (n *netns) sendUDP(addr string) {
	n.t.Helper()
	var err error
	n.inside(func() {
		var c net.Conn
		if c, err = net.Dial("udp", addr); err == nil {
			_, err = c.Write([]byte("query\n"))
			c.Close()
		}
	})
	if err != nil {
		n.t.Fatalf("send udp %s in %s: %v", addr, n.name, err)
	}
}

// sendUDPAs sends one datagram from inside the namespace as uid (and
// gid), in a separate process, as dialAs connects.
func (n *netns) sendUDPAs(uid int, host, port string) {
	n.t.Helper()
	script := fmt.Sprintf("echo query >/dev/udp/%s/%s", host, port)
	n.run("setpriv", fmt.Sprintf("--reuid=%d", uid), fmt.Sprintf("--regid=%d", uid), "--clear-groups",
		"bash", "-c", script)
}

// receives reports whether c gets a datagram within a few seconds.
func receives(t *testing.T, c *net.UDPConn) bool {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 512)
	_, _, err := c.ReadFrom(buf)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	if err != nil {
		t.Fatalf("read on %s: %v", c.LocalAddr(), err)
	}
	return true
}

// silent reports whether c has no datagram waiting.
func silent(c *net.UDPConn) bool {
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	buf := make([]byte, 512)
	_, _, err := c.ReadFrom(buf)
	return err != nil
}
