//go:build !linux

package bench

import "errors"

var errLinuxOnly = errors.New("network namespaces and CPU pinning need Linux")

// InNetns runs fn; only an empty name works outside Linux.
func InNetns(name string, fn func() error) error {
	if name != "" {
		return errLinuxOnly
	}
	return fn()
}

// PinToCPU needs Linux.
func PinToCPU(pid, cpu int) error { return errLinuxOnly }
