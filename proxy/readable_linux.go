package proxy

import (
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// probe asks a tunnel's source socket, without reading it, how many bytes
// are queued. It lets a tunnel splice exactly what is there: Go's splice
// takes a pipe pair (two descriptors) for the whole of a call and waits for
// data while holding it, so an idle tunnel would hold four descriptors
// more than its two sockets. Waiting in the probe first, in the netpoller,
// holds none.
//
// One probe serves one direction of one tunnel: the socket's RawConn and
// the check the netpoller calls back are made once, so asking costs no
// allocation per burst.
type probe struct {
	raw   syscall.RawConn
	check func(fd uintptr) bool
	n     int
	err   error
	woken bool // the netpoller has seen the socket readable since pending began
	peek  [1]byte
}

// newProbe returns the probe of c, nil when c is not a socket egret can
// ask (TLS, a PROXY protocol Conn); the caller then copies without waiting
// first.
func newProbe(c net.Conn) *probe {
	sc, isSocket := c.(syscall.Conn)
	if !isSocket {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	p := &probe{raw: raw}
	p.check = p.queued
	return p
}

// pending waits until the socket has bytes to read or has reached its end,
// and says how many bytes are queued (0 at end of stream). ok is false for
// a nil probe.
func (p *probe) pending() (n int, ok bool, err error) {
	if p == nil {
		return 0, false, nil
	}
	p.n, p.err, p.woken = 0, nil, false
	if err := p.raw.Read(p.check); err != nil {
		return 0, true, err
	}
	return p.n, true, p.err
}

// queued is the netpoller's callback: false means "wait for readability,
// then ask again". Its first call comes straight after a burst (or at the
// tunnel's start), when usually nothing is queued yet: one peek says so
// (EAGAIN), and also tells the end of the stream, without the count.
// After a wake-up bytes are usually there, so it asks for the count
// first. That is one system call per check in the common cases, not two.
func (p *probe) queued(fd uintptr) bool {
	if !p.woken {
		p.woken = true // every later call follows a readiness event
		if done := p.peeked(fd); done && p.n == 0 {
			return true // the end of the stream, or an error
		} else if !done {
			return false
		}
		// Bytes are queued: count them.
	}
	p.n, p.err = unix.IoctlGetInt(int(fd), unix.SIOCINQ)
	if p.err != nil || p.n > 0 {
		return true
	}
	// Nothing queued after a wake-up: the end of the stream, or a
	// readiness the bytes have not followed yet.
	return p.peeked(fd)
}

// peeked looks at the socket without taking anything: false means nothing
// is there yet. Otherwise p.n is 1 for bytes queued (their count unknown)
// and 0 for the end of the stream or an error (p.err). The recvfrom(2) has
// no address to fill in (unix.Recvfrom would allocate one) and, with
// MSG_DONTWAIT, never blocks, so the raw call is enough.
func (p *probe) peeked(fd uintptr) bool {
	m, _, errno := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&p.peek[0])), 1,
		unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	switch {
	case errno == unix.EAGAIN:
		return false // wait in the netpoller (deadline included)
	case errno != 0:
		p.n, p.err = 0, errno
	default:
		p.n = int(m) // 1: bytes queued; 0: the end of the stream
	}
	return true
}
