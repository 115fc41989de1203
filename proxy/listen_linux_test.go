package proxy

import (
	"net"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// Connections accepted from Listen have keepalive on with the listener's
// settings (inherited by the kernel, since Go is told not to set them),
// on both the explicit-style and the transparent listeners.
func TestListenKeepAliveInherited(t *testing.T) {
	for _, network := range []string{"tcp", "tcp4"} {
		l, err := Listen(network, "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		a, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		raw, err := a.(syscall.Conn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range keepAlive {
			var got int
			var getErr error
			raw.Control(func(fd uintptr) { got, getErr = unix.GetsockoptInt(int(fd), o.level, o.opt) })
			if getErr != nil || got != o.value {
				t.Errorf("%s: accepted socket option %d/%d = %d (%v), want %d", network, o.level, o.opt, got, getErr, o.value)
			}
		}
	}
}
