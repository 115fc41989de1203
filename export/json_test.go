package export

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/egret-proxy/egret/allowlists"
)

// jsonRender writes the products as JSON and decodes it back strictly.
func jsonRender(t *testing.T, p *allowlists.Policy, products []string, o Options) (string, jsonDoc) {
	t.Helper()
	rs, err := Build(p, products, o)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	skips, err := WriteJSON(&b, rs)
	if err != nil {
		t.Fatal(err)
	}
	if len(skips) > 0 {
		t.Errorf("%v: JSON skipped %v", products, skips)
	}
	dec := json.NewDecoder(bytes.NewReader(b.Bytes()))
	dec.DisallowUnknownFields()
	var doc jsonDoc
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("%v: %v\n%s", products, err, b.String())
	}
	if dec.More() {
		t.Fatalf("%v: more than one JSON value", products)
	}
	return b.String(), doc
}

// jsonCatalogRows counts a product's rows as its files give them: every
// proxy rule, and the network rules of the direction.
func jsonCatalogRows(p *allowlists.Policy, prod string, dir Direction) int {
	pr := p.Catalog().Product(prod)
	n := pr.ProxyRules()
	for _, f := range pr.Files {
		for _, nr := range f.Network {
			if dir.Includes(nr.Direction) {
				n++
			}
		}
	}
	return n
}

// Every embedded product, in every direction, with and without variables,
// encodes to one JSON document that decodes back into the same rows: one
// object per row of the product's files, unset variables and rows left out
// of other formats included, in document order, each naming its product,
// document, purpose, file and line.
func TestJSONEveryProduct(t *testing.T) {
	for vname, p := range map[string]*allowlists.Policy{"no variables": compile(t, nil), "every variable": compile(t, everyVariableSet(t))} {
		for _, prod := range p.Catalog().Names() {
			for _, dir := range []Direction{Egress, Both, Ingress} {
				where := fmt.Sprintf("%s, %s, %s", prod, dir, vname)
				out, doc := jsonRender(t, p, []string{prod}, Options{Direction: dir})
				if !slices.Equal(doc.Products, []string{prod}) || doc.Direction != dir {
					t.Errorf("%s: products %v direction %q", where, doc.Products, doc.Direction)
				}
				if want := jsonCatalogRows(p, prod, dir); len(doc.Rules) != want {
					t.Errorf("%s: %d rules, the product has %d rows", where, len(doc.Rules), want)
				}
				if lines := strings.Count(out, "\n"); lines != len(doc.Rules)+2 {
					t.Errorf("%s: %d lines for %d rules, want one line each", where, lines, len(doc.Rules))
				}
				jsonCheckRules(t, where, dir, doc.Rules)
			}
		}
	}
}

func jsonCheckRules(t *testing.T, where string, dir Direction, rules []jsonRule) {
	t.Helper()
	last := map[string]int{}
	for i, r := range rules {
		// In document order: proxy rules, then network rules, each by
		// number, every number when no direction is left out.
		n := jsonN(r.ID)
		inOrder := n > last[r.Kind] && r.ID == fmt.Sprintf("%s/%c%d", r.Product, r.Kind[0], n)
		if r.Kind == "proxy" || dir == Both {
			inOrder = inOrder && n == last[r.Kind]+1
		}
		if !inOrder || i > 0 && r.Kind == "proxy" && rules[i-1].Kind == "network" {
			t.Errorf("%s: rule %d is %s, after %s%d: not in document order", where, i, r.ID, r.Kind, last[r.Kind])
		}
		last[r.Kind] = n
		if r.Purpose == "" || r.File == "" || r.Line == 0 || r.Source == "" {
			t.Errorf("%s: %s lacks provenance: %+v", where, r.ID, r)
		}
		dests := 0
		for _, s := range []string{r.Host, r.CIDR, r.Unset} {
			if s != "" {
				dests++
			}
		}
		if dests != 1 {
			t.Errorf("%s: %s has %d of host, cidr and unset", where, r.ID, dests)
		}
		if r.CIDR != "" {
			if pfx, err := netip.ParsePrefix(r.CIDR); err != nil || pfx.Masked() != pfx {
				t.Errorf("%s: %s: cidr %q", where, r.ID, r.CIDR)
			}
		}
		if (r.Protocol == "icmp") != (len(r.Ports) == 0) || r.Kind == "proxy" && r.Protocol != "tcp" {
			t.Errorf("%s: %s: %s ports %q", where, r.ID, r.Protocol, r.Ports)
		}
		for _, port := range r.Ports {
			if _, _, err := allowlists.ParsePortRange(port); err != nil {
				t.Errorf("%s: %s: port %q: %v", where, r.ID, port, err)
			}
		}
	}
}

