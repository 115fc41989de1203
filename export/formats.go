package export

import (
	"io"
	"sort"
)

// Writer writes a ruleset in one format and reports the rules the format
// could not express (each also written as a comment in the output).
type Writer func(w io.Writer, rs *Ruleset) ([]Skip, error)

// Formats are the --format values of egret export.
var Formats = map[string]Writer{
	"nftables":      WriteNftables,
	"iptables":      WriteIptables,
	"ip6tables":     WriteIp6tables,
	"ipset":         WriteIpset,
	"squid":         WriteSquid,
	"squid-sslbump": WriteSquidSSLBump,
	"networkpolicy": WriteNetworkPolicy,
	"json":          WriteJSON,
}

// FormatNames lists the formats, sorted.
func FormatNames() []string {
	names := make([]string, 0, len(Formats))
	for n := range Formats {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
