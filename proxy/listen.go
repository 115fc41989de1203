package proxy

import (
	"context"
	"net"
)

// Listen opens a TCP listener whose accepted connections have TCP
// keepalive on (idle 15s, interval 15s, 9 probes: Go's defaults), so a
// peer that vanished is noticed. Where the kernel lets accepted sockets
// inherit these options (Linux), they are set once on the listening socket
// and Go is told not to set them again on every connection: four
// setsockopt calls fewer per accept, a quarter of the system calls of a
// denied CONNECT.
func Listen(network, addr string) (net.Listener, error) {
	return listenConfig.Listen(context.Background(), network, addr)
}