// Known rows, field for field: a network rule with its variable set, a
// broad proxy rule, an inactive one naming its variable, a rule with
// paths, pinned addresses, and a row left out of the other formats. Rows
// are found by what they say, and ID and LINE stand for their number and
// line, so that the test holds while rows are added above them.
func TestJSONKnownRules(t *testing.T) {
	p := compile(t, map[string]string{"ad_forest": "198.51.100.0/24"})
	pins := map[string][]netip.Addr{
		"2.resinio.pool.ntp.org": {netip.MustParseAddr("192.0.2.7")},
		"1.resinio.pool.ntp.org": {netip.MustParseAddr("2001:db8::7"), netip.MustParseAddr("192.0.2.7")},
	}
	purpose := func(kind, text string) func(jsonRule) bool {
		return func(r jsonRule) bool { return r.Kind == kind && r.Purpose == text }
	}
	cases := []struct {
		product string
		find    func(jsonRule) bool
		want    string // the line, or a part of it
	}{
		{"netapp-cvo-aws", purpose("network", "Active Directory - Kerberos V authentication (from node management LIF)"),
			`{"id":"ID","product":"netapp-cvo-aws","source":"001_1cb75aa83d0a3982.txt",` +
				`"purpose":"Active Directory - Kerberos V authentication (from node management LIF)","kind":"network","protocol":"tcp",` +
				`"direction":"egress","ports":["88"],"cidr":"198.51.100.0/24","file":"allowlists/netapp-cvo-aws.yaml","line":LINE}`},
		{"cisco-cloudcenter-ccm-lb", func(r jsonRule) bool { return r.Kind == "proxy" && r.Host == "*" },
			`{"id":"ID","product":"cisco-cloudcenter-ccm-lb","source":"002_dc4c11ef600c6dd3.txt",` +
				`"purpose":"To download installer or appliance packages","kind":"proxy","protocol":"tcp","direction":"egress",` +
				`"ports":["80","443"],"host":"*","broad":"document (CCM_LB Ports): Egress 0.0.0.0/0 on 80 and 443 ` +
				`'To download installer or appliance packages', no host names given",` +
				`"file":"allowlists/cisco-cloudcenter-ccm-lb.yaml","line":LINE}`},
		{"netapp-cvo-aws", purpose("proxy", "ZAPI calls (Cloud Volumes ONTAP HA only) to the HA mediator"),
			`"kind":"proxy","protocol":"tcp","direction":"egress","ports":["3000"],"unset":"ha_mediator","file":`},
		{"netapp-connector-aws", func(r jsonRule) bool { return r.Host == "support.netapp.com" && len(r.Paths) > 0 },
			`"ports":["443"],"host":"support.netapp.com","paths":["/svcgw","/ServiceGW/entitlement"],"file":`},
		{"dt-cloud-connector", func(r jsonRule) bool { return r.Host == "{1,2,3,4}.resinio.pool.ntp.org" },
			`{"id":"ID","product":"dt-cloud-connector","source":"003_16dde71cfa18ae60.txt",` +
				`"purpose":"NTP (UDP 123) used if no NTP server is advertised on the local network","kind":"network","protocol":"udp",` +
				`"direction":"egress","ports":["123"],"host":"{1,2,3,4}.resinio.pool.ntp.org","pinned":["192.0.2.7","2001:db8::7"],` +
				`"file":"allowlists/dt-cloud-connector.yaml","line":LINE}`},
	}
	for _, c := range cases {
		out, doc := jsonRender(t, p, []string{c.product}, Options{Direction: Egress, Pins: pins})
		i := slices.IndexFunc(doc.Rules, c.find)
		if i < 0 {
			t.Errorf("%s: no rule like %s", c.product, c.want)
			continue
		}
		r := doc.Rules[i]
		want := strings.NewReplacer("ID", r.ID, "LINE", fmt.Sprint(jsonSpecLine(t, p, c.product, r))).Replace(c.want)
		if line := jsonLineOf(out, r.ID); !strings.Contains(line, want) {
			t.Errorf("%s:\n got %s\nwant %s", r.ID, line, want)
		}
	}
}

