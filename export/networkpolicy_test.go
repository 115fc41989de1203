package export

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/egret-proxy/egret/allowlists"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

// npRender writes the products' NetworkPolicy.
func npRender(t *testing.T, p *allowlists.Policy, products []string, o Options) (*Ruleset, string, []Skip) {
	t.Helper()
	rs, err := Build(p, products, o)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	skips, err := WriteNetworkPolicy(&b, rs)
	if err != nil {
		t.Fatal(err)
	}
	return rs, b.String(), skips
}

// npDecode decodes the output strictly into the real API type, as
// deploy/kubernetes_test.go does the manifests: an unknown or misspelt
// field fails.
func npDecode(t *testing.T, where, out string) *networkingv1.NetworkPolicy {
	t.Helper()
	var np networkingv1.NetworkPolicy
	if err := yaml.UnmarshalStrict([]byte(out), &np); err != nil {
		t.Fatalf("%s: %v\n%s", where, err, out)
	}
	if np.APIVersion != "networking.k8s.io/v1" || np.Kind != "NetworkPolicy" {
		t.Fatalf("%s: apiVersion %q kind %q", where, np.APIVersion, np.Kind)
	}
	return &np
}

// npValidate checks what the API server would: the metadata with
// apimachinery's validation, and the spec as k8s.io/kubernetes's
// ValidateNetworkPolicySpec does (not imported: it is the whole of
// Kubernetes).
func npValidate(np *networkingv1.NetworkPolicy) field.ErrorList {
	errs := apivalidation.ValidateObjectMeta(&np.ObjectMeta, false, apivalidation.NameIsDNSSubdomain, field.NewPath("metadata"))
	for _, msg := range validation.IsDNS1123Label(np.Name) {
		errs = append(errs, field.Invalid(field.NewPath("metadata", "name"), np.Name, msg))
	}
	spec := field.NewPath("spec")
	errs = append(errs, metav1validation.ValidateLabelSelector(&np.Spec.PodSelector, metav1validation.LabelSelectorValidationOptions{}, spec.Child("podSelector"))...)
	if len(np.Spec.PolicyTypes) == 0 || len(np.Spec.PolicyTypes) > 2 {
		errs = append(errs, field.Invalid(spec.Child("policyTypes"), np.Spec.PolicyTypes, "one or two types"))
	}
	for i, pt := range np.Spec.PolicyTypes {
		if pt != networkingv1.PolicyTypeEgress && pt != networkingv1.PolicyTypeIngress || slices.Index(np.Spec.PolicyTypes, pt) != i {
			errs = append(errs, field.Invalid(spec.Child("policyTypes").Index(i), pt, "Egress or Ingress, once"))
		}
	}
	for i, r := range np.Spec.Egress {
		errs = append(errs, npValidateRule(spec.Child("egress").Index(i), r.Ports, r.To, "to")...)
	}
	for i, r := range np.Spec.Ingress {
		errs = append(errs, npValidateRule(spec.Child("ingress").Index(i), r.Ports, r.From, "from")...)
	}
	return errs
}

func npValidateRule(path *field.Path, ports []networkingv1.NetworkPolicyPort, peers []networkingv1.NetworkPolicyPeer, peersKey string) field.ErrorList {
	var errs field.ErrorList
	for i, p := range ports {
		pp := path.Child("ports").Index(i)
		if p.Protocol == nil || !slices.Contains([]corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP}, *p.Protocol) {
			errs = append(errs, field.NotSupported(pp.Child("protocol"), p.Protocol, []string{"TCP", "UDP", "SCTP"}))
		}
		if p.Port != nil {
			for _, msg := range validation.IsValidPortNum(p.Port.IntValue()) {
				errs = append(errs, field.Invalid(pp.Child("port"), p.Port, msg))
			}
		}
		if p.EndPort != nil {
			if p.Port == nil || p.Port.StrVal != "" || *p.EndPort < p.Port.IntVal {
				errs = append(errs, field.Invalid(pp.Child("endPort"), *p.EndPort, "needs a numeric port no greater than it"))
			}
			for _, msg := range validation.IsValidPortNum(int(*p.EndPort)) {
				errs = append(errs, field.Invalid(pp.Child("endPort"), *p.EndPort, msg))
			}
		}
	}
	for i, peer := range peers {
		pp := path.Child(peersKey).Index(i)
		if peer.IPBlock == nil || peer.PodSelector != nil || peer.NamespaceSelector != nil {
			errs = append(errs, field.Invalid(pp, peer, "egret writes ipBlock peers only"))
			continue
		}
		// Strict: the canonical form new objects must use.
		errs = append(errs, validation.IsValidCIDR(pp.Child("ipBlock", "cidr"), peer.IPBlock.CIDR)...)
	}
	return errs
}

