package proxy

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// originalDst returns where a connection redirected by iptables REDIRECT
// or nftables redirect was going: netfilter's conntrack answers
// getsockopt(SO_ORIGINAL_DST) at SOL_IP for IPv4 and at SOL_IPV6 for IPv6
// (where the kernel calls it IP6T_SO_ORIGINAL_DST; the number is the same). For a connection that
// was not redirected it answers the connection's own local address.
func originalDst(c net.Conn) (netip.AddrPort, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return netip.AddrPort{}, errors.New("original destination: not a socket")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	ipv4 := addrOf(c.LocalAddr()).Is4()
	var ap netip.AddrPort
	var sockErr error
	err = raw.Control(func(fd uintptr) {
		if ipv4 {
			var sa unix.RawSockaddrInet4
			sockErr = getsockopt(int(fd), unix.SOL_IP, unix.SO_ORIGINAL_DST, unsafe.Pointer(&sa), unsafe.Sizeof(sa))
			ap = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), portFromNetwork(sa.Port))
			return
		}
		var sa unix.RawSockaddrInet6
		sockErr = getsockopt(int(fd), unix.SOL_IPV6, unix.SO_ORIGINAL_DST, unsafe.Pointer(&sa), unsafe.Sizeof(sa))
		ap = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), portFromNetwork(sa.Port))
	})
	if err == nil {
		err = sockErr
	}
	if err != nil {
		return netip.AddrPort{}, &net.OpError{Op: "getsockopt SO_ORIGINAL_DST", Net: "tcp", Addr: c.LocalAddr(), Err: err}
	}
	return ap, nil
}

// portFromNetwork reads a sockaddr port, which the kernel stores in
// network byte order.
func portFromNetwork(p uint16) uint16 {
	return binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&p))[:])
}

// getsockopt fills the struct at p; x/sys/unix has no typed getter for a
// sockaddr-valued option.
func getsockopt(fd, level, name int, p unsafe.Pointer, size uintptr) error {
	l := uint32(size)
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(name), uintptr(p), uintptr(unsafe.Pointer(&l)), 0)
	if errno != 0 {
		return errno
	}
	return nil
}
