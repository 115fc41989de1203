package review

import (
	"cmp"
	"slices"
	"time"

	"github.com/egret-proxy/egret/allowlists"
)

// Report is the result of a review: what the log says, per product.
type Report struct {
	From     time.Time       `json:"from"` // first decision line counted
	To       time.Time       `json:"to"`   // last decision line counted
	Stats    Stats           `json:"stats"`
	Timeline Timeline        `json:"timeline"`
	Products []ProductReport `json:"products"`
}

// Timeline describes the buckets of every Denied.Timeline.
type Timeline struct {
	Origin        time.Time `json:"origin"`
	BucketSeconds int64     `json:"bucket_seconds"`
	Buckets       int       `json:"buckets"`
}

// ProductReport is one product's review.
type ProductReport struct {
	Name string `json:"product"` // "" for clients with no product
	// Known reports whether the product is in the loaded allowlists; its
	// rules can be reviewed only then.
	Known bool `json:"known"`
	// Denied are the destinations a rule can allow (reasons no-rule and
	// path), most denied first.
	Denied []Denied `json:"denied"`
	// Unfixable are denies no allow rule changes (auth, bad-host,
	// private-address, self, ech, …): shown, never suggested.
	Unfixable []Denied `json:"unfixable"`
	// Suggested are the rules that would allow Denied.
	Suggested []Suggestion `json:"suggested"`
	// Unused are rules that allowed nothing in the period.
	Unused []RuleRef `json:"unused"`
	// Narrow are wildcard rules that allowed only a few distinct names.
	Narrow []Narrow `json:"narrow"`
}

// Denied is one denied destination of a product.
type Denied struct {
	Host string `json:"host"`
	// Port is 0 for a name the DNS door refused: a query has no port.
	Port   int       `json:"port"`
	Path   string    `json:"path,omitempty"` // the denied path's first segment (reason path)
	Reason string    `json:"reason"`
	Count  int       `json:"count"`
	First  time.Time `json:"first"`
	Last   time.Time `json:"last"`
	// Timeline counts the denies per bucket of Report.Timeline.
	Timeline []uint32 `json:"timeline"`
	// Rule is the suggested rule's host or cidr; AllowedBy names the rule
	// of the loaded allowlists that allows the destination now (the policy
	// changed since), in which case nothing is suggested.
	Rule      string `json:"rule,omitempty"`
	AllowedBy string `json:"allowed_by,omitempty"`
}

// Target returns host:port, with the path when there is one.
func (d Denied) Target() string {
	if d.Port == 0 {
		return d.Host + " (DNS)"
	}
	s := hostPort(d.Host, d.Port)
	if d.Path != "" {
		s += " " + d.Path
	}
	return s
}

// Suggestion is a rule that would allow denied destinations.
type Suggestion struct {
	Host  string   `json:"host,omitempty"`
	CIDR  string   `json:"cidr,omitempty"`
	Ports []int    `json:"ports"`
	Paths []string `json:"paths,omitempty"`
	Names []string `json:"names,omitempty"` // the denied names a wildcard covers
	// DNSOnly is set when every deny it covers was a DNS query, which
	// names no port: Ports is then the default, 443.
	DNSOnly bool      `json:"dns_only,omitempty"`
	Count   int       `json:"count"` // denies it would have allowed
	First   time.Time `json:"first"`
	Last    time.Time `json:"last"`
}

// Pattern returns the host pattern or the CIDR.
func (s Suggestion) Pattern() string { return cmp.Or(s.Host, s.CIDR) }

// RuleRef names a rule of the loaded allowlists.
type RuleRef struct {
	Rule   string `json:"rule"` // pattern, ports and paths, e.g. "*.example.com:443"
	File   string `json:"file"`
	Line   int    `json:"line"`
	Source string `json:"source"`
}

// Narrow is a wildcard rule that allowed only a few distinct names.
type Narrow struct {
	RuleRef
	Allows int      `json:"allows"` // allow lines it decided
	Names  []string `json:"names"`  // every distinct name it allowed
}

// Build turns what the aggregator counted into a report. policy (may be
// nil) supplies the rules to review; a denied destination that policy now
// allows gets no suggestion.
func (a *Aggregator) Build(policy *allowlists.Policy) *Report {
	r := &Report{
		From: a.first.UTC(), To: a.last.UTC(), Stats: a.stats, Products: []ProductReport{},
		Timeline: Timeline{BucketSeconds: a.tl.width, Buckets: numBuckets},
	}
	if a.tl.width > 0 { // no deny, no timeline
		r.Timeline.Origin = a.tl.Origin()
	}
	names := make([]string, 0, len(a.products))
	for n := range a.products {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		r.Products = append(r.Products, a.buildProduct(name, policy))
	}
	return r
}

