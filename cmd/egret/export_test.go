package main

import (
	"strings"
	"testing"
)

func TestExportCommand(t *testing.T) {
	tests := []struct {
		name        string
		args        []string
		code        int
		out, errOut []string // each must appear
		notOut      []string // none may appear
	}{
		{"no product", []string{"export", "--format", "nftables"}, 2, nil, []string{"export needs --product"}, nil},
		{"unknown format", []string{"export", "--product", "dt-cloud-connector", "--format", "pf"}, 2, nil,
			[]string{`--format "pf": use one of`, "nftables", "squid-sslbump"}, nil},
		{"unknown product", []string{"export", "--product", "nope", "--format", "nftables"}, 2, nil, []string{`unknown product "nope"`}, nil},
		{"bad direction", []string{"export", "--product", "dt-cloud-connector", "--format", "nftables", "--direction", "out"}, 2, nil,
			[]string{`direction "out": use egress, ingress or both`}, nil},
		{"bad name", []string{"export", "--product", "dt-cloud-connector", "--format", "nftables", "--name", "a;b"}, 2, nil, []string{"--name"}, nil},
		{"bad pin", []string{"export", "--product", "dt-cloud-connector", "--format", "nftables", "--resolve", "x"}, 2, nil, []string{"write HOST=IP"}, nil},
		{"unset variables are comments and warnings", []string{"export", "--product", "dt-cloud-connector", "--format", "nftables"}, 0,
			[]string{"table inet egret {", "# not expressed: destination ${lan_dhcp_server} has no value"},
			[]string{"dt-cloud-connector/n3: not expressed in nftables"}, nil},
		{"strict refuses what cannot be expressed", []string{"export", "--product", "dt-cloud-connector", "--format", "nftables", "--strict"}, 1,
			nil, []string{"rules not expressed in nftables (--strict)"}, nil},
		{"strict passes when every row is expressed", []string{"export", "--product", "dt-cloud-connector", "--format", "nftables", "--strict",
			"--var", "lan_dhcp_server=192.0.2.53"}, 0, []string{"ip daddr 192.0.2.53/32 udp dport 53 accept"}, nil, nil},
		{"pins fill the named rule's sets", []string{"export", "--product", "dt-cloud-connector-2g", "--format", "nftables",
			"--resolve", "time3.google.com=203.0.113.3"}, 0, []string{"elements = { 203.0.113.3 }"}, nil, nil},
		{"basic outbound rows are left out", []string{"export", "--product", "netapp-connector-aws", "--format", "nftables"}, 0,
			[]string{"left out: a row of the document's \"basic\" rule set"}, nil, []string{"tcp dport 1-65535 accept"}},
		{"--option basic includes them, proxy ports still egret's", []string{"export", "--product", "netapp-connector-aws", "--format", "nftables", "--option", "basic"}, 0,
			[]string{"ip daddr 0.0.0.0/0 tcp dport { 1-442, 444-65535 } accept", "ports [443] left to egret"}, nil, nil},
		{"table name", []string{"export", "--product", "dt-cloud-connector-2g", "--format", "nftables", "--name", "site_a"}, 0,
			[]string{"table inet site_a {", "delete table inet site_a"}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := egret(t, tt.args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, out, errOut)
			}
			for _, s := range tt.out {
				if !strings.Contains(out, s) {
					t.Errorf("stdout lacks %q:\n%s", s, out)
				}
			}
			for _, s := range tt.errOut {
				if !strings.Contains(errOut, s) {
					t.Errorf("stderr lacks %q:\n%s", s, errOut)
				}
			}
			for _, s := range tt.notOut {
				if strings.Contains(out, s) {
					t.Errorf("stdout has %q", s)
				}
			}
		})
	}
}
