package proxy

import (
	"errors"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// pending waits, without reading, until c has bytes to read or has reached
// its end, and says how many bytes are queued (0 at end of stream). It
// lets a tunnel splice exactly what is there: Go's splice takes a pipe
// pair (two descriptors) for the whole of a call and waits for data while
// holding it, so an idle tunnel would hold four descriptors more than its
// two sockets. Waiting here first, in the netpoller, holds none.
//
// ok is false when c is not a socket egret can ask; the caller then copies
// without waiting first.
func pending(c net.Conn) (n int, ok bool, err error) {
	sc, isSocket := c.(syscall.Conn)
	if !isSocket {
		return 0, false, nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0, false, nil
	}
	var peek [1]byte
	var opErr error
	err = raw.Read(func(fd uintptr) bool {
		n, opErr = unix.IoctlGetInt(int(fd), unix.SIOCINQ)
		if opErr != nil || n > 0 {
			return true
		}
		// Nothing queued: the end of the stream, or nothing yet.
		m, _, perr := unix.Recvfrom(int(fd), peek[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		switch {
		case perr == nil && m == 0: // end of stream
			return true
		case errors.Is(perr, unix.EAGAIN):
			return false // wait in the netpoller (deadline included)
		case perr != nil:
			opErr = perr
			return true
		}
		n = m // arrived between the two calls
		return true
	})
	if err == nil {
		err = opErr
	}
	return n, true, err
}