// npExpressible is the oracle: a network row a NetworkPolicy carries.
func npExpressible(e *Entry) bool {
	return !e.Proxy && e.Unset == "" && (e.Protocol == "tcp" || e.Protocol == "udp") &&
		(e.CIDR.IsValid() || e.Host == "*")
}

// Every embedded product, in every direction, without variables and with
// every variable set, is a NetworkPolicy the API types decode strictly and
// validation accepts; every row of the product is in it, as a policy rule
// or a comment naming the row, and the policy rules are exactly the rows
// a NetworkPolicy can carry.
func TestNetworkPolicyEveryProduct(t *testing.T) {
	policies := map[string]*allowlists.Policy{"no variables": compile(t, nil), "every variable": compile(t, everyVariableSet(t))}
	blocks := map[string]int{} // ipBlocks written, by variant and family
	for vname, p := range policies {
		for _, prod := range p.Catalog().Names() {
			for _, dir := range []Direction{Egress, Both, Ingress} {
				where := fmt.Sprintf("%s, %s, %s", prod, dir, vname)
				rs, out, skips := npRender(t, p, []string{prod}, Options{Direction: dir})
				np := npDecode(t, where, out)
				if errs := npValidate(np); len(errs) > 0 {
					t.Fatalf("%s: invalid: %v\n%s", where, errs.ToAggregate(), out)
				}
				npCheckRows(t, where, p, prod, dir, rs, np, out, skips)
				for _, peer := range npPeers(np) {
					family := "v4"
					if netip.MustParsePrefix(peer.IPBlock.CIDR).Addr().Is6() {
						family = "v6"
					}
					blocks[vname+" "+family]++
				}
			}
		}
	}
	// Set variables turn skips into rules, IPv6 ones among them.
	if blocks["every variable v4"] <= blocks["no variables v4"] || blocks["every variable v6"] == 0 {
		t.Errorf("ipBlocks by variant and family: %v", blocks)
	}
}

func npPeers(np *networkingv1.NetworkPolicy) []networkingv1.NetworkPolicyPeer {
	var peers []networkingv1.NetworkPolicyPeer
	for _, r := range np.Spec.Egress {
		peers = append(peers, r.To...)
	}
	for _, r := range np.Spec.Ingress {
		peers = append(peers, r.From...)
	}
	return peers
}

