package dns

import (
	"net/netip"
	"sync"
	"time"

	"github.com/egret-proxy/egret/proxy"
	"github.com/hashicorp/golang-lru/v2/simplelru"
)

var _ proxy.DNSAnswers = (*Answers)(nil)

const (
	// DefaultAnswerNames bounds how many names Answers remembers; the
	// least recently answered go first.
	DefaultAnswerNames = 16384
	// maxAddrsPerName bounds the addresses remembered for one name.
	maxAddrsPerName = 32
	// AnswerGrace is how long past its TTL an answer is remembered:
	// clients keep answers a little longer than they should (Java caches
	// 30 s whatever the TTL), and a connection may start just after the
	// TTL ran out.
	AnswerGrace = 60 * time.Second
)

// Answers is what the door handed out: for each name, the addresses of
// its answers, each until its TTL (plus AnswerGrace) runs out. It is
// bounded (DefaultAnswerNames names, 32 addresses each) and safe for
// concurrent use. It implements proxy.DNSAnswers.
type Answers struct {
	mu  sync.Mutex
	lru *simplelru.LRU[string, []remembered]
	now func() time.Time
}

type remembered struct {
	addr  netip.Addr
	until time.Time
}

// NewAnswers remembers at most names names (DefaultAnswerNames if not
// positive).
func NewAnswers(names int) *Answers {
	if names <= 0 {
		names = DefaultAnswerNames
	}
	l, _ := simplelru.NewLRU[string, []remembered](names, nil) // only a size below 1 fails
	return &Answers{lru: l, now: time.Now}
}

// Add remembers that addrs were answered for name (normalised) with ttl.
func (a *Answers) Add(name string, addrs []netip.Addr, ttl time.Duration) {
	now := a.now()
	until := now.Add(ttl + AnswerGrace)
	a.mu.Lock()
	defer a.mu.Unlock()
	old, _ := a.lru.Get(name)
	list := make([]remembered, 0, min(len(old)+len(addrs), maxAddrsPerName))
	for _, r := range old {
		if r.until.After(now) && !containsAddr(addrs, r.addr) {
			list = append(list, r)
		}
	}
	for _, ad := range addrs {
		if len(list) == maxAddrsPerName {
			list = list[1:] // the oldest answer goes first
		}
		list = append(list, remembered{addr: ad.Unmap(), until: until})
	}
	a.lru.Add(name, list)
}

// Answered reports whether ip was in an answer for name that has not run
// out.
func (a *Answers) Answered(name string, ip netip.Addr) bool {
	ip = ip.Unmap()
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	list, _ := a.lru.Peek(name)
	for _, r := range list {
		if r.addr == ip && r.until.After(now) {
			return true
		}
	}
	return false
}

// Len returns how many names are remembered.
func (a *Answers) Len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lru.Len()
}

func containsAddr(list []netip.Addr, a netip.Addr) bool {
	for _, b := range list {
		if b.Unmap() == a {
			return true
		}
	}
	return false
}
