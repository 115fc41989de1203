// Package review reads decision logs (DESIGN §7) and tells, per product,
// what was denied and the rule that would allow it, which rules matched
// nothing and which wildcards matched only a few names. It streams: the
// memory it holds grows with the number of distinct destinations and
// rules (both capped), never with the number of lines.
package review

import (
	"fmt"
	"strconv"
	"time"
)

// Caps on what an aggregator tracks, so that a hostile or enormous log
// cannot exhaust memory. Lines beyond them are counted as Untracked.
const (
	maxDestinations = 100_000 // denied (product, reason, host, port, path) entries
	maxRuleKeys     = 100_000 // (product, rule) entries seen on allow lines
	maxProducts     = 1_000
	maxMalformedAt  = 5 // malformed lines whose place is remembered
	// fewNames is how many distinct names a wildcard may match and still
	// be a candidate to narrow.
	fewNames = 3
)

// Filter selects the lines a review counts.
type Filter struct {
	Since    time.Time // lines at or after Since; zero: from the start
	Until    time.Time // lines before Until; zero: to the end
	Products []string  // only these products; empty: every product
}

// Stats counts the lines read.
type Stats struct {
	Lines       int      `json:"lines"`        // non-empty lines read
	Decisions   int      `json:"decisions"`    // decision lines in the period and products
	Allows      int      `json:"allows"`       // of those, allow lines
	Denies      int      `json:"denies"`       // of those, deny and would-deny lines
	Skipped     int      `json:"skipped"`      // decision lines outside the period or products
	Malformed   int      `json:"malformed"`    // lines that are no decision-log line
	MalformedAt []string `json:"malformed_at"` // file:line: why, for the first few
	Untracked   int      `json:"untracked"`    // lines past the caps on distinct destinations or rules
}

// Aggregator accumulates decision-log lines. The zero value is not usable;
// call NewAggregator.
type Aggregator struct {
	filter   Filter
	wanted   map[string]bool
	products map[string]*productAgg
	tl       timeline
	dests    int // tracked destinations, all products
	ruleKeys int
	first    time.Time
	last     time.Time
	stats    Stats
	parser   lineParser
	keyBuf   []byte // destKey.encode's buffer, reused line after line
}

type productAgg struct {
	denied map[string]*destAgg // keyed by destKey.encode
	rules  map[string]*ruleAgg // keyed by the rule as logged
}

// destKey is one denied destination of a product. path is set only for
// reason "path" (the first segment of the denied path).
type destKey struct {
	reason string
	host   string
	port   int
	path   string
}

type destAgg struct {
	key         destKey
	count       int
	first, last time.Time
	buckets     buckets
}

// ruleAgg is what the allow lines say about one rule: how often it
// allowed, and the first few distinct names it allowed.
type ruleAgg struct {
	hits  int
	names []string // at most fewNames+1
}

// NewAggregator returns an aggregator that counts the lines f selects.
func NewAggregator(f Filter) *Aggregator {
	a := &Aggregator{filter: f, products: map[string]*productAgg{}, stats: Stats{MalformedAt: []string{}}}
	if len(f.Products) > 0 {
		a.wanted = map[string]bool{}
		for _, p := range f.Products {
			a.wanted[p] = true
			a.product([]byte(p))
		}
	}
	return a
}

// Stats returns the counts so far.
func (a *Aggregator) Stats() Stats { return a.stats }

func (a *Aggregator) malformed(name string, line int, why string) { a.stats.malformed(name, line, why) }

// malformed counts a line that is no decision-log line, and remembers
// where the first few are.
func (s *Stats) malformed(name string, line int, why string) {
	s.Malformed++
	if len(s.MalformedAt) < maxMalformedAt {
		s.MalformedAt = append(s.MalformedAt, fmt.Sprintf("%s:%d: %s", name, line, why))
	}
}

// addLine counts one line of the log called name.
func (a *Aggregator) addLine(name string, lineNo int, line []byte) {
	a.stats.Lines++
	r, err := a.parser.parse(line)
	if err != nil {
		a.malformed(name, lineNo, err.Error())
		return
	}
	if string(r.msg) != "decision" {
		return // close lines repeat their decision line
	}
	switch string(r.decision) {
	case "allow", "deny", "would-deny":
	default:
		a.malformed(name, lineNo, fmt.Sprintf("decision %q is not allow, deny or would-deny", r.decision))
		return
	}
	if !a.inPeriod(r.time) {
		a.stats.Skipped++
		return
	}
	if string(r.decision) == "allow" {
		a.addAllow(r)
	} else {
		a.addDeny(r)
	}
}

func (a *Aggregator) inPeriod(t time.Time) bool {
	return (a.filter.Since.IsZero() || !t.Before(a.filter.Since)) &&
		(a.filter.Until.IsZero() || t.Before(a.filter.Until))
}

