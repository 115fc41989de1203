package proxy

import (
	"net"
	"time"
)

func netDial(addr string) (net.Conn, error) {
	c, err := net.Dial("tcp", addr)
	if err == nil {
		c.SetDeadline(time.Now().Add(10 * time.Second))
	}
	return c, err
}
