package deploy_test

import (
	"net/netip"
	"os"
	"slices"
	"strconv"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// egret as the resolver: each deployment hands out egret's DNS door, and
// the policy it mounts serves one on the port the rest of the deployment
// sends DNS to. The policies themselves load with config.Load in the
// tests of each deployment (TestComposeSegment, TestSidecarManifest,
// TestGatewayManifest); here only their dns key is read.

// dnsPort returns the port of the policy's dns key (the DNS door's
// address), failing when the policy serves no DNS.
func dnsPort(t *testing.T, where, policy string) int {
	t.Helper()
	var keys struct {
		DNS string `json:"dns"`
	}
	if err := yaml.Unmarshal([]byte(policy), &keys); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	if keys.DNS == "" {
		t.Fatalf("%s: no dns key: egret serves no DNS door, yet the deployment sends DNS to it", where)
	}
	return portOf(t, keys.DNS)
}

func TestComposeHandsOutEgretAsResolver(t *testing.T) {
	p := loadCompose(t, "compose/compose.yaml")
	egret, workload := p.Services["egret"], p.Services["workload"]
	seg := egret.Networks["segment"]
	if seg == nil || seg.Ipv4Address == "" {
		t.Fatal("egret has no fixed address on the segment: the workload's dns: cannot name it")
	}
	addr, err := netip.ParseAddr(seg.Ipv4Address)
	if err != nil {
		t.Fatal(err)
	}
	inSubnet := slices.ContainsFunc(p.Networks["segment"].Ipam.Config, func(c *types.IPAMPool) bool {
		pfx, err := netip.ParsePrefix(c.Subnet)
		return err == nil && pfx.Contains(addr)
	})
	if !inSubnet {
		t.Errorf("egret's segment address %s is outside the segment's ipam subnets", addr)
	}
	if !slices.Equal(workload.DNS, []string{seg.Ipv4Address}) {
		t.Errorf("workload dns %v, want only egret's segment address %s", workload.DNS, seg.Ipv4Address)
	}
	i := slices.IndexFunc(egret.Volumes, func(v types.ServiceVolumeConfig) bool { return v.Target == "/etc/egret/egret.yaml" })
	if i < 0 {
		t.Fatal("egret mounts no /etc/egret/egret.yaml")
	}
	text, err := os.ReadFile(egret.Volumes[i].Source)
	if err != nil {
		t.Fatal(err)
	}
	if port := dnsPort(t, egret.Volumes[i].Source, string(text)); port != 53 {
		t.Errorf("egret's DNS door on port %d: Docker's dns: sends to port 53", port)
	}
}

func TestSidecarRedirectsDNSToEgret(t *testing.T) {
	m := readManifests(t, "kubernetes/sidecar.yaml")
	spec := &one(t, "Deployment", m.deployments, "connector").Spec.Template.Spec
	_, text := policyFromConfigMap(t, m, spec)
	port := dnsPort(t, "ConfigMap egret-sidecar", text)
	opts := scriptOptions(t, spec.InitContainers[0].Args)
	if opts["--dns-port"] != strconv.Itoa(port) {
		t.Errorf("egret-redirect --dns-port %q, want the policy's DNS port %d", opts["--dns-port"], port)
	}
	egret := container(t, spec.InitContainers, "egret")
	for _, proto := range []corev1.Protocol{corev1.ProtocolUDP, corev1.ProtocolTCP} {
		if !slices.ContainsFunc(egret.Ports, func(p corev1.ContainerPort) bool { return int(p.ContainerPort) == port && p.Protocol == proto }) {
			t.Errorf("egret does not declare its DNS port %d/%s", port, proto)
		}
	}
	// The pod keeps kube-dns in its resolv.conf: the redirect takes the
	// queries, and egret, excepted from it, forwards to kube-dns.
	if spec.DNSPolicy == corev1.DNSNone {
		t.Error("dnsPolicy None: egret's upstream would be the dnsConfig's, not kube-dns")
	}
}

func TestGatewayIsTheClientsResolver(t *testing.T) {
	m := readManifests(t, "kubernetes/gateway.yaml")
	gw := one(t, "Deployment", m.deployments, "egret")
	egret := container(t, gw.Spec.Template.Spec.Containers, "egret")
	_, text := policyFromConfigMap(t, m, &gw.Spec.Template.Spec)
	port := dnsPort(t, "ConfigMap egret-gateway", text)

	svc := one(t, "Service", m.services, "egret")
	ip, err := netip.ParseAddr(svc.Spec.ClusterIP)
	if err != nil {
		t.Fatalf("Service egret clusterIP %q: want a fixed address, which dnsConfig can name", svc.Spec.ClusterIP)
	}
	for _, proto := range []corev1.Protocol{corev1.ProtocolUDP, corev1.ProtocolTCP} {
		ok := slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool {
			return p.Port == 53 && p.Protocol == proto && namedPort(t, egret, p.TargetPort) == port
		})
		if !ok {
			t.Errorf("Service egret has no port 53/%s to the DNS door's port %d: %+v", proto, port, svc.Spec.Ports)
		}
	}
	np := one(t, "NetworkPolicy", m.netpols, "egret")
	admitted := map[corev1.Protocol]bool{}
	for _, rule := range np.Spec.Ingress {
		for _, p := range rule.Ports {
			if p.Port != nil && namedPort(t, egret, *p.Port) == port && p.Protocol != nil {
				admitted[*p.Protocol] = true
			}
		}
	}
	if !admitted[corev1.ProtocolUDP] || !admitted[corev1.ProtocolTCP] {
		t.Errorf("the NetworkPolicy admits the DNS door's port %d over %v, want UDP and TCP", port, admitted)
	}

	client := one(t, "Deployment", m.deployments, "connector")
	spec := &client.Spec.Template.Spec
	if spec.DNSPolicy != corev1.DNSNone || spec.DNSConfig == nil || !slices.Equal(spec.DNSConfig.Nameservers, []string{ip.String()}) {
		t.Errorf("the client's dnsPolicy %q dnsConfig %+v: want None and only the Service's address %s", spec.DNSPolicy, spec.DNSConfig, ip)
	}
	if client.Spec.Template.Labels["egret.io/client"] != "true" {
		t.Error("the client is not labelled egret.io/client: the NetworkPolicy would not admit it")
	}
	app := container(t, spec.Containers, "app")
	i := slices.IndexFunc(app.Env, func(e corev1.EnvVar) bool { return e.Name == "HTTPS_PROXY" })
	if i < 0 {
		t.Fatal("the client has no HTTPS_PROXY")
	}
	var keys struct {
		Listen string `json:"listen"`
	}
	if err := yaml.Unmarshal([]byte(text), &keys); err != nil {
		t.Fatal(err)
	}
	want := "@" + ip.String() + ":" + strconv.Itoa(portOf(t, keys.Listen))
	if v := app.Env[i].Value; len(v) < len(want) || v[len(v)-len(want):] != want {
		t.Errorf("HTTPS_PROXY %q: want the Service's address and the proxy port (%s)", v, want)
	}
}
