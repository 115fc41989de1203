package export

import (
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/egret-proxy/egret/allowlists"
	"sigs.k8s.io/yaml"
)

// WriteNetworkPolicy writes one Kubernetes NetworkPolicy
// (networking.k8s.io/v1) for the pods that run the products, to apply with
// `kubectl apply -n NAMESPACE -f`. A NetworkPolicy matches addresses, not
// names, so it carries the network rules whose far end is a CIDR (or any
// host), TCP and UDP, one policy rule per row with the row's provenance as
// a comment above it. The rest is written as comments with the reason and
// reported: names and patterns, ICMP, destinations whose variable has no
// value.
//
// Proxy rules are not skipped: egret carries them. The policy lists them
// as comments and says what rule the operator must add so that the pods
// reach egret, whose address a NetworkPolicy cannot know; the same for the
// cluster DNS.
//
// policyTypes is Egress, with Ingress as well when the ingress rules are
// exported; with --direction ingress alone it is Ingress only, because an
// Egress type without the egress rules would deny them all.
func WriteNetworkPolicy(w io.Writer, rs *Ruleset) ([]Skip, error) {
	np, skips, err := npCollect(rs)
	if err != nil {
		return skips, err
	}
	ew := &errWriter{w: w}
	rs.header(ew, "#", "networkpolicy")
	ew.printf("# Apply it in the namespace of the products' pods: kubectl apply -n NAMESPACE -f FILE.\n")
	ew.printf("# A NetworkPolicy matches addresses, not names: only rules to a CIDR are policy rules here;\n")
	ew.printf("# every other row is a comment saying why.\n")
	ew.printf("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n")
	ew.printf("  name: %s\n  labels:\n    app.kubernetes.io/managed-by: egret\n", npName(rs))
	ew.printf("spec:\n")
	ew.printf("  # Every pod in the namespace: narrow it to the products' pods, e.g.\n")
	ew.printf("  #   podSelector: {matchLabels: {app.kubernetes.io/name: APP}}\n")
	ew.printf("  podSelector: {}\n")
	ew.printf("  policyTypes: [%s]\n", strings.Join(npPolicyTypes(rs.Direction), ", "))
	if rs.Direction != Ingress {
		npKey(ew, "egress", np.rules["egress"])
		npEgretNote(ew, rs, np.proxy)
		npDNSNote(ew)
		npBlocks(ew, np.egress)
	} else if len(np.proxy) > 0 {
		ew.printf("  # Egress is not in policyTypes (--direction ingress); the proxy rules, carried by egret:\n")
		for _, l := range np.proxy {
			ew.printf("  %s\n", l)
		}
	}
	if rs.Direction != Egress {
		npKey(ew, "ingress", np.rules["ingress"])
		npBlocks(ew, np.ingress)
	}
	if ew.err == nil {
		ew.err = rs.WriteOmitted(w, "#")
	}
	return skips, ew.err
}

// npParts is a ruleset sorted for the policy: the egress and ingress list
// items (policy rules and the comments of rows without one), the proxy
// rules' comment lines, and how many policy rules each direction has.
type npParts struct {
	egress, ingress, proxy []string
	rules                  map[string]int
}

func npCollect(rs *Ruleset) (npParts, []Skip, error) {
	np := npParts{rules: map[string]int{}}
	var skips []Skip
	for i := range rs.Entries {
		e := &rs.Entries[i]
		if e.Proxy {
			np.proxy = append(np.proxy, "# "+oneLine(e.Describe()))
			continue
		}
		block, skip, err := npBlock(e)
		if err != nil {
			return np, skips, fmt.Errorf("%s: %w", e.ID, err)
		}
		if skip != "" {
			skips = append(skips, Skip{ID: e.ID, Reason: skip})
		} else {
			np.rules[e.Direction]++
		}
		if e.Direction == "ingress" {
			np.ingress = append(np.ingress, block)
		} else {
			np.egress = append(np.egress, block)
		}
	}
	return np, skips, nil
}

func npPolicyTypes(d Direction) []string {
	switch d {
	case Ingress:
		return []string{"Ingress"}
	case Both:
		return []string{"Egress", "Ingress"}
	}
	return []string{"Egress"}
}

// npKey starts the egress or ingress list; with no rules it is an empty
// list, which for a type in policyTypes denies that direction.
func npKey(ew *errWriter, key string, rules int) {
	if rules == 0 {
		ew.printf("  %s: []\n", key)
		return
	}
	ew.printf("  %s:\n", key)
}

func npBlocks(ew *errWriter, blocks []string) {
	for _, b := range blocks {
		ew.printf("%s", b)
	}
}

// npEgretNote lists the proxy rules and the rule the operator must add so
// that the pods reach egret.
func npEgretNote(ew *errWriter, rs *Ruleset, proxy []string) {
	if len(proxy) == 0 {
		return
	}
	ports := rs.ProxyPorts()
	portList := make([]string, len(ports))
	for i, p := range ports {
		portList[i] = fmt.Sprint(p)
	}
	ew.printf("    # Proxy rules: TCP through egret, which decides each connection by name; they are not\n")
	ew.printf("    # policy rules here. A NetworkPolicy cannot know egret's address: ADD A RULE letting these\n")
	ew.printf("    # pods reach egret, or they reach nothing the proxy rules allow. For the gateway of\n")
	ew.printf("    # deploy/kubernetes/gateway.yaml (label the pods egret.io/client: \"true\"), its Service's pods:\n")
	npComments(ew, []string{
		"#   - to:",
		"#       - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: EGRET-NAMESPACE}}",
		"#         podSelector: {matchLabels: {app.kubernetes.io/name: egret, app.kubernetes.io/component: gateway}}",
		"#     ports: [{port: 3128, protocol: TCP}]   # egret's --listen port",
	})
	if len(portList) > 0 {
		ew.printf("    # With egret as a sidecar (deploy/kubernetes/sidecar.yaml) egret's own connections leave\n")
		ew.printf("    # from these pods: allow TCP to the internet on the proxy rules' ports (%s) instead;\n", strings.Join(portList, ", "))
		ew.printf("    # the pod's redirect sends the application's connections to egret.\n")
	}
	npComments(ew, proxy)
}

