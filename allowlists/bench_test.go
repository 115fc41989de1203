package allowlists_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"sync"
	"testing"

	"github.com/egret-proxy/egret/allowlists"
)

// Benchmarks of the policy core. Synthetic policies hold one product with N
// proxy rules over many domains and several ports:
//
//	59% exact     api<i>.svc<i/8>.example<i%5>.com
//	30% wildcard  *.w<i>.svc<i/8>.example<i%5>.net
//	10% glob      ec2.*.g<i>.example.org, time{1,2,3}.g<i>.example.org (alternating)
//	 1% cidr      /20, /24, /28 or /32 inside 20.<i>.<..>.0/20 (IPv4)
//
// Each sub-benchmark cycles through a precomputed slice of up to
// benchDests destinations of one kind, spread over the whole rule set in a
// shuffled order, so that an op is one look-up of a different key rather
// than the same hot entry.

var benchSizes = []int{100, 1000, 10000, 100000}

// benchDests bounds the distinct destinations per kind: a working set of
// that many rules, spread over the whole policy.
const benchDests = 4096

// benchPorts are the port lists rules get, by rule number; a hit uses the
// last port of its rule's list, so some checks scan past a first port.
var benchPorts = [][]int{{443}, {443}, {443}, {80, 443}, {8443}, {443, 9443}}

func benchPortsFor(i int) []int { return benchPorts[i%len(benchPorts)] }
func benchHitPort(i int) int    { p := benchPortsFor(i); return p[len(p)-1] }

// synthPolicy is a compiled synthetic policy and destinations of each kind.
type synthPolicy struct {
	policy *allowlists.Policy
	id     allowlists.Identity
	dests  map[string][]allowlists.Dest // by sub-benchmark name
	rules  int
}

var (
	synthMu    sync.Mutex
	synthCache = map[int]*synthPolicy{}
)

// synthetic returns the policy of n rules, building it on first use.
func synthetic(tb testing.TB, n int) *synthPolicy {
	tb.Helper()
	synthMu.Lock()
	defer synthMu.Unlock()
	if sp := synthCache[n]; sp != nil {
		return sp
	}
	sp, err := buildSynthetic(n)
	if err != nil {
		tb.Fatalf("synthetic policy of %d rules: %v", n, err)
	}
	synthCache[n] = sp
	return sp
}

func synthExactName(i int) string { return fmt.Sprintf("api%d.svc%d.example%d.com", i, i/8, i%5) }
func synthWildDomain(i int) string {
	return fmt.Sprintf("w%d.svc%d.example%d.net", i, i/8, i%5)
}
func synthGlobDomain(i int) string { return fmt.Sprintf("g%d.example.org", i) }

// synthCIDR returns the i-th cidr rule's prefix and an address inside it.
// Rules cycle through four prefix lengths, so a look-up probes four maps.
func synthCIDR(i int) (netip.Prefix, netip.Addr) {
	base := uint32(20)<<24 + uint32(i)<<12 // 20.0.0.0 + i·4096: aligned to /20
	hit := base + 1
	a := netip.AddrFrom4([4]byte{byte(hit >> 24), byte(hit >> 16), byte(hit >> 8), byte(hit)})
	bits := [...]int{20, 24, 28, 32}[i%4]
	return netip.PrefixFrom(a, bits).Masked(), a
}