func npCheckRows(t *testing.T, where string, p *allowlists.Policy, prod string, dir Direction,
	rs *Ruleset, np *networkingv1.NetworkPolicy, out string, skips []Skip) {
	t.Helper()
	comments := npCommentIDs(out)
	network, expressible := 0, map[string]int{}
	for _, nr := range p.NetworkRules(prod) {
		if dir.Includes(nr.Direction) {
			network++
		}
	}
	if got := len(p.NetworkRules(prod)); got != p.Catalog().Product(prod).NetworkRules() {
		t.Fatalf("%s: %d compiled network rules, %d in the catalog", where, got, p.Catalog().Product(prod).NetworkRules())
	}
	rows := 0
	for _, e := range append(slices.Clone(rs.Entries), npOmittedEntries(rs)...) {
		if !comments[e.ID.String()] {
			t.Errorf("%s: %s is in no comment", where, e.ID)
		}
		if !e.Proxy {
			rows++
		}
	}
	for i := range rs.Entries {
		if e := &rs.Entries[i]; npExpressible(e) {
			expressible[e.Direction]++
		}
	}
	if rows != network {
		t.Errorf("%s: %d network rows written, the product has %d in this direction", where, rows, network)
	}
	if len(np.Spec.Egress) != expressible["egress"] || len(np.Spec.Ingress) != expressible["ingress"] {
		t.Errorf("%s: %d egress and %d ingress policy rules, want %d and %d", where,
			len(np.Spec.Egress), len(np.Spec.Ingress), expressible["egress"], expressible["ingress"])
	}
	if got := len(np.Spec.Egress) + len(np.Spec.Ingress) + len(skips) + npOmittedNetwork(rs); got != network {
		t.Errorf("%s: %d policy rules + %d skips + omitted = %d, want the %d network rows", where,
			len(np.Spec.Egress)+len(np.Spec.Ingress), len(skips), got, network)
	}
	for _, s := range skips {
		if !npSkipReason(s.Reason) {
			t.Errorf("%s: %s: unexpected reason %q", where, s.ID, s.Reason)
		}
		if !strings.Contains(out, "# not expressed: "+s.Reason+"\n") {
			t.Errorf("%s: %s: reason not in the output", where, s.ID)
		}
	}
}

func npSkipReason(r string) bool {
	return strings.HasPrefix(r, "destination ${") && strings.Contains(r, "has no value") ||
		strings.HasPrefix(r, "NetworkPolicy has no ICMP") ||
		strings.HasPrefix(r, "NetworkPolicy has no names")
}

// npCommentIDs is the rule IDs that start a comment's text.
func npCommentIDs(out string) map[string]bool {
	ids := map[string]bool{}
	for line := range strings.Lines(out) {
		text, ok := strings.CutPrefix(strings.TrimSpace(line), "#")
		if !ok {
			continue
		}
		if f := strings.Fields(text); len(f) > 0 && strings.Contains(f[0], "/") {
			ids[f[0]] = true
		}
	}
	return ids
}

func npOmittedEntries(rs *Ruleset) []Entry {
	var es []Entry
	for _, o := range rs.Omitted {
		es = append(es, o.Entry)
	}
	return es
}

func npOmittedNetwork(rs *Ruleset) (n int) {
	for _, o := range rs.Omitted {
		if !o.Proxy {
			n++
		}
	}
	return n
}

// With ad_forest set, netapp-cvo-aws's Active Directory rows are ipBlocks
// of that range on exactly the document's protocols and ports, in order.
func TestNetworkPolicyKnownProduct(t *testing.T) {
	const forest = "198.51.100.0/24"
	p := compile(t, map[string]string{"ad_forest": forest})
	_, out, skips := npRender(t, p, []string{"netapp-cvo-aws"}, Options{Direction: Egress})
	np := npDecode(t, "netapp-cvo-aws", out)

	var got []string
	for _, r := range np.Spec.Egress {
		if len(r.To) == 1 && r.To[0].IPBlock.CIDR == forest {
			got = append(got, npRuleString(r.Ports))
		}
	}
	// The document's rows, read from the file as written.
	var want []string
	for _, f := range p.Catalog().Product("netapp-cvo-aws").Files {
		for _, nr := range f.Network {
			if nr.Destination == "${ad_forest}" && nr.Direction == "egress" {
				want = append(want, strings.ToUpper(nr.Protocol)+" "+strings.Join(nr.Ports, ","))
			}
		}
	}
	head := []string{"TCP 88", "UDP 137", "UDP 138", "TCP 139", "TCP 389", "TCP 445", "TCP 464", "UDP 464", "TCP 749"}
	if len(got) < len(head) || !slices.Equal(got[:len(head)], head) {
		t.Errorf("the first Active Directory rules are %q, want %q", got, head)
	}
	if !slices.Equal(got, want) || len(want) < 18 {
		t.Errorf("Active Directory rules:\n got %q\nwant %q", got, want)
	}
	for _, s := range skips {
		if strings.Contains(s.Reason, "ad_forest") {
			t.Errorf("%s skipped with ad_forest set: %s", s.ID, s.Reason)
		}
	}
	kerberos := regexp.MustCompile(`\n    # netapp-cvo-aws/n\d+ tcp 88 to 198\.51\.100\.0/24 \| 001_1cb75aa83d0a3982\.txt \| ` +
		`Active Directory - Kerberos V authentication \(from node management LIF\)\n` +
		`    - ports:\n      - port: 88\n        protocol: TCP\n      to:\n      - ipBlock:\n          cidr: 198\.51\.100\.0/24\n`)
	if !kerberos.MatchString(out) {
		t.Errorf("output lacks the Kerberos rule as\n%s", kerberos)
	}
}

