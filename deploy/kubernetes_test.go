package deploy_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// manifests is a multi-document Kubernetes file decoded strictly into the
// real API types: an unknown or misspelt field fails the test.
type manifests struct {
	configMaps  map[string]*corev1.ConfigMap
	deployments map[string]*appsv1.Deployment
	services    map[string]*corev1.Service
	hpas        map[string]*autoscalingv2.HorizontalPodAutoscaler
	pdbs        map[string]*policyv1.PodDisruptionBudget
	netpols     map[string]*networkingv1.NetworkPolicy
}

func readManifests(t *testing.T, file string) *manifests {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	m := &manifests{
		configMaps: map[string]*corev1.ConfigMap{}, deployments: map[string]*appsv1.Deployment{},
		services: map[string]*corev1.Service{}, hpas: map[string]*autoscalingv2.HorizontalPodAutoscaler{},
		pdbs: map[string]*policyv1.PodDisruptionBudget{}, netpols: map[string]*networkingv1.NetworkPolicy{},
	}
	r := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for i := 0; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: document %d: %v", file, i, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			t.Fatalf("%s: document %d: %v", file, i, err)
		}
		where := fmt.Sprintf("%s: %s (document %d)", file, tm.Kind, i)
		switch tm.APIVersion + " " + tm.Kind {
		case "v1 ConfigMap":
			decodeStrict(t, where, doc, m.configMaps)
		case "apps/v1 Deployment":
			decodeStrict(t, where, doc, m.deployments)
		case "v1 Service":
			decodeStrict(t, where, doc, m.services)
		case "autoscaling/v2 HorizontalPodAutoscaler":
			decodeStrict(t, where, doc, m.hpas)
		case "policy/v1 PodDisruptionBudget":
			decodeStrict(t, where, doc, m.pdbs)
		case "networking.k8s.io/v1 NetworkPolicy":
			decodeStrict(t, where, doc, m.netpols)
		default:
			t.Fatalf("%s: document %d: unexpected %s %s", file, i, tm.APIVersion, tm.Kind)
		}
	}
	return m
}

// decodeStrict decodes doc into a new T, failing on unknown fields, and
// files it by name.
func decodeStrict[T any, P interface {
	*T
	GetName() string
}](t *testing.T, where string, doc []byte, into map[string]P) {
	t.Helper()
	obj := P(new(T))
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	if obj.GetName() == "" {
		t.Fatalf("%s: no metadata.name", where)
	}
	if _, dup := into[obj.GetName()]; dup {
		t.Fatalf("%s: a second object named %s", where, obj.GetName())
	}
	into[obj.GetName()] = obj
}

func stripComments(doc []byte) []byte {
	var b bytes.Buffer
	for line := range bytes.Lines(doc) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			b.Write(line)
		}
	}
	return b.Bytes()
}

func one[T any](t *testing.T, what string, m map[string]T, name string) T {
	t.Helper()
	v, ok := m[name]
	if !ok {
		t.Fatalf("no %s named %s", what, name)
	}
	return v
}

func container(t *testing.T, cs []corev1.Container, name string) *corev1.Container {
	t.Helper()
	i := slices.IndexFunc(cs, func(c corev1.Container) bool { return c.Name == name })
	if i < 0 {
		t.Fatalf("no container %s", name)
	}
	return &cs[i]
}

// namedPort resolves a probe's or a Service's port to a number.
func namedPort(t *testing.T, c *corev1.Container, p intstr.IntOrString) int {
	t.Helper()
	if p.Type == intstr.Int {
		return p.IntValue()
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort)
		}
	}
	t.Fatalf("container %s has no port named %q", c.Name, p.StrVal)
	return 0
}