func buildSynthetic(n int) (*synthPolicy, error) {
	nGlob := n / 10
	nWild := n * 3 / 10
	nCIDR := n / 100
	nExact := n - nGlob - nWild - nCIDR
	f := &allowlists.File{
		Name:    "synthetic/bench.yaml",
		Product: "synthetic",
		Title:   "synthetic benchmark policy",
		Source:  "bench_test.go",
		Proxy:   make([]allowlists.ProxySpec, 0, n),
	}
	line := 1
	add := func(spec allowlists.ProxySpec) {
		spec.Purpose = "benchmark rule"
		spec.Source = "bench_test.go"
		spec.Line = line
		line++
		f.Proxy = append(f.Proxy, spec)
	}
	var hosts = map[string][]string{}
	for i := 0; i < nExact; i++ {
		add(allowlists.ProxySpec{Host: synthExactName(i), Ports: benchPortsFor(i)})
		hosts["exact"] = append(hosts["exact"], synthExactName(i)+":"+strconv.Itoa(benchHitPort(i)))
	}
	for i := 0; i < nWild; i++ {
		add(allowlists.ProxySpec{Host: "*." + synthWildDomain(i), Ports: benchPortsFor(i)})
		// One to three labels in front of the wildcard's domain.
		front := [...]string{"x", "a.b", "c.d.e"}[i%3]
		hosts["wildcard"] = append(hosts["wildcard"], front+"."+synthWildDomain(i)+":"+strconv.Itoa(benchHitPort(i)))
		// A miss under an existing domain: the parent walk runs to the root.
		hosts["miss"] = append(hosts["miss"], fmt.Sprintf("api%d.svc%d.example%d.com:443", i, i/8+1_000_000, i%5))
	}
	for i := 0; i < nGlob; i++ {
		if i%2 == 0 {
			add(allowlists.ProxySpec{Host: "ec2.*." + synthGlobDomain(i), Ports: benchPortsFor(i)})
			hosts["glob"] = append(hosts["glob"], "ec2.us-east-1."+synthGlobDomain(i)+":"+strconv.Itoa(benchHitPort(i)))
		} else {
			add(allowlists.ProxySpec{Host: "time{1,2,3}." + synthGlobDomain(i), Ports: benchPortsFor(i)})
			hosts["glob"] = append(hosts["glob"], "time"+strconv.Itoa(1+i%3)+"."+synthGlobDomain(i)+":"+strconv.Itoa(benchHitPort(i)))
		}
	}
	for i := 0; i < max(nCIDR, 1); i++ {
		p, a := synthCIDR(i)
		if i < nCIDR {
			add(allowlists.ProxySpec{CIDR: p.String(), Ports: benchPortsFor(i)})
		}
		hosts["ip-literal"] = append(hosts["ip-literal"], a.String()+":"+strconv.Itoa(benchHitPort(i)))
	}

	cat, err := allowlists.NewCatalog(f)
	if err != nil {
		return nil, err
	}
	policy, _, err := allowlists.Compile(cat, allowlists.Settings{})
	if err != nil {
		return nil, err
	}
	id, err := policy.Identity("bench", "synthetic")
	if err != nil {
		return nil, err
	}
	sp := &synthPolicy{policy: policy, id: id, dests: map[string][]allowlists.Dest{}, rules: len(f.Proxy)}
	rng := rand.New(rand.NewPCG(uint64(n), 1))
	for kind, hs := range hosts {
		// Spread the chosen destinations over the whole rule set, then
		// shuffle so that consecutive ops touch unrelated entries.
		step := max(1, len(hs)/benchDests)
		var ds []allowlists.Dest
		for j := 0; j < len(hs) && len(ds) < benchDests; j += step {
			d, err := destOf(hs[j])
			if err != nil {
				return nil, err
			}
			want := kind != "miss" && (kind != "ip-literal" || nCIDR > 0)
			if v := policy.Decide(id, d); v.Allow != want {
				return nil, fmt.Errorf("%s %s: allow=%v (%s), want %v", kind, hs[j], v.Allow, v.Reason, want)
			}
			ds = append(ds, d)
		}
		rng.Shuffle(len(ds), func(a, b int) { ds[a], ds[b] = ds[b], ds[a] })
		sp.dests[kind] = ds
	}
	return sp, nil
}

func destOf(target string) (allowlists.Dest, error) {
	host, port, path, err := allowlists.ParseTarget(target)
	if err != nil {
		return allowlists.Dest{}, err
	}
	return allowlists.NewDest(host, port, path)
}

var sinkVerdict allowlists.Verdict

// benchDecide decides ds in turn, one per op.
func benchDecide(b *testing.B, p *allowlists.Policy, id allowlists.Identity, ds []allowlists.Dest) {
	b.ReportAllocs()
	if len(ds) == 0 {
		b.Fatal("no destinations")
	}
	var v allowlists.Verdict
	j := 0
	b.ResetTimer()
	for b.Loop() {
		v = p.Decide(id, ds[j])
		if j++; j == len(ds) {
			j = 0
		}
	}
	sinkVerdict = v
}

