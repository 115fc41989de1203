//go:build !linux

package dns

import (
	"errors"
	"net/netip"
	"time"
)

// Sets fills nftables sets; it exists on Linux only.
type Sets struct{}

// OpenSets fails: nftables is Linux's.
func OpenSets(table string) (*Sets, error) {
	return nil, errors.New("nft sets: nftables needs Linux")
}

// Close does nothing.
func (s *Sets) Close() error { return nil }

// Check fails: see OpenSets.
func (s *Sets) Check() (int, error) { return 0, errors.New("nft sets: nftables needs Linux") }

// Add fails: see OpenSets.
func (s *Sets) Add([]string, []netip.Addr, time.Duration) error {
	return errors.New("nft sets: nftables needs Linux")
}