// npRuleString is a rule's ports as "TCP 88" or "UDP 1-65535".
// asAPIPorts reads egret's port structs as the API's, through their JSON.
func asAPIPorts(t *testing.T, ports []npPort) []networkingv1.NetworkPolicyPort {
	t.Helper()
	data, err := json.Marshal(ports)
	if err != nil {
		t.Fatal(err)
	}
	var api []networkingv1.NetworkPolicyPort
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&api); err != nil {
		t.Fatal(err)
	}
	return api
}

func npRuleString(ports []networkingv1.NetworkPolicyPort) string {
	var proto string
	var s []string
	for _, p := range ports {
		proto = string(*p.Protocol)
		r := ""
		if p.Port != nil {
			r = p.Port.String()
		}
		if p.EndPort != nil {
			r += fmt.Sprintf("-%d", *p.EndPort)
		}
		s = append(s, r)
	}
	return proto + " " + strings.Join(s, ",")
}

// Ranges are port and endPort; an IPv6 range is an IPv6 ipBlock; a name
// is a comment and a Skip; any host is both families.
func TestNetworkPolicyRules(t *testing.T) {
	cases := []struct {
		name   string
		e      Entry
		peers  []string
		ports  string
		reason string
	}{
		{"range", Entry{Protocol: "tcp", Direction: "egress", CIDR: netip.MustParsePrefix("10.1.0.0/16"),
			Ports: []allowlists.PortRange{{Lo: 18600, Hi: 18699}, {Lo: 22, Hi: 22}}}, []string{"10.1.0.0/16"}, "TCP 18600-18699,22", ""},
		{"ipv6", Entry{Protocol: "udp", Direction: "ingress", CIDR: netip.MustParsePrefix("2001:db8::/48"),
			Ports: []allowlists.PortRange{{Lo: 53, Hi: 53}}}, []string{"2001:db8::/48"}, "UDP 53", ""},
		{"no ports", Entry{Protocol: "udp", Direction: "egress", CIDR: netip.MustParsePrefix("192.0.2.1/32")},
			[]string{"192.0.2.1/32"}, "UDP ", ""},
		{"name", Entry{Protocol: "udp", Direction: "egress", Host: "*.pool.ntp.org",
			Ports: []allowlists.PortRange{{Lo: 123, Hi: 123}}}, nil, "", "NetworkPolicy has no names"},
		{"icmp", Entry{Protocol: "icmp", Direction: "egress", CIDR: netip.MustParsePrefix("0.0.0.0/0")}, nil, "", "NetworkPolicy has no ICMP"},
		{"unset", Entry{Protocol: "tcp", Direction: "egress", Unset: "dns_server"}, nil, "", "destination ${dns_server} has no value; set it with --var dns_server=CIDR"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.e.ID = allowlists.ID{Product: "p", Kind: allowlists.KindNetwork, N: 1}
			peers, ports, reason := npRule(&c.e)
			if !strings.HasPrefix(reason, c.reason) || (c.reason == "") != (reason == "") {
				t.Fatalf("reason %q, want %q", reason, c.reason)
			}
			var cidrs []string
			for _, p := range peers {
				cidrs = append(cidrs, p.IPBlock.CIDR)
			}
			if !slices.Equal(cidrs, c.peers) {
				t.Errorf("peers %q, want %q", cidrs, c.peers)
			}
			if reason == "" && npRuleString(asAPIPorts(t, ports)) != c.ports {
				t.Errorf("ports %q, want %q", npRuleString(asAPIPorts(t, ports)), c.ports)
			}
		})
	}
}