var benchKinds = []string{"exact", "wildcard", "glob", "miss", "ip-literal"}

func BenchmarkDecide(b *testing.B) {
	for _, n := range benchSizes {
		b.Run("rules="+strconv.Itoa(n), func(b *testing.B) {
			sp := synthetic(b, n)
			for _, kind := range benchKinds {
				b.Run(kind, func(b *testing.B) {
					benchDecide(b, sp.policy, sp.id, sp.dests[kind])
				})
			}
		})
	}
}

// BenchmarkDecideEmbedded decides against the embedded catalog, for the
// product netapp-connector-aws with region=us-east-1.
func BenchmarkDecideEmbedded(b *testing.B) {
	cat := mustCatalog(b)
	p := mustCompile(b, cat, allowlists.Settings{Vars: map[string]string{"region": "us-east-1"}})
	id, err := p.Identity("bench", "netapp-connector-aws")
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name, target string
		allow        bool
		reason       allowlists.Reason
	}{
		{"exact", "api.services.cloud.netapp.com:443", true, allowlists.ReasonRule},
		{"exact-var", "ec2.us-east-1.amazonaws.com:443", true, allowlists.ReasonRule},
		{"wildcard", "x.blob.core.windows.net:443", true, allowlists.ReasonRule},
		{"miss", "www.example.org:443", false, allowlists.ReasonNoRule},
		{"path-allow", "https://repo1.maven.org/maven2/org/foo/1.0/foo-1.0.jar", true, allowlists.ReasonRule},
		{"path-deny", "https://repo1.maven.org/other/thing", false, allowlists.ReasonPath},
	}
	for _, c := range cases {
		d, err := destOf(c.target)
		if err != nil {
			b.Fatalf("%s: %v", c.target, err)
		}
		if v := p.Decide(id, d); v.Allow != c.allow || v.Reason != c.reason {
			b.Fatalf("%s: got allow=%v %s, want allow=%v %s", c.target, v.Allow, v.Reason, c.allow, c.reason)
		}
		b.Run(c.name, func(b *testing.B) {
			benchDecide(b, p, id, []allowlists.Dest{d})
		})
	}
}

var (
	sinkString string
	sinkDest   allowlists.Dest
)

func BenchmarkNormalizeName(b *testing.B) {
	cases := []struct{ name, host string }{
		{"ascii-lower", "api.services.cloud.netapp.com"},
		{"ascii-mixed", "API.Services.Cloud.NetApp.com."},
		{"idna", "bücher.例え.jp"},
	}
	for _, c := range cases {
		if _, err := allowlists.NormalizeName(c.host); err != nil {
			b.Fatalf("%s: %v", c.host, err)
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sinkString, _ = allowlists.NormalizeName(c.host)
			}
		})
	}
}

func BenchmarkNewDest(b *testing.B) {
	cases := []struct {
		name, host string
		port       int
		path       string
	}{
		{"name", "api.services.cloud.netapp.com", 443, ""},
		{"name-path", "repo1.maven.org", 443, "/maven2/org/foo/1.0/foo-1.0.jar"},
		{"name-dotsegs", "repo1.maven.org", 443, "/maven2/org/./foo/../bar/1.0/bar.jar"},
		{"ipv4", "20.0.16.1", 443, ""},
		{"ipv6", "[2001:db8::1]", 443, ""},
	}
	for _, c := range cases {
		if _, err := allowlists.NewDest(c.host, c.port, c.path); err != nil {
			b.Fatalf("%s: %v", c.host, err)
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sinkDest, _ = allowlists.NewDest(c.host, c.port, c.path)
			}
		})
	}
}

func BenchmarkParseTarget(b *testing.B) {
	cases := []struct{ name, target string }{
		{"host", "api.services.cloud.netapp.com"},
		{"host-port", "api.services.cloud.netapp.com:8443"},
		{"url", "https://repo1.maven.org/maven2/org/foo/1.0/foo-1.0.jar"},
	}
	for _, c := range cases {
		if _, _, _, err := allowlists.ParseTarget(c.target); err != nil {
			b.Fatalf("%s: %v", c.target, err)
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sinkString, _, _, _ = allowlists.ParseTarget(c.target)
			}
		})
	}
}