// requireEgretContainer checks what every egret container must be: the
// egret image, non-root as 65532 on a read-only root with no capability,
// probed on /healthz and /readyz at the admin address of its policy.
func requireEgretContainer(t *testing.T, c *corev1.Container, cfg configPorts) {
	t.Helper()
	if !strings.HasPrefix(c.Image, "egret:") {
		t.Errorf("container %s: image %q, want egret:<tag>", c.Name, c.Image)
	}
	if want := []string{"serve", "--config", cfg.file}; !slices.Equal(c.Args, want) {
		t.Errorf("container %s: args %q, want %q", c.Name, c.Args, want)
	}
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Fatalf("container %s: no securityContext", c.Name)
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
		t.Errorf("container %s: runAsNonRoot is not true", c.Name)
	case sc.RunAsUser == nil || *sc.RunAsUser != egretUID:
		t.Errorf("container %s: runAsUser is not %d", c.Name, egretUID)
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Errorf("container %s: readOnlyRootFilesystem is not true", c.Name)
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Errorf("container %s: allowPrivilegeEscalation is not false", c.Name)
	case sc.Privileged != nil && *sc.Privileged:
		t.Errorf("container %s: privileged", c.Name)
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0:
		t.Errorf("container %s: capabilities %+v, want drop [ALL] and add none", c.Name, sc.Capabilities)
	}
	probes := map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe}
	wantPath := map[string]string{"readiness": "/readyz", "liveness": "/healthz"}
	for kind, p := range probes {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("container %s: no HTTP %s probe", c.Name, kind)
			continue
		}
		if p.HTTPGet.Path != wantPath[kind] {
			t.Errorf("container %s: %s probe on %s, want %s", c.Name, kind, p.HTTPGet.Path, wantPath[kind])
		}
		if got := namedPort(t, c, p.HTTPGet.Port); got != cfg.admin {
			t.Errorf("container %s: %s probe on port %d, but the policy's admin listens on %d", c.Name, kind, got, cfg.admin)
		}
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("container %s: want a CPU request and a memory limit, got %+v", c.Name, c.Resources)
	}
	mounted := slices.ContainsFunc(c.VolumeMounts, func(v corev1.VolumeMount) bool {
		return v.ReadOnly && strings.HasPrefix(cfg.file, strings.TrimSuffix(v.MountPath, "/")+"/") && v.Name == cfg.volume
	})
	if !mounted {
		t.Errorf("container %s: %s is not on a read-only mount of volume %s: %+v", c.Name, cfg.file, cfg.volume, c.VolumeMounts)
	}
}

// configPorts is what the manifests must agree on with the policy.
type configPorts struct {
	file   string // --config path inside the container
	volume string // the volume holding the ConfigMap
	admin  int
}

// policyFromConfigMap finds the ConfigMap volume of spec and loads its
// egret.yaml.
func policyFromConfigMap(t *testing.T, m *manifests, spec *corev1.PodSpec) (configPorts, string) {
	t.Helper()
	for _, v := range spec.Volumes {
		if v.ConfigMap == nil {
			continue
		}
		cm := one(t, "ConfigMap", m.configMaps, v.ConfigMap.Name)
		text, ok := cm.Data["egret.yaml"]
		if !ok {
			t.Fatalf("ConfigMap %s has no egret.yaml", cm.Name)
		}
		return configPorts{file: "/etc/egret/egret.yaml", volume: v.Name}, text
	}
	t.Fatal("the pod mounts no ConfigMap")
	return configPorts{}, ""
}

func TestSidecarManifest(t *testing.T) {
	m := readManifests(t, "kubernetes/sidecar.yaml")
	dep := one(t, "Deployment", m.deployments, "connector")
	spec := &dep.Spec.Template.Spec
	ports, text := policyFromConfigMap(t, m, spec)
	cfg := loadPolicy(t, "ConfigMap egret-sidecar", text)
	if cfg.Transparent == "" {
		t.Fatal("the sidecar's policy has no transparent listener")
	}
	ports.admin = portOf(t, cfg.Admin)
	if host, _, _ := strings.Cut(cfg.Admin, ":"); host != "" {
		t.Errorf("admin %q: probes come from the kubelet, so listen on every address (:9090)", cfg.Admin)
	}

	if len(spec.InitContainers) < 2 || spec.InitContainers[0].Name != "egret-redirect" {
		t.Fatalf("want the init container egret-redirect first, then egret: %v", names(spec.InitContainers))
	}
	redirect := &spec.InitContainers[0]
	requireRedirectInit(t, redirect, portOf(t, cfg.Transparent))

	egret := container(t, spec.InitContainers, "egret")
	if egret.RestartPolicy == nil || *egret.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Error("egret is not a native sidecar (restartPolicy: Always): the application could start before it")
	}
	requireEgretContainer(t, egret, ports)
	if egret.StartupProbe == nil || egret.StartupProbe.HTTPGet == nil || egret.StartupProbe.HTTPGet.Path != "/readyz" {
		t.Error("egret has no startup probe on /readyz: the application would start before egret listens")
	}
	if !slices.ContainsFunc(egret.Ports, func(p corev1.ContainerPort) bool { return int(p.ContainerPort) == portOf(t, cfg.Transparent) }) {
		t.Errorf("egret does not declare its transparent port %s", cfg.Transparent)
	}

	for _, app := range spec.Containers {
		sc := app.SecurityContext
		if sc == nil || sc.RunAsUser == nil || *sc.RunAsUser == egretUID {
			t.Errorf("container %s must run as a uid other than %d, set explicitly: the redirect lets that uid through", app.Name, egretUID)
		}
	}
}