// The proxy rules are comments that say they go through egret, with the
// rule to add for egret and for DNS; they are not skips.
func TestNetworkPolicyProxyRules(t *testing.T) {
	p := compile(t, nil)
	rs, out, skips := npRender(t, p, []string{"dt-cloud-connector"}, Options{Direction: Egress})
	for _, s := range skips {
		if s.ID.Kind == allowlists.KindProxy {
			t.Errorf("proxy rule %s skipped: %s", s.ID, s.Reason)
		}
	}
	proxy := 0
	for i := range rs.Entries {
		if e := &rs.Entries[i]; e.Proxy {
			proxy++
			if !strings.Contains(out, "    # "+e.Describe()+"\n") {
				t.Errorf("no comment for %s", e.ID)
			}
		}
	}
	if proxy == 0 {
		t.Fatal("dt-cloud-connector has no proxy rules")
	}
	for _, s := range []string{
		"# Proxy rules: TCP through egret",
		"A NetworkPolicy cannot know egret's address: ADD A RULE",
		"#     ports: [{port: 3128, protocol: TCP}]",
		"# DNS: the pods resolve egret's Service name",
		"#         podSelector: {matchLabels: {k8s-app: kube-dns}}",
		"  # Every pod in the namespace: narrow it",
		"  podSelector: {}\n",
		"  policyTypes: [Egress]\n",
	} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q", s)
		}
	}
}

// policyTypes follows the direction; with no rule of a listed type the
// list is empty, denying that way.
func TestNetworkPolicyTypes(t *testing.T) {
	p := compile(t, nil)
	for _, c := range []struct {
		dir  Direction
		want []networkingv1.PolicyType
	}{
		{Egress, []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}},
		{Both, []networkingv1.PolicyType{networkingv1.PolicyTypeEgress, networkingv1.PolicyTypeIngress}},
		{Ingress, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}},
	} {
		_, out, _ := npRender(t, p, []string{"dt-cloud-connector"}, Options{Direction: c.dir})
		np := npDecode(t, string(c.dir), out)
		if !slices.Equal(np.Spec.PolicyTypes, c.want) {
			t.Errorf("%s: policyTypes %v, want %v", c.dir, np.Spec.PolicyTypes, c.want)
		}
		if c.dir == Ingress && strings.Contains(out, "\n  egress:") {
			t.Errorf("%s: an egress list with Egress not in policyTypes", c.dir)
		}
		if c.dir != Egress && np.Spec.Ingress == nil && !strings.Contains(out, "\n  ingress: []\n") {
			t.Errorf("%s: no ingress list", c.dir)
		}
	}
}

func TestNetworkPolicyName(t *testing.T) {
	for _, c := range []struct {
		name     string
		products []string
		want     string
	}{
		{"egret", []string{"netapp-cvo-aws"}, "egret-netapp-cvo-aws"},
		{"Edge_FW", []string{"dt-cloud-connector"}, "edge-fw-dt-cloud-connector"},
		{"egret", []string{"a-product-whose-name-is-long-enough-to-pass-the-limit-of-sixty-three"}, "egret-a-product-whose-name-is-long-enough-to-pass-the-limit-of"},
		{"", []string{"dt-cloud-connector"}, "dt-cloud-connector"},
		{"egret", []string{"first", "second"}, "egret-first"},
	} {
		got := npName(&Ruleset{Products: c.products, Options: Options{Name: c.name}})
		if got != c.want {
			t.Errorf("npName(%s, %v) = %q, want %q", c.name, c.products, got, c.want)
		}
		if msgs := validation.IsDNS1123Label(got); len(msgs) > 0 {
			t.Errorf("npName(%s, %v) = %q: %v", c.name, c.products, got, msgs)
		}
	}
}