// A row left out of the other formats is a rule that says why.
func TestJSONOmittedRows(t *testing.T) {
	p := compile(t, nil)
	seen := 0
	for _, prod := range p.Catalog().Names() {
		rs, err := Build(p, []string{prod}, Options{Direction: Both})
		if err != nil {
			t.Fatal(err)
		}
		_, doc := jsonRender(t, p, []string{prod}, Options{Direction: Both})
		for _, o := range rs.Omitted {
			i := slices.IndexFunc(doc.Rules, func(r jsonRule) bool { return r.ID == o.ID.String() })
			switch {
			case i < 0:
				t.Errorf("%s: omitted row %s is not in the JSON", prod, o.ID)
			case doc.Rules[i].Omitted != o.Reason || o.Reason == "":
				t.Errorf("%s: omitted row %s says %q, want %q", prod, o.ID, doc.Rules[i].Omitted, o.Reason)
			}
			seen++
		}
	}
	if seen == 0 {
		t.Fatal("no embedded product has an omitted row: the test tests nothing")
	}
}

// jsonLineOf is the output line of the rule with the given id, without
// the comma between rules.
func jsonLineOf(out, id string) string {
	for line := range strings.Lines(out) {
		if strings.HasPrefix(line, `{"id":"`+id+`",`) {
			return strings.TrimSuffix(strings.TrimSpace(line), ",")
		}
	}
	return ""
}

// jsonSpecLine is the line of the rule's row as the catalog read it, so
// that the exact test does not break when a row above it is added.
func jsonSpecLine(t *testing.T, p *allowlists.Policy, prod string, r jsonRule) int {
	t.Helper()
	var lines []int
	for _, f := range p.Catalog().Product(prod).Files {
		if r.Kind == "proxy" {
			for _, spec := range f.Proxy {
				lines = append(lines, spec.Line)
			}
		} else {
			for _, spec := range f.Network {
				lines = append(lines, spec.Line)
			}
		}
	}
	n := jsonN(r.ID)
	if n < 1 || n > len(lines) {
		t.Fatalf("%s: the product has %d such rows", r.ID, len(lines))
	}
	return lines[n-1]
}

func jsonN(id string) (n int) {
	fmt.Sscanf(id[strings.LastIndexByte(id, '/')+2:], "%d", &n)
	return n
}

// Several products are one document, each product's rows together, in
// the order given; a purpose's "&" is not escaped.
func TestJSONSeveralProducts(t *testing.T) {
	p := compile(t, nil)
	products := []string{"netapp-cvo-aws", "dt-cloud-connector"}
	out, doc := jsonRender(t, p, products, Options{Direction: Both})
	if !slices.Equal(doc.Products, products) {
		t.Errorf("products %v", doc.Products)
	}
	want := jsonCatalogRows(p, products[0], Both) + jsonCatalogRows(p, products[1], Both)
	if len(doc.Rules) != want {
		t.Errorf("%d rules, want %d", len(doc.Rules), want)
	}
	var order []string
	for _, r := range doc.Rules {
		if len(order) == 0 || order[len(order)-1] != r.Product {
			order = append(order, r.Product)
		}
	}
	if !slices.Equal(order, products) {
		t.Errorf("products appear in the order %v", order)
	}
	if !strings.Contains(out, "change & set password") || strings.Contains(out, `\u0026`) {
		t.Errorf("purposes are HTML-escaped")
	}
}