// requireRedirectInit checks the init container that installs the
// redirect: the redirect image, its script's options (host mode, egret's
// uid excluded, the policy's transparent port), root with NET_ADMIN and
// NET_RAW only.
func requireRedirectInit(t *testing.T, c *corev1.Container, transparentPort int) {
	t.Helper()
	if !strings.HasPrefix(c.Image, "egret-redirect:") || len(c.Command) != 0 {
		t.Errorf("egret-redirect: image %q command %q, want egret-redirect:<tag> and its entrypoint (egret-iptables)", c.Image, c.Command)
	}
	opts := scriptOptions(t, c.Args)
	if opts["--uid"] != "65532" {
		t.Errorf("egret-redirect: --uid %q: egret's uid 65532 must be excluded or its own connections loop", opts["--uid"])
	}
	if opts["--mode"] != "host" || opts["--port"] != strconv.Itoa(transparentPort) || opts["command"] != "apply" {
		t.Errorf("egret-redirect: args %q, want --mode host --port %d ... apply", c.Args, transparentPort)
	}
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatal("egret-redirect: no securityContext.capabilities")
	}
	add := slices.Clone(sc.Capabilities.Add)
	slices.Sort(add)
	if !slices.Equal(add, []corev1.Capability{"NET_ADMIN", "NET_RAW"}) || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("egret-redirect: capabilities %+v, want drop [ALL], add [NET_ADMIN NET_RAW] only", sc.Capabilities)
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("egret-redirect: privileged; NET_ADMIN and NET_RAW are enough")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("egret-redirect: allowPrivilegeEscalation is not false")
	}
}

// scriptOptions reads the redirect script's --option value pairs and its
// command (key "command").
func scriptOptions(t *testing.T, args []string) map[string]string {
	t.Helper()
	opts := map[string]string{}
	for i := 0; i < len(args); i++ {
		if strings.HasPrefix(args[i], "--") && i+1 < len(args) {
			opts[args[i]] = args[i+1]
			i++
			continue
		}
		opts["command"] = args[i]
	}
	return opts
}

