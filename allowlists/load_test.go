package allowlists_test

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/egret-proxy/egret/allowlists"
	"github.com/gobwas/glob"
)

// TestBadFilesRefused loads each testdata/bad file, whose first line says
// "# want: <text>", and requires an error containing that text: the file,
// the line, the bad value and the way to fix it.
func TestBadFilesRefused(t *testing.T) {
	files, _ := filepath.Glob("testdata/bad/*.yaml")
	if len(files) < 20 {
		t.Fatalf("only %d files in testdata/bad", len(files))
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := bytes.Cut(data, []byte("\n"))
			want, ok := strings.CutPrefix(string(first), "# want: ")
			if !ok {
				t.Fatalf("%s: first line must be `# want: <expected error text>`", path)
			}
			err = loadOne(filepath.Base(path), data)
			if err == nil {
				t.Fatalf("%s loaded without error; want %q", path, want)
			}
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("%s:\n got error %q\nwant it to contain %q", path, err, want)
			}
		})
	}
}

// loadOne parses a file and builds a catalog of it alone.
func loadOne(name string, data []byte) error {
	f, err := allowlists.ParseFile(name, data)
	if err != nil {
		return err
	}
	_, err = allowlists.NewCatalog(f)
	return err
}

// TestEmbeddedAllowlists requires every product of the contract, each
// file lint-clean (no errors, no warnings), every rule traced to one of the
// five seed documents, and no rule active that needs a variable.
func TestEmbeddedAllowlists(t *testing.T) {
	want := []string{
		"azure-cassandra-mi", "dt-cloud-connector", "dt-cloud-connector-2g", "dt-cloud-connector-wildcard",
		"netapp-cloud-manager-aws", "netapp-connector-aws", "netapp-connector-azure", "netapp-connector-gcp",
		"netapp-connector-install", "netapp-connector-local-ui", "netapp-cvo-aws", "netapp-cvo-aws-ha-mediator",
	}
	for _, role := range []string{"ccm", "ccm-sa", "ccm-lb", "mgmtpostgres", "cco", "cco-lb", "amqp", "guac",
		"monitor", "ext-script-executor", "bundle-store", "package-store", "docker-registry"} {
		want = append(want, "cisco-cloudcenter-"+role)
	}
	cat := mustCatalog(t)
	if got := cat.Names(); len(got) != len(want) {
		t.Errorf("embedded products: %d (%v), want %d", len(got), got, len(want))
	}
	seeds := map[string]bool{}
	for _, s := range seedDocuments(t) {
		seeds[s] = true
	}
	files, err := allowlists.EmbeddedFiles()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range want {
		p := cat.Product(name)
		if p == nil {
			t.Errorf("product %s is missing", name)
			continue
		}
		if p.Title == "" || p.ProxyRules() == 0 {
			t.Errorf("product %s: title %q, %d proxy rules", name, p.Title, p.ProxyRules())
		}
		if !seeds[p.Source] {
			t.Errorf("product %s: source %q is not one of the seed documents", name, p.Source)
		}
		for _, f := range p.Files {
			for _, r := range f.Proxy {
				if r.Source != "" && !seeds[r.Source] {
					t.Errorf("%s:%d: source %q is not a seed document", f.Name, r.Line, r.Source)
				}
			}
			for _, r := range f.Network {
				if r.Source != "" && !seeds[r.Source] {
					t.Errorf("%s:%d: source %q is not a seed document", f.Name, r.Line, r.Source)
				}
			}
		}
	}
	for _, f := range allowlists.Lint(nil, files, nil) {
		if f.Severity != allowlists.SevInactive {
			t.Errorf("lint: %s", f)
		}
	}
}

// seedDocuments lists the five seed documents by name. The names are
// fixed here, not read from ../shared, so the test needs nothing outside
// the repository.
func seedDocuments(t *testing.T) []string {
	return []string{
		"000_d49fc179dcbbed47.txt", "001_1cb75aa83d0a3982.txt", "002_dc4c11ef600c6dd3.txt",
		"003_16dde71cfa18ae60.txt", "004_1008216d3d06041b.txt",
	}
}