func (a *Aggregator) buildProduct(name string, policy *allowlists.Policy) ProductReport {
	agg := a.products[name]
	// Empty lists rather than nil, so that JSON readers get [] not null.
	pr := ProductReport{Name: name, Denied: []Denied{}, Unfixable: []Denied{}, Unused: []RuleRef{}, Narrow: []Narrow{}}
	var id *allowlists.Identity
	if policy != nil {
		if ident, err := policy.Identity("review", name); err == nil {
			id, pr.Known = &ident, true
		}
	}
	for _, d := range agg.denied {
		k := d.key
		den := Denied{
			Host: k.host, Port: k.port, Path: k.path, Reason: k.reason, Count: d.count,
			First: d.first.UTC(), Last: d.last.UTC(), Timeline: slices.Clone(d.buckets[:]),
		}
		if !fixable(k.reason) {
			pr.Unfixable = append(pr.Unfixable, den)
			continue
		}
		if id != nil {
			den.AllowedBy = allowedNow(policy, *id, den)
		}
		pr.Denied = append(pr.Denied, den)
	}
	sortDenied(pr.Denied)
	sortDenied(pr.Unfixable)
	pr.Suggested = suggest(pr.Denied)
	if pr.Known {
		unused, narrow := reviewRules(policy.Rules(name), agg.rules)
		pr.Unused, pr.Narrow = append(pr.Unused, unused...), append(pr.Narrow, narrow...)
	}
	return pr
}

// fixable reports whether an allow rule can turn a deny with this reason
// into an allow: a missing rule, a path outside a rule's prefixes, or TLS
// without SNI on the transparent listener (logged with the original
// address, which a cidr rule allows).
func fixable(reason string) bool {
	return reason == "no-rule" || reason == "path" || reason == "no-sni"
}

// allowedNow returns the rule of the current policy that allows d, or "".
func allowedNow(p *allowlists.Policy, id allowlists.Identity, d Denied) string {
	if v := decideLogged(p, id, d.Host, d.Port, d.Path); v.Allow && v.Rule != nil {
		return v.Rule.String()
	}
	return ""
}

// decideLogged decides a logged destination again under p, as the proxy
// decided it: a DNS door line (port 0) by name on any port, anything else
// by host, port and path ("/" being no path). A host that no longer parses
// is a bad-host deny.
func decideLogged(p *allowlists.Policy, id allowlists.Identity, host string, port int, path string) allowlists.Verdict {
	if port == 0 {
		dest, err := allowlists.NameDest(host)
		if err != nil {
			return allowlists.Verdict{Reason: allowlists.ReasonBadHost}
		}
		return p.DecideName(id, dest)
	}
	if path == "/" {
		path = ""
	}
	dest, err := allowlists.NewDest(host, port, path)
	if err != nil {
		return allowlists.Verdict{Reason: allowlists.ReasonBadHost}
	}
	return p.Decide(id, dest)
}

func sortDenied(ds []Denied) {
	slices.SortFunc(ds, func(a, b Denied) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Host, b.Host),
			cmp.Compare(a.Port, b.Port), cmp.Compare(a.Path, b.Path), cmp.Compare(a.Reason, b.Reason))
	})
}

// reviewRules finds the rules that allowed nothing and the wildcards that
// allowed only a few names. Allow lines name the rule by its pattern, so
// two rules of one product with the same pattern (on different ports)
// count as one.
func reviewRules(rules []*allowlists.Rule, used map[string]*ruleAgg) (unused []RuleRef, narrow []Narrow) {
	for _, rule := range rules {
		ref := RuleRef{Rule: rule.String(), File: rule.File, Line: rule.Line, Source: rule.Source}
		u, ok := used[rule.Pattern()]
		switch {
		case !ok:
			unused = append(unused, ref)
		case rule.IsWildcard() && len(u.names) <= fewNames:
			narrow = append(narrow, Narrow{RuleRef: ref, Allows: u.hits, Names: slices.Sorted(slices.Values(u.names))})
		}
	}
	return unused, narrow
}
