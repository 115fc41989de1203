//go:build !linux

package proxy

import "net"

// pending is the Linux wait-before-splice; elsewhere tunnels copy without
// waiting first.
func pending(net.Conn) (int, bool, error) { return 0, false, nil }
