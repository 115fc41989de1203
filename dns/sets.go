package dns

import (
	"github.com/egret-proxy/egret/allowlists"
	"github.com/egret-proxy/egret/export"
)

// SetsFor names the nftables sets (export.SetName, both families) of the
// egress network rules of products whose destination names host: the
// sets `egret export --format nftables` declares for those rules, which
// hold the addresses the rule may reach. A rule for any host ("*") has
// no set.
func SetsFor(p *allowlists.Policy, products []string, host string) []string {
	var names []string
	for _, product := range products {
		for _, r := range p.NetworkRules(product) {
			if !r.Active() || r.Host == "" || r.IsAnyHost() || r.Direction != "egress" || !r.MatchesName(host) {
				continue
			}
			names = append(names, export.SetName(r.ID, 4), export.SetName(r.ID, 6))
		}
	}
	return names
}
