package dns

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/hashicorp/golang-lru/v2/simplelru"
)

const (
	// SetsRefresh is how often, at most, the table's sets are listed
	// again when an answer names a set egret does not know (the table was
	// reloaded with other products, or loaded after egret started).
	SetsRefresh = 5 * time.Second
	// maxPromises bounds the set elements whose timeout Sets remembers.
	maxPromises = 65536
)

// Sets adds answered addresses to the sets of one nftables table (family
// inet), over netlink. Each element gets the answer's TTL as its timeout,
// and never a shorter one than an earlier answer gave it: an address that
// one client may use for 300 s is not cut to 10 s because another asked
// later. Only sets that exist in the loaded table and have the timeout
// flag are written (an element without a timeout would stay for ever).
// It is safe for concurrent use.
type Sets struct {
	table *nftables.Table
	conn  *nftables.Conn
	now   func() time.Time

	mu       sync.Mutex
	sets     map[string]*nftables.Set
	listed   time.Time
	warned   map[string]bool
	promised *simplelru.LRU[promise, time.Time]
}

type promise struct {
	set  string
	addr netip.Addr
}

// OpenSets opens a netlink connection, in the network namespace of the
// calling thread, to fill the sets of table inet NAME. It fails only when
// netlink cannot be opened; a table that is not loaded yet is looked for
// again on later answers (see Check).
func OpenSets(table string) (*Sets, error) {
	conn, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return nil, fmt.Errorf("nft sets: netlink: %w", err)
	}
	promised, _ := simplelru.NewLRU[promise, time.Time](maxPromises, nil)
	return &Sets{
		table: &nftables.Table{Name: table, Family: nftables.TableFamilyINet},
		conn:  conn, now: time.Now, warned: map[string]bool{}, promised: promised,
	}, nil
}

// Close closes the netlink connection.
func (s *Sets) Close() error { return s.conn.CloseLasting() }

// Check lists the table's sets now and returns how many there are, or
// why it cannot (the table is not loaded).
func (s *Sets) Check() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.list(s.now()); err != nil {
		return 0, err
	}
	return len(s.sets), nil
}

// list reads the table's sets.
func (s *Sets) list(now time.Time) error {
	s.listed = now
	sets, err := s.conn.GetSets(s.table)
	if err != nil {
		s.sets = nil
		return fmt.Errorf("nft sets: table inet %s: %w (load `egret export --format nftables` first)", s.table.Name, err)
	}
	s.sets = make(map[string]*nftables.Set, len(sets))
	for _, set := range sets {
		s.sets[set.Name] = set
	}
	return nil
}

// set returns the named set, listing the table again on a miss at most
// once per SetsRefresh.
func (s *Sets) set(name string, now time.Time) (*nftables.Set, error) {
	if set := s.sets[name]; set != nil {
		return set, nil
	}
	if now.Sub(s.listed) < SetsRefresh {
		return nil, nil
	}
	if err := s.list(now); err != nil {
		return nil, err
	}
	return s.sets[name], nil
}

// Add adds addrs to each named set of their family with timeout ttl, in
// one netlink transaction. A name the table has no set of is skipped.
// Each element is added, deleted and added again within the transaction,
// so that an element already there takes the new timeout whatever the
// kernel's version, with no moment where it is missing.
func (s *Sets) Add(names []string, addrs []netip.Addr, ttl time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var errs []error
	batched := 0
	for _, name := range names {
		set, err := s.set(name, now)
		if err != nil {
			errs = append(errs, err)
			break
		}
		if set == nil {
			continue
		}
		if !set.HasTimeout {
			if !s.warned[name] {
				s.warned[name] = true
				errs = append(errs, fmt.Errorf("nft sets: set %s of table inet %s has no timeout flag: not filled", name, s.table.Name))
			}
			continue
		}
		elems := s.elements(set, addrs, ttl, now)
		if len(elems) == 0 {
			continue
		}
		if err := errors.Join(s.conn.SetAddElements(set, elems), s.conn.SetDeleteElements(set, elems),
			s.conn.SetAddElements(set, elems)); err != nil {
			errs = append(errs, err)
			continue
		}
		batched++
	}
	if batched > 0 {
		if err := s.conn.Flush(); err != nil {
			s.listed = time.Time{} // the table changed under us: list it on the next answer
			s.sets = nil
			errs = append(errs, fmt.Errorf("nft sets: table inet %s: %w", s.table.Name, err))
		}
	}
	return errors.Join(errs...)
}

// elements are the set elements for the addresses of set's family, each
// with the longer of ttl and what an earlier answer promised it.
func (s *Sets) elements(set *nftables.Set, addrs []netip.Addr, ttl time.Duration, now time.Time) []nftables.SetElement {
	var out []nftables.SetElement
	for _, a := range addrs {
		var key []byte
		switch {
		case a.Is4() && set.KeyType.Bytes == 4:
			b := a.As4()
			key = b[:]
		case a.Is6() && set.KeyType.Bytes == 16:
			b := a.As16()
			key = b[:]
		default:
			continue
		}
		p := promise{set.Name, a}
		timeout := ttl
		if until, ok := s.promised.Get(p); ok && until.Sub(now) > timeout {
			timeout = until.Sub(now).Round(time.Second)
		}
		s.promised.Add(p, now.Add(timeout))
		out = append(out, nftables.SetElement{Key: key, Timeout: timeout})
	}
	return out
}