func npDNSNote(ew *errWriter) {
	ew.printf("    # DNS: the pods resolve egret's Service name, and any name they dial themselves (egret resolves\n")
	ew.printf("    # the proxy rules' names). Add a rule to the cluster DNS, e.g.\n")
	npComments(ew, []string{
		"#   - to:",
		"#       - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}",
		"#         podSelector: {matchLabels: {k8s-app: kube-dns}}",
		"#     ports: [{port: 53, protocol: UDP}, {port: 53, protocol: TCP}]",
	})
}

func npComments(ew *errWriter, lines []string) {
	for _, l := range lines {
		ew.printf("    %s\n", l)
	}
}

// npBlock is a network rule as a list item of egress or ingress, under its
// provenance comment, or as comments only with the reason it has no rule.
func npBlock(e *Entry) (block, skip string, err error) {
	var b strings.Builder
	fmt.Fprintf(&b, "    # %s\n", oneLine(e.Describe()))
	peers, ports, skip := npRule(e)
	if skip != "" {
		fmt.Fprintf(&b, "    # not expressed: %s\n", skip)
		return b.String(), skip, nil
	}
	var rule any = npEgressRule{To: peers, Ports: ports}
	if e.Direction == "ingress" {
		rule = npIngressRule{From: peers, Ports: ports}
	}
	item, err := yamlItem(rule, "    ")
	if err != nil {
		return "", "", err
	}
	b.WriteString(item)
	return b.String(), "", nil
}

// npRule is the far end and ports of a network rule, or why a
// NetworkPolicy cannot carry it.
func npRule(e *Entry) ([]npPeer, []npPort, string) {
	if e.Unset != "" {
		return nil, nil, fmt.Sprintf("destination ${%s} has no value; set it with --var %s=CIDR", e.Unset, e.Unset)
	}
	var proto string
	switch e.Protocol {
	case "tcp":
		proto = "TCP"
	case "udp":
		proto = "UDP"
	case "icmp":
		return nil, nil, "NetworkPolicy has no ICMP (its protocols are TCP, UDP and SCTP)"
	default:
		return nil, nil, fmt.Sprintf("protocol %q is not one a NetworkPolicy knows", e.Protocol)
	}
	var cidrs []netip.Prefix
	switch e.Kind() {
	case "cidr":
		cidrs = []netip.Prefix{e.CIDR.Masked()}
	case "any-host":
		cidrs = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
	default:
		return nil, nil, fmt.Sprintf("NetworkPolicy has no names, only CIDRs (ipBlock): %s is a name or pattern; "+
			"carry it with a DNS-aware filter (egret export --format nftables and the DNS door)", e.Host)
	}
	peers := make([]npPeer, len(cidrs))
	for i, c := range cidrs {
		peers[i] = npPeer{IPBlock: &npIPBlock{CIDR: c.String()}}
	}
	return peers, npPorts(proto, e.Ports), ""
}

// npPorts is one policy port per range, endPort for a range; no ports
// means every port of the protocol.
func npPorts(proto string, ranges []allowlists.PortRange) []npPort {
	if len(ranges) == 0 {
		return []npPort{{Protocol: proto}}
	}
	ports := make([]npPort, len(ranges))
	for i, r := range ranges {
		port := int32(r.Lo)
		ports[i] = npPort{Protocol: proto, Port: &port}
		if r.Hi != r.Lo {
			end := int32(r.Hi)
			ports[i].EndPort = &end
		}
	}
	return ports
}

// The NetworkPolicy rule types, as the API writes them. They are the
// fields of k8s.io/api/networking/v1 that egret fills, declared here so that
// the binary does not link the Kubernetes API packages (10 MB) for five
// structs; the tests decode every output strictly into the real types.
type (
	npEgressRule struct {
		Ports []npPort `json:"ports,omitempty"`
		To    []npPeer `json:"to,omitempty"`
	}
	npIngressRule struct {
		Ports []npPort `json:"ports,omitempty"`
		From  []npPeer `json:"from,omitempty"`
	}
	npPeer struct {
		IPBlock *npIPBlock `json:"ipBlock,omitempty"`
	}
	npIPBlock struct {
		CIDR string `json:"cidr"`
	}
	npPort struct {
		Protocol string `json:"protocol,omitempty"`
		Port     *int32 `json:"port,omitempty"`
		EndPort  *int32 `json:"endPort,omitempty"`
	}
)

// yamlItem marshals v as one item of a YAML block sequence at indent.
func yamlItem(v any, indent string) (string, error) {
	data, err := yaml.Marshal(v)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for i, line := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
		lead := "  "
		if i == 0 {
			lead = "- "
		}
		b.WriteString(indent + lead + line + "\n")
	}
	return b.String(), nil
}

// npName is metadata.name: the --name and the first product, as a DNS-1123
// label (lower case, '-' for anything else, at most 63 characters).
func npName(rs *Ruleset) string {
	name := rs.Name
	if len(rs.Products) > 0 {
		name += "-" + rs.Products[0]
	}
	name = strings.Map(func(c rune) rune {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			return c
		case c >= 'A' && c <= 'Z':
			return c - 'A' + 'a'
		}
		return '-'
	}, name)
	if len(name) > 63 {
		name = name[:63]
	}
	if name = strings.Trim(name, "-"); name == "" {
		return "egret"
	}
	return name
}
