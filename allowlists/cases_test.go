package allowlists_test

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/egret-proxy/egret/allowlists"
)

// TestEndpointCases runs testdata/cases/<product>.txt against the embedded
// allowlists: every endpoint the documents name must be allowed for its
// product, and the near-misses denied with the given reason. Format:
//
//	var K=V               sets a variable for the lines after it
//	allow DEST            DEST as for `egret check`: host[:port] or a URL
//	deny  DEST REASON     REASON: no-rule, bad-host, path, …
func TestEndpointCases(t *testing.T) {
	files, err := filepath.Glob("testdata/cases/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no case files in testdata/cases: %v", err)
	}
	cat := mustCatalog(t)
	for _, file := range files {
		product := strings.TrimSuffix(filepath.Base(file), ".txt")
		t.Run(product, func(t *testing.T) {
			if cat.Product(product) == nil {
				t.Fatalf("%s: no embedded product %q", file, product)
			}
			runCaseFile(t, cat, file, product)
		})
	}
}

func runCaseFile(t *testing.T, cat *allowlists.Catalog, file, product string) {
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	vars := map[string]string{}
	var policy *allowlists.Policy
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(text)
		if len(fields) == 0 {
			continue
		}
		where := file + ":" + itoa(line)
		switch {
		case fields[0] == "var" && len(fields) == 2:
			k, v, _ := strings.Cut(fields[1], "=")
			vars[k] = v
			policy = nil
		case fields[0] == "allow" && len(fields) == 2, fields[0] == "deny" && len(fields) == 3:
			if policy == nil {
				policy = mustCompile(t, cat, allowlists.Settings{Vars: vars})
			}
			want := "rule"
			if fields[0] == "deny" {
				want = fields[2]
			}
			allow, reason, rule := decideString(t, policy, product, fields[1])
			if got := map[bool]string{true: "allow", false: "deny"}[allow]; got != fields[0] || reason != want {
				t.Errorf("%s: %s %s: got %s %s (rule %s), want %s %s", where, product, fields[1], got, reason, rule, fields[0], want)
			}
		default:
			t.Errorf("%s: cannot read %q; want `var K=V`, `allow DEST` or `deny DEST REASON`", where, sc.Text())
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
}

// decideString decides a destination written as for `egret check`.
func decideString(t testing.TB, p *allowlists.Policy, product, target string) (bool, string, string) {
	t.Helper()
	id, err := p.Identity("test", product)
	if err != nil {
		t.Fatal(err)
	}
	host, port, path, err := allowlists.ParseTarget(target)
	if err != nil {
		return false, "bad-host", ""
	}
	d, err := allowlists.NewDest(host, port, path)
	if err != nil {
		return false, "bad-host", ""
	}
	v := p.Decide(id, d)
	rule := "<none>"
	if v.Rule != nil {
		rule = v.Rule.String()
	}
	return v.Allow, v.Reason.String(), rule
}

func mustCatalog(t testing.TB) *allowlists.Catalog {
	t.Helper()
	cat, err := allowlists.LoadCatalog()
	if err != nil {
		t.Fatalf("embedded allowlists: %v", err)
	}
	return cat
}

func mustCompile(t testing.TB, cat *allowlists.Catalog, s allowlists.Settings) *allowlists.Policy {
	t.Helper()
	p, _, err := allowlists.Compile(cat, s)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return p
}

func itoa(n int) string { return strconv.Itoa(n) }
