package proxy

import (
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
