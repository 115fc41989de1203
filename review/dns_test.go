package review

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// dnsDeny is a DNS door's deny line: method DNS, no port, a qtype.
func dnsDeny(at time.Duration, host, qtype, reason string, products ...string) string {
	return fmt.Sprintf(`{"time":%q,"msg":"decision","decision":"deny","mode":"enforce","listener":"dns","client":"10.0.1.7:5353","identity":"default","products":%s,"method":"DNS","host":%q,"qtype":%q,"proto":"udp","rcode":"REFUSED","answers":0,"reason":%q,"trace_id":"0af7651916cd43dd8448eb211c80319c"}`,
		t0.Add(at).Format(time.RFC3339Nano), jsonList(products), host, qtype, reason)
}

// A name the DNS door refused is suggested like a tunnel's: as a host rule
// on port 443 (a query names no port), on the tunnel's ports when the name
// was also denied there, as *.parent when three names share a parent;
// refused query types are shown, never suggested.
func TestSuggestionsFromDNSDenies(t *testing.T) {
	r := reviewLines(t, Filter{}, sitePolicy(t),
		dnsDeny(0, "api.vendor.example", "A", "no-rule", "site"),
		dnsDeny(time.Minute, "api.vendor.example", "AAAA", "no-rule", "site"),
		dnsDeny(0, "mqtt.vendor.example", "A", "no-rule", "site"),
		deny(2*time.Minute, "mqtt.vendor.example", 8883, "no-rule", "site"),
		dnsDeny(0, "a.edge.example", "A", "no-rule", "site"),
		dnsDeny(0, "b.edge.example", "A", "no-rule", "site"),
		dnsDeny(0, "c.edge.example", "HTTPS", "no-rule", "site"),
		dnsDeny(0, "api.site.example", "A", "no-rule", "site"), // allowed by the policy now
		dnsDeny(0, "x.tunnel.example", "TXT", "qtype", "site"),
	)
	p := product(t, r, "site")
	if got, want := patterns(p.Suggested), []string{"*.edge.example:443", "api.vendor.example:443", "mqtt.vendor.example:8883"}; !slices.Equal(got, want) {
		t.Errorf("suggested %q, want %q", got, want)
	}
	for _, s := range p.Suggested {
		if want := s.Host != "mqtt.vendor.example"; s.DNSOnly != want {
			t.Errorf("%s: DNSOnly %v, want %v", s.Host, s.DNSOnly, want)
		}
	}
	if got := targets(p.Unfixable); !slices.Equal(got, []string{"x.tunnel.example (DNS)=1"}) {
		t.Errorf("unfixable %v", got)
	}
	var allowedNow string
	for _, d := range p.Denied {
		if d.Host == "api.site.example" {
			allowedNow = d.AllowedBy
		}
		if d.Host == "api.vendor.example" && (d.Target() != "api.vendor.example (DNS)" || d.Count != 2) {
			t.Errorf("denied %s, %d times", d.Target(), d.Count)
		}
	}
	if allowedNow == "" {
		t.Error("a name the policy allows now still gets no allowed_by")
	}
	patches, _, err := r.Patches()
	if err != nil || len(patches) != 1 {
		t.Fatalf("patches %v, %v", patches, err)
	}
	text := string(patches[0].Data)
	if !strings.Contains(text, "host: api.vendor.example") || !strings.Contains(text, "asked only in DNS, so port 443 is a guess") {
		t.Errorf("patch:\n%s", text)
	}
}
