//go:build !linux

package proxy

import (
	"errors"
	"net"
)

// Elsewhere Go sets keepalive on each accepted connection.
var listenConfig = net.ListenConfig{}

// listenTProxy needs Linux's IP_TRANSPARENT.
func listenTProxy(string, string) (net.Listener, error) {
	return nil, errors.New("a TPROXY listener needs Linux (IP_TRANSPARENT)")
}
