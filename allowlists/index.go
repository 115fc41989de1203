package allowlists

import (
	"net/netip"
	"sort"
	"strings"
)

// index finds the rules that match a destination without scanning them:
// exact names by map, suffix wildcards and globs by walking the name's
// parent domains, CIDRs by one map look-up per distinct prefix length. Its
// cost grows with the number of labels and prefix lengths, not of rules.
type index struct {
	exact   map[string][]*Rule // api.example.com
	suffix  map[string][]*Rule // *.example.com, keyed by example.com
	globs   map[string][]*Rule // keyed by the pattern's literal suffix ("" for none)
	anyHost []*Rule            // "*"
	cidrs   map[netip.Prefix][]*Rule
	bits4   []int // distinct IPv4 prefix lengths, longest first
	bits6   []int // distinct IPv6 prefix lengths, longest first
}

func newIndex() *index {
	return &index{
		exact:  map[string][]*Rule{},
		suffix: map[string][]*Rule{},
		globs:  map[string][]*Rule{},
		cidrs:  map[netip.Prefix][]*Rule{},
	}
}

func (ix *index) add(r *Rule) {
	if r.Host == "" {
		ix.addCIDR(r)
		return
	}
	switch r.match.kind {
	case kindExact:
		ix.exact[r.match.text] = append(ix.exact[r.match.text], r)
	case kindSuffix:
		ix.suffix[r.match.suffix] = append(ix.suffix[r.match.suffix], r)
	case kindGlob:
		ix.globs[r.match.suffix] = append(ix.globs[r.match.suffix], r)
	case kindAny:
		ix.anyHost = append(ix.anyHost, r)
	}
}

func (ix *index) addCIDR(r *Rule) {
	p := r.CIDR
	if _, seen := ix.cidrs[p]; !seen {
		bits := &ix.bits4
		if p.Addr().Is6() {
			bits = &ix.bits6
		}
		if !containsInt(*bits, p.Bits()) {
			*bits = append(*bits, p.Bits())
			sort.Sort(sort.Reverse(sort.IntSlice(*bits)))
		}
	}
	ix.cidrs[p] = append(ix.cidrs[p], r)
}

// candidates is the outcome of looking a destination up in one index.
type candidates struct {
	pathless *Rule // a matching rule without paths: it decides
	pathOK   *Rule // a matching rule whose paths include the known path
	pathAny  *Rule // a matching rule with paths, whatever the path
}

// consider folds one bucket of rules into c; it reports whether a rule
// without paths matched, which ends the search.
func (c *candidates) consider(rules []*Rule, d *Dest) bool {
	for _, r := range rules {
		if c.considerRule(r, d) {
			return true
		}
	}
	return false
}

func (c *candidates) considerRule(r *Rule, d *Dest) bool {
	if !r.allowsPort(d.Port) {
		return false
	}
	if len(r.Paths) == 0 {
		c.pathless = r
		return true
	}
	if c.pathAny == nil {
		c.pathAny = r
	}
	if c.pathOK == nil && d.Path != "" && !d.badPath && r.allowsPath(d.Path) {
		c.pathOK = r
	}
	return false
}

// lookup finds the rules matching d, most specific first: exact name,
// suffix wildcards from the longest parent down, globs, "*", then CIDRs on
// the literal or resolved address. IP literals match only "*" and CIDRs.
func (ix *index) lookup(d *Dest, c *candidates) {
	if !d.literal && ix.lookupName(d, c) {
		return
	}
	if c.consider(ix.anyHost, d) || !d.Addr.IsValid() {
		return
	}
	ix.lookupAddr(d, c)
}

func (ix *index) lookupName(d *Dest, c *candidates) bool {
	h := d.Host
	if c.consider(ix.exact[h], d) {
		return true
	}
	for p := parent(h); p != ""; p = parent(p) {
		if c.consider(ix.suffix[p], d) {
			return true
		}
	}
	if len(ix.globs) == 0 {
		return false
	}
	for p := parent(h); p != ""; p = parent(p) {
		if c.considerGlobs(ix.globs[p], d) {
			return true
		}
	}
	return c.considerGlobs(ix.globs[""], d)
}

func (c *candidates) considerGlobs(rules []*Rule, d *Dest) bool {
	for _, r := range rules {
		if r.match.glob.Match(d.Host) && c.considerRule(r, d) {
			return true
		}
	}
	return false
}

func (ix *index) lookupAddr(d *Dest, c *candidates) {
	bits := ix.bits4
	if d.Addr.Is6() {
		bits = ix.bits6
	}
	for _, b := range bits {
		p, err := d.Addr.Prefix(b)
		if err == nil && c.consider(ix.cidrs[p], d) {
			return
		}
	}
}

// parent returns name without its first label ("" for a single label).
func parent(name string) string {
	if i := strings.IndexByte(name, '.'); i >= 0 {
		return name[i+1:]
	}
	return ""
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