func TestGatewayManifest(t *testing.T) {
	m := readManifests(t, "kubernetes/gateway.yaml")
	dep := one(t, "Deployment", m.deployments, "egret")
	spec := &dep.Spec.Template.Spec
	egret := container(t, spec.Containers, "egret")

	// The policy reads its password from a Secret: the variable must be
	// wired before the policy can load (config checks it is set).
	for _, e := range egret.Env {
		if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
			t.Errorf("env %s: passwords come from a Secret, not the manifest", e.Name)
		}
		t.Setenv(e.Name, "from-the-secret")
	}
	ports, text := policyFromConfigMap(t, m, spec)
	cfg := loadPolicy(t, "ConfigMap egret-gateway", text)
	for _, c := range cfg.Clients {
		if c.PasswordEnv != "" && !slices.ContainsFunc(egret.Env, func(e corev1.EnvVar) bool { return e.Name == c.PasswordEnv }) {
			t.Errorf("client %s reads %s, which the container does not set", c.Name, c.PasswordEnv)
		}
	}
	ports.admin = portOf(t, cfg.Admin)
	requireEgretContainer(t, egret, ports)
	if spec.SecurityContext == nil || spec.SecurityContext.RunAsNonRoot == nil || !*spec.SecurityContext.RunAsNonRoot {
		t.Error("the pod's securityContext does not require runAsNonRoot")
	}

	podLabels := labels.Set(dep.Spec.Template.Labels)
	selects := func(what string, sel *metav1.LabelSelector) {
		t.Helper()
		s, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil || s.Empty() || !s.Matches(podLabels) {
			t.Errorf("%s selector %v does not select the gateway's pods %v (%v)", what, sel, podLabels, err)
		}
	}
	selects("Deployment", dep.Spec.Selector)

	svc := one(t, "Service", m.services, "egret")
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) || len(svc.Spec.Selector) == 0 {
		t.Errorf("Service selector %v does not select the gateway's pods", svc.Spec.Selector)
	}
	proxyPorts := slices.DeleteFunc(slices.Clone(svc.Spec.Ports), func(p corev1.ServicePort) bool { return p.Port == 53 })
	if len(proxyPorts) != 1 || namedPort(t, egret, proxyPorts[0].TargetPort) != portOf(t, cfg.Listen) {
		t.Errorf("Service ports %+v: want one port besides DNS, to the policy's listener %s", svc.Spec.Ports, cfg.Listen)
	}

	hpa := one(t, "HorizontalPodAutoscaler", m.hpas, "egret")
	if ref := hpa.Spec.ScaleTargetRef; ref.Kind != "Deployment" || ref.Name != dep.Name || ref.APIVersion != "apps/v1" {
		t.Errorf("HPA scales %+v, not the Deployment %s", ref, dep.Name)
	}
	if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas < 2 || hpa.Spec.MaxReplicas <= *hpa.Spec.MinReplicas {
		t.Errorf("HPA replicas %v..%d: want at least 2 and room to grow", hpa.Spec.MinReplicas, hpa.Spec.MaxReplicas)
	}

	pdb := one(t, "PodDisruptionBudget", m.pdbs, "egret")
	selects("PodDisruptionBudget", pdb.Spec.Selector)
	if pdb.Spec.MaxUnavailable == nil && pdb.Spec.MinAvailable == nil {
		t.Error("PodDisruptionBudget sets neither maxUnavailable nor minAvailable")
	}

	np := one(t, "NetworkPolicy", m.netpols, "egret")
	selects("NetworkPolicy", &np.Spec.PodSelector)
	if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}) {
		t.Errorf("NetworkPolicy policyTypes %v, want [Ingress Egress]", np.Spec.PolicyTypes)
	}
	var egressPorts []int
	for _, rule := range np.Spec.Egress {
		for _, p := range rule.Ports {
			egressPorts = append(egressPorts, p.Port.IntValue())
		}
	}
	for _, want := range []int{53, 80, 443} {
		if !slices.Contains(egressPorts, want) {
			t.Errorf("NetworkPolicy egress lacks port %d: %v", want, egressPorts)
		}
	}
	for _, rule := range np.Spec.Ingress {
		for _, p := range rule.Ports {
			namedPort(t, egret, *p.Port) // must name a port the container has
		}
	}

	pre := egret.Lifecycle
	if pre == nil || pre.PreStop == nil || pre.PreStop.Sleep == nil {
		t.Fatal("egret has no preStop sleep: the Service would still send connections after SIGTERM")
	}
	need := pre.PreStop.Sleep.Seconds + int64(cfg.ShutdownGrace.Seconds())
	if spec.TerminationGracePeriodSeconds == nil || *spec.TerminationGracePeriodSeconds < need {
		t.Errorf("terminationGracePeriodSeconds %v < preStop %ds + shutdown_grace %s", spec.TerminationGracePeriodSeconds, pre.PreStop.Sleep.Seconds, cfg.ShutdownGrace)
	}
}

// TestManifestsAreStrict makes sure a misspelt field fails the decoding
// the manifest tests rely on.
func TestManifestsAreStrict(t *testing.T) {
	doc := []byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replica: 2\n")
	if err := yaml.UnmarshalStrict(doc, &appsv1.Deployment{}); err == nil || !strings.Contains(err.Error(), "replica") {
		t.Fatalf("a misspelt field decoded without an error: %v", err)
	}
}

func names(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

// TestSidecarRedirectInNetns runs the init container's own arguments
// through the script it runs (the redirect image's entrypoint) in a fresh
// network namespace, as in a pod, and finds egret's uid excluded.
func TestSidecarRedirectInNetns(t *testing.T) {
	requireTools(t, iptablesBackend.tools...)
	m := readManifests(t, "kubernetes/sidecar.yaml")
	init := one(t, "Deployment", m.deployments, "connector").Spec.Template.Spec.InitContainers
	redirect := container(t, init, "egret-redirect")
	n := newNetns(t)
	n.run(append([]string{"./iptables.sh"}, redirect.Args...)...)
	iptablesBackend.checkHost(t, n)
}