// counted notes a decision line that passed the filters.
func (a *Aggregator) counted(t time.Time) {
	a.stats.Decisions++
	if a.first.IsZero() || t.Before(a.first) {
		a.first = t
	}
	if t.After(a.last) {
		a.last = t
	}
}

// product returns the aggregate of a product, creating it; nil past the
// cap on products.
func (a *Aggregator) product(name []byte) *productAgg {
	if p, ok := a.products[string(name)]; ok { // no allocation to look up
		return p
	}
	if len(a.products) >= maxProducts {
		return nil
	}
	p := &productAgg{denied: map[string]*destAgg{}, rules: map[string]*ruleAgg{}}
	a.products[string(name)] = p
	return p
}

func (a *Aggregator) wants(product []byte) bool {
	return a.wanted == nil || a.wanted[string(product)]
}

// addAllow records the rule that allowed, under the product it belongs
// to, and makes the identity's other products known (their rules may
// have matched nothing).
func (a *Aggregator) addAllow(r *record) {
	if !a.wants(r.product) && !a.wantsAny(r.products) {
		a.stats.Skipped++
		return
	}
	a.counted(r.time)
	a.stats.Allows++
	for _, name := range r.products {
		if a.wants(name) {
			a.product(name)
		}
	}
	if !a.wants(r.product) || len(r.rule) == 0 {
		return
	}
	p := a.product(r.product)
	if p == nil {
		a.stats.Untracked++
		return
	}
	ra, ok := p.rules[string(r.rule)]
	if !ok {
		if a.ruleKeys >= maxRuleKeys {
			a.stats.Untracked++
			return
		}
		a.ruleKeys++
		ra = &ruleAgg{}
		p.rules[string(r.rule)] = ra
	}
	ra.hits++
	if len(ra.names) <= fewNames && !contains(ra.names, r.host) {
		ra.names = append(ra.names, string(r.host))
	}
}

func (a *Aggregator) wantsAny(names [][]byte) bool {
	for _, n := range names {
		if a.wants(n) {
			return true
		}
	}
	return false
}

// addDeny attributes a denied destination to each of the identity's
// products: the client needed it and none of them allowed it. A client
// with no products is counted under the product "".
func (a *Aggregator) addDeny(r *record) {
	names := r.products
	if len(names) == 0 {
		names = [][]byte{nil}
	}
	if !a.wantsAny(names) {
		a.stats.Skipped++
		return
	}
	a.counted(r.time)
	a.stats.Denies++
	s := r.time.Unix()
	if !a.tl.covers(s) {
		a.regrow(s)
	}
	bucket := a.tl.index(s)
	for _, name := range names {
		if !a.wants(name) {
			continue
		}
		d := a.dest(name, r)
		if d == nil {
			a.stats.Untracked++
			continue
		}
		d.count++
		if d.first.IsZero() || r.time.Before(d.first) {
			d.first = r.time
		}
		if r.time.After(d.last) {
			d.last = r.time
		}
		d.buckets[bucket]++
	}
}

// dest finds or creates the denied destination of r under a product.
func (a *Aggregator) dest(product []byte, r *record) *destAgg {
	p := a.product(product)
	if p == nil {
		return nil
	}
	var path []byte
	if string(r.reason) == "path" {
		path = firstSegment(r.path)
	}
	// The key is built in a reused buffer: looking it up allocates nothing.
	a.keyBuf = append(a.keyBuf[:0], r.reason...)
	a.keyBuf = append(a.keyBuf, 0)
	a.keyBuf = append(a.keyBuf, r.host...)
	a.keyBuf = append(a.keyBuf, 0)
	a.keyBuf = strconv.AppendInt(a.keyBuf, int64(r.port), 10)
	a.keyBuf = append(a.keyBuf, 0)
	a.keyBuf = append(a.keyBuf, path...)
	if d, ok := p.denied[string(a.keyBuf)]; ok {
		return d
	}
	if a.dests >= maxDestinations {
		return nil
	}
	a.dests++
	d := &destAgg{key: destKey{reason: string(r.reason), host: string(r.host), port: r.port, path: string(path)}}
	p.denied[string(a.keyBuf)] = d
	return d
}

// regrow widens the shared timeline to cover Unix second s.
func (a *Aggregator) regrow(s int64) {
	remap := a.tl.grow(s)
	if remap == nil {
		return
	}
	for _, p := range a.products {
		for _, d := range p.denied {
			remap(&d.buckets)
		}
	}
}

// firstSegment returns "/a" for "/a/b?c", the prefix a path rule would
// allow; "/" for an empty or root path.
func firstSegment(path []byte) []byte {
	for i := 1; i < len(path); i++ {
		if path[i] == '/' || path[i] == '?' || path[i] == '#' {
			return path[:i]
		}
	}
	if len(path) == 0 || path[0] != '/' {
		return []byte("/")
	}
	return path
}

func contains(list []string, b []byte) bool {
	for _, s := range list {
		if s == string(b) {
			return true
		}
	}
	return false
}
