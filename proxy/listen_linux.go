package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// keepAlive is what accepted connections inherit from the listening socket.
var keepAlive = []struct{ level, opt, value int }{
	{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
	{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 15},
	{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 15},
	{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, 9},
}

var listenConfig = net.ListenConfig{
	KeepAlive: -1, // set on the listener instead, below
	Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		ctlErr := c.Control(func(fd uintptr) {
			for _, o := range keepAlive {
				if err = unix.SetsockoptInt(int(fd), o.level, o.opt, o.value); err != nil {
					return
				}
			}
		})
		if ctlErr != nil {
			return ctlErr
		}
		return err
	},
}

// listenTProxy is Listen with IP_TRANSPARENT (IPV6_TRANSPARENT on an IPv6
// socket) set before bind. Such a socket accepts the connections a TPROXY
// rule hands it whatever address they were sent to, and each accepted
// socket keeps that address as its own. The kernel allows the option only
// with CAP_NET_ADMIN or CAP_NET_RAW.
func listenTProxy(network, addr string) (net.Listener, error) {
	lc := listenConfig
	lc.Control = func(network, address string, c syscall.RawConn) error {
		if err := listenConfig.Control(network, address, c); err != nil {
			return err
		}
		level, opt, name := unix.SOL_IP, unix.IP_TRANSPARENT, "IP_TRANSPARENT"
		if network == "tcp6" {
			level, opt, name = unix.SOL_IPV6, unix.IPV6_TRANSPARENT, "IPV6_TRANSPARENT"
		}
		var err error
		if ctlErr := c.Control(func(fd uintptr) { err = unix.SetsockoptInt(int(fd), level, opt, 1) }); ctlErr != nil {
			return ctlErr
		}
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("setsockopt %s: %w (a TPROXY listener needs CAP_NET_ADMIN or CAP_NET_RAW)", name, err)
		}
		if err != nil {
			return fmt.Errorf("setsockopt %s: %w", name, err)
		}
		return nil
	}
	return lc.Listen(context.Background(), network, addr)
}
