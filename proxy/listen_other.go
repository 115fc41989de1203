//go:build !linux

package proxy

import "net"

// Elsewhere Go sets keepalive on each accepted connection.
var listenConfig = net.ListenConfig{}