// TestSeedEndpointsCovered reads every URL and host name written in the
// five seed documents and requires that some product's proxy rules allow
// it, or, for names the documents give for UDP (NTP), that some network
// rule names it: nothing a document names is lost. Patterns are tried
// with a concrete instance ("*" as "x", "{1,2,3,4}" as "1", "<region>" as
// "eastus").
func TestSeedEndpointsCovered(t *testing.T) {
	dir := seedDir(t)
	notEndpoints := map[string]string{
		"docs.netapp.com": "where the PDF was generated from",
		"www.netapp.com":  "trademark notice",
		"github.com":      "link to a sample script",
		"amazonaws.com":   "the heading 'AWS services (amazonaws.com)'; the regional endpoints are rules",
	}
	udpOnly := []string{"pool.ntp.org", "time1.google.com", "time{1,2,3,4}.google.com"}
	// The one name a document pairs with a port other than its URL's.
	documentedPort := map[string]string{"repo.cliqrtech.com": "repo.cliqrtech.com:22"}
	cat := withoutBroadRules(t)
	p := mustCompile(t, cat, allowlists.Settings{})
	id, err := p.Identity("seed", cat.Names()...)
	if err != nil {
		t.Fatal(err)
	}
	network := networkDestinations(cat)
	seen := 0
	for _, target := range seedTargets(t, dir) {
		host, _, _, _ := allowlists.ParseTarget(target)
		if why, skip := notEndpoints[host]; skip {
			t.Logf("not an endpoint: %s (%s)", target, why)
			continue
		}
		seen++
		if isUDPOnly(target, udpOnly) {
			if !matchesAny(network, instanceRE.Replace(target)) {
				t.Errorf("seed names %s (UDP), but no network rule has it as destination", target)
			}
			continue
		}
		if withPort, ok := documentedPort[target]; ok {
			target = withPort
		}
		h, port, path, err := allowlists.ParseTarget(target)
		if err != nil {
			t.Errorf("seed target %q: %v", target, err)
			continue
		}
		d, err := allowlists.NewDest(h, port, path)
		if err != nil {
			t.Errorf("seed target %q: %v", target, err)
			continue
		}
		if v := p.Decide(id, d); !v.Allow {
			t.Errorf("seed names %s, but no product allows it (%s)", target, v.Reason)
		}
	}
	if seen < 60 {
		t.Fatalf("only %d endpoints found in the seed documents; the extraction is broken", seen)
	}
}

// withoutBroadRules is the embedded catalog less the catch-all rules
// ("*", 0.0.0.0/0, ::/0), which would allow every name and so prove nothing
// about coverage.
func withoutBroadRules(t *testing.T) *allowlists.Catalog {
	files, err := allowlists.EmbeddedFiles()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		kept := f.Proxy[:0]
		for _, r := range f.Proxy {
			if r.Host != "*" && r.CIDR != "0.0.0.0/0" && r.CIDR != "::/0" {
				kept = append(kept, r)
			}
		}
		f.Proxy = kept
	}
	cat, err := allowlists.NewCatalog(files...)
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

func seedDir(t *testing.T) string {
	for _, d := range []string{"../../shared/seeds", "../../../shared/seeds"} {
		if _, err := os.Stat(d); err == nil {
			return d
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("CI: the seed documents must be in ../shared/seeds beside the repository")
	}
	t.Skip("seed documents not found in ../shared/seeds beside the repository")
	return ""
}

var (
	seedURLRE  = regexp.MustCompile(`https?://[^\]\s<>")` + "`" + `|]+`)
	seedNameRE = regexp.MustCompile(`(?i)(?:[a-z0-9*{},\\<>_-]+\.)+(?:com|net|io|org|de)(?::[0-9]+)?`)
	instanceRE = strings.NewReplacer(`\<region\>`, "eastus", `<region>`, "eastus", `\*`, "x", "*", "x", "{1,2,3,4}", "1")
)

// seedTargets returns the URLs and names in the seed documents, each once.
func seedTargets(t *testing.T, dir string) []string {
	files, _ := filepath.Glob(filepath.Join(dir, "*.txt"))
	if len(files) != 5 {
		t.Fatalf("%s: %d seed documents, want 5", dir, len(files))
	}
	seen := map[string]bool{}
	var out []string
	add := func(s string) {
		s = strings.TrimRight(s, ".,;:")
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		for _, u := range seedURLRE.FindAllString(text, -1) {
			add(instanceRE.Replace(strings.ReplaceAll(u, `\_`, "_")))
		}
		// Bare names: drop URLs first so their hosts are not counted twice.
		for _, n := range seedNameRE.FindAllString(seedURLRE.ReplaceAllString(text, " "), -1) {
			n = strings.TrimLeft(n, ">")
			if strings.HasPrefix(n, "{") || strings.Contains(n, "time{") {
				add(n) // NTP patterns: matched against network rules as written
				continue
			}
			add(instanceRE.Replace(n))
		}
	}
	return out
}

func isUDPOnly(target string, udp []string) bool {
	for _, u := range udp {
		if strings.HasSuffix(target, u) {
			return true
		}
	}
	return false
}

// networkDestinations compiles the network rules' destinations as globs
// ("*." spanning labels, as in proxy rules).
func networkDestinations(cat *allowlists.Catalog) []*glob.Pattern {
	var out []*glob.Pattern
	for _, name := range cat.Names() {
		for _, f := range cat.Product(name).Files {
			for _, r := range f.Network {
				text := r.Destination
				if rest, ok := strings.CutPrefix(text, "*."); ok {
					text = "**." + rest
				}
				if g, err := glob.Compile(text, '.'); err == nil {
					out = append(out, g)
				}
			}
		}
	}
	return out
}

func matchesAny(globs []*glob.Pattern, name string) bool {
	for _, g := range globs {
		if g.Match(name) {
			return true
		}
	}
	return false
}
