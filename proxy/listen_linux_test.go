package proxy

import (
	"io"
	"net"
	"syscall"
	"testing"
	"time"

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

// TestProbeNoAllocs: asking a tunnel's socket what is queued, in both of
// the probe's outcomes (bytes queued; the end of the stream), allocates
// nothing: a tunnel asks before every burst.
func TestProbeNoAllocs(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := newProbe(c)
	if p == nil {
		t.Fatal("no probe for a TCP connection")
	}
	peer.Write([]byte("0123456789"))
	waitFor(t, "the bytes to arrive", func() bool { n, _, _ := p.pending(); return n == 10 })
	if a := testing.AllocsPerRun(1000, func() { p.pending() }); a != 0 {
		t.Errorf("pending with bytes queued: %.1f allocations, want 0", a)
	}
	io.ReadFull(c, make([]byte, 10))
	peer.(*net.TCPConn).CloseWrite()
	waitFor(t, "the end of stream", func() bool { n, ok, err := p.pending(); return ok && n == 0 && err == nil })
	if a := testing.AllocsPerRun(1000, func() { p.pending() }); a != 0 {
		t.Errorf("pending at the end of stream: %.1f allocations, want 0", a)
	}
	if n, ok, err := p.pending(); n != 0 || !ok || err != nil {
		t.Errorf("at the end of stream: %d %v %v", n, ok, err)
	}
}

// TestProbeOutcomes: each way a check can go, with the peek first (straight
// after a burst) and the count first (after a wake-up). The end of the
// stream that comes with the last bytes is seen without waiting for a
// readiness event that will not come.
func TestProbeOutcomes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pair := func() (peer *net.TCPConn, c net.Conn, p *probe) {
		d, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c, err = ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close(); c.Close() })
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		return d.(*net.TCPConn), c, newProbe(c)
	}
	check := func(what string, p *probe, want int) {
		t.Helper()
		if n, ok, err := p.pending(); n != want || !ok || err != nil {
			t.Errorf("%s: pending = %d, %v, %v; want %d", what, n, ok, err, want)
		}
	}

	peer, c, p := pair()
	go func(peer *net.TCPConn) { time.Sleep(50 * time.Millisecond); peer.Write([]byte("later")) }(peer)
	check("bytes after a wait", p, 5)
	io.ReadFull(c, make([]byte, 5))
	go func(peer *net.TCPConn) { time.Sleep(50 * time.Millisecond); peer.CloseWrite() }(peer)
	check("the end after a wait", p, 0)

	peer2, c, p := pair()
	peer2.Write([]byte("0123456789"))
	peer2.CloseWrite()
	waitFor(t, "the bytes and the end to arrive", func() bool {
		return p.peeked(socketFD(t, c)) && p.n == 1
	})
	check("bytes queued with the end behind them", p, 10)
	io.ReadFull(c, make([]byte, 10))
	check("the end that came with the last bytes", p, 0)
}

func socketFD(t *testing.T, c net.Conn) uintptr {
	raw, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd uintptr
	raw.Control(func(f uintptr) { fd = f })
	return fd
}
