//go:build !linux

package proxy

import (
	"errors"
	"net"
	"net/netip"
)

// originalDst needs Linux netfilter; elsewhere the transparent listener
// cannot learn where a connection was going and refuses it.
func originalDst(net.Conn) (netip.AddrPort, error) {
	return netip.AddrPort{}, errors.New("original destination: transparent mode needs Linux netfilter")
}
