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
	p.n, p.err = 0, nil
	if err := p.raw.Read(p.check); err != nil {
		return 0, true, err
	}
	return p.n, true, p.err
}

// queued is the netpoller's callback: false means "wait for readability,
// then ask again".
func (p *probe) queued(fd uintptr) bool {
	p.n, p.err = unix.IoctlGetInt(int(fd), unix.SIOCINQ)
	if p.err != nil || p.n > 0 {
		return true
	}
	// Nothing queued: the end of the stream, or nothing yet. recvfrom(2)
	// without an address to fill in (unix.Recvfrom would allocate one);
	// MSG_DONTWAIT: it never blocks, so the raw call is enough.
	m, _, errno := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&p.peek[0])), 1,
		unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	switch {
	case errno == 0 && m == 0: // end of stream
		return true
	case errno == unix.EAGAIN:
		return false // wait in the netpoller (deadline included)
	case errno != 0:
		p.err = errno
		return true
	}
	p.n = int(m) // arrived between the two calls
	return true
}
