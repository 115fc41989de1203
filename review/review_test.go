package review

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/egret-proxy/egret/allowlists"
)

var t0 = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

// deny and allow write decision lines as the proxy does.
func deny(at time.Duration, host string, port int, reason string, products ...string) string {
	return fmt.Sprintf(`{"time":%q,"msg":"decision","decision":"would-deny","mode":"report","listener":"explicit","client":"10.0.1.7:5000","identity":"default","products":%s,"method":"CONNECT","host":%q,"port":%d,"reason":%q,"trace_id":"0af7651916cd43dd8448eb211c80319c"}`,
		t0.Add(at).Format(time.RFC3339Nano), jsonList(products), host, port, reason)
}

func allow(at time.Duration, host, rule, product string) string {
	return fmt.Sprintf(`{"time":%q,"msg":"decision","decision":"allow","mode":"enforce","listener":"explicit","client":"10.0.1.7:5000","identity":"default","products":[%q],"method":"CONNECT","host":%q,"port":443,"rule":%q,"source":"test","reason":"rule","product":%q,"trace_id":"0af7651916cd43dd8448eb211c80319c"}`,
		t0.Add(at).Format(time.RFC3339Nano), product, host, rule, product)
}

func jsonList(s []string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = fmt.Sprintf("%q", v)
	}
	return "[" + strings.Join(q, ",") + "]"
}

// sitePolicy is a product with exact, wildcard and cidr rules.
func sitePolicy(t *testing.T) *allowlists.Policy {
	t.Helper()
	f, err := allowlists.ParseFile("site.yaml", []byte(`product: site
title: a site
source: test
proxy:
  - {host: api.site.example, purpose: API}
  - {host: "*.cdn.site.example", purpose: CDN}
  - {host: "*.assets.site.example", purpose: assets}
  - {host: unused.site.example, ports: [8443], purpose: never used}
  - {cidr: 192.0.2.0/24, purpose: a range}
`))
	if err != nil {
		t.Fatal(err)
	}
	embedded, err := allowlists.EmbeddedFiles()
	if err != nil {
		t.Fatal(err)
	}
	cat, err := allowlists.NewCatalog(append(embedded, f)...)
	if err != nil {
		t.Fatal(err)
	}
	p, _, err := allowlists.Compile(cat, allowlists.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func reviewLines(t *testing.T, f Filter, policy *allowlists.Policy, lines ...string) *Report {
	t.Helper()
	a := NewAggregator(f)
	if err := a.Read("test.log", strings.NewReader(strings.Join(lines, "\n")+"\n")); err != nil {
		t.Fatal(err)
	}
	return a.Build(policy)
}

func product(t *testing.T, r *Report, name string) ProductReport {
	t.Helper()
	for _, p := range r.Products {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("no product %q in the report: %+v", name, r.Products)
	return ProductReport{}
}

func targets(ds []Denied) []string {
	var out []string
	for _, d := range ds {
		out = append(out, fmt.Sprintf("%s=%d", d.Target(), d.Count))
	}
	return out
}

func patterns(ss []Suggestion) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.Text())
	}
	return out
}

func TestDeniedCountsAndTimes(t *testing.T) {
	r := reviewLines(t, Filter{}, nil,
		deny(0, "a.example.net", 443, "no-rule", "site"),
		deny(2*time.Minute, "a.example.net", 443, "no-rule", "site"),
		deny(time.Minute, "a.example.net", 443, "no-rule", "site"),
		deny(5*time.Minute, "a.example.net", 8443, "no-rule", "site"),
		`{"time":"2026-11-21T10:03:00Z","msg":"close","decision":"allow","products":["site"],"host":"x","port":443,"bytes_up":1}`,
	)
	p := product(t, r, "site")
	if got := targets(p.Denied); !slices.Equal(got, []string{"a.example.net:443=3", "a.example.net:8443=1"}) {
		t.Fatalf("denied %v", got)
	}
	d := p.Denied[0]
	if !d.First.Equal(t0) || !d.Last.Equal(t0.Add(2*time.Minute)) {
		t.Errorf("first %v last %v", d.First, d.Last)
	}
	var sum uint32
	for _, n := range d.Timeline {
		sum += n
	}
	if sum != 3 {
		t.Errorf("timeline holds %d denies, want 3: %v", sum, d.Timeline)
	}
	if got := patterns(p.Suggested); !slices.Equal(got, []string{"a.example.net:443,8443"}) {
		t.Errorf("suggested %v", got)
	}
	if r.Stats.Lines != 5 || r.Stats.Decisions != 4 || r.Stats.Denies != 4 || !r.From.Equal(t0) || !r.To.Equal(t0.Add(5*time.Minute)) {
		t.Errorf("stats %+v from %v to %v", r.Stats, r.From, r.To)
	}
}

// TestDenyAttributedToEachProduct: a client with two products was denied
// by both, so the destination is listed (and suggested) under each.
func TestDenyAttributedToEachProduct(t *testing.T) {
	r := reviewLines(t, Filter{}, nil, deny(0, "a.example.net", 443, "no-rule", "one", "two"))
	for _, name := range []string{"one", "two"} {
		if got := targets(product(t, r, name).Denied); !slices.Equal(got, []string{"a.example.net:443=1"}) {
			t.Errorf("%s: %v", name, got)
		}
	}
}

func TestSinceUntil(t *testing.T) {
	lines := []string{
		deny(0, "early.example.net", 443, "no-rule", "site"),
		deny(time.Hour, "middle.example.net", 443, "no-rule", "site"),
		deny(2*time.Hour, "late.example.net", 443, "no-rule", "site"),
	}
	tests := []struct {
		name   string
		filter Filter
		want   []string
	}{
		{"no bounds", Filter{}, []string{"early.example.net:443=1", "late.example.net:443=1", "middle.example.net:443=1"}},
		{"since is inclusive", Filter{Since: t0.Add(time.Hour)}, []string{"late.example.net:443=1", "middle.example.net:443=1"}},
		{"until is exclusive", Filter{Until: t0.Add(time.Hour)}, []string{"early.example.net:443=1"}},
		{"both", Filter{Since: t0.Add(time.Minute), Until: t0.Add(2 * time.Hour)}, []string{"middle.example.net:443=1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := reviewLines(t, tt.filter, nil, lines...)
			if got := targets(product(t, r, "site").Denied); !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			if r.Stats.Skipped != 3-len(tt.want) {
				t.Errorf("skipped %d", r.Stats.Skipped)
			}
		})
	}
}

func TestProductFilter(t *testing.T) {
	r := reviewLines(t, Filter{Products: []string{"two"}}, nil,
		deny(0, "one.example.net", 443, "no-rule", "one"),
		deny(0, "both.example.net", 443, "no-rule", "one", "two"),
		deny(0, "none.example.net", 443, "no-rule"),
		allow(0, "api.one.example", "api.one.example", "one"),
	)
	if len(r.Products) != 1 || r.Products[0].Name != "two" {
		t.Fatalf("products %+v", r.Products)
	}
	if got := targets(r.Products[0].Denied); !slices.Equal(got, []string{"both.example.net:443=1"}) {
		t.Errorf("denied %v", got)
	}
	if r.Stats.Skipped != 3 || r.Stats.Decisions != 1 {
		t.Errorf("stats %+v", r.Stats)
	}
}

// TestGzipByContent reads a gzip log by its magic bytes, whatever its name,
// and a concatenation of gzip members as one log (as logrotate's copies
// and `cat a.gz b.gz` make).
func TestGzipByContent(t *testing.T) {
	var buf bytes.Buffer
	for _, host := range []string{"a.example.net", "b.example.net"} {
		zw := gzip.NewWriter(&buf)
		fmt.Fprintln(zw, deny(0, host, 443, "no-rule", "site"))
		zw.Close()
	}
	a := NewAggregator(Filter{})
	if err := a.Read("decisions.log", &buf); err != nil {
		t.Fatal(err)
	}
	r := a.Build(nil)
	if got := targets(product(t, r, "site").Denied); !slices.Equal(got, []string{"a.example.net:443=1", "b.example.net:443=1"}) {
		t.Errorf("denied %v", got)
	}
	if err := NewAggregator(Filter{}).Read("broken.gz", bytes.NewReader([]byte{0x1f, 0x8b, 8, 0, 1, 2})); err == nil ||
		!strings.Contains(err.Error(), "broken.gz") {
		t.Errorf("a truncated gzip log: %v", err)
	}
}

func TestMalformedLinesCountedNotFatal(t *testing.T) {
	long := `{"msg":"` + strings.Repeat("x", maxLine) + `"}`
	r := reviewLines(t, Filter{}, nil,
		"not json",
		deny(0, "a.example.net", 443, "no-rule", "site"),
		`["an array"]`,
		`{"time":"yesterday","msg":"decision","decision":"deny","host":"x","port":443}`,
		`{"time":"2026-11-21T10:00:00Z","decision":"deny"}`,
		`{"time":"2026-11-21T10:00:00Z","msg":"decision","decision":"maybe","host":"x","port":443}`,
		`{"time":"2026-11-21T10:00:00Z","msg":"decision","decision":"deny","host":"x","port":"443"}`,
		long,
		"",
		deny(time.Minute, "a.example.net", 443, "no-rule", "site"),
	)
	if r.Stats.Malformed != 7 {
		t.Errorf("malformed %d, want 7", r.Stats.Malformed)
	}
	want := []string{"test.log:1: ", "test.log:3: not a JSON object", "test.log:4: \"time\"", "test.log:5: no \"msg\"", "test.log:6: decision \"maybe\""}
	if len(r.Stats.MalformedAt) != maxMalformedAt {
		t.Fatalf("malformed_at %v", r.Stats.MalformedAt)
	}
	for i, w := range want {
		if !strings.HasPrefix(r.Stats.MalformedAt[i], w) {
			t.Errorf("malformed_at[%d] = %q, want prefix %q", i, r.Stats.MalformedAt[i], w)
		}
	}
	if got := targets(product(t, r, "site").Denied); !slices.Equal(got, []string{"a.example.net:443=2"}) {
		t.Errorf("lines around the malformed ones: %v", got)
	}
}

func TestUnusedAndNarrowRules(t *testing.T) {
	lines := []string{
		allow(0, "api.site.example", "api.site.example", "site"),
		allow(0, "a.cdn.site.example", "*.cdn.site.example", "site"),
		allow(0, "a.cdn.site.example", "*.cdn.site.example", "site"),
		allow(0, "b.cdn.site.example", "*.cdn.site.example", "site"),
		allow(0, "192.0.2.7", "192.0.2.0/24", "site"),
	}
	for i := range 4 {
		lines = append(lines, allow(0, fmt.Sprintf("x%d.assets.site.example", i), "*.assets.site.example", "site"))
	}
	p := product(t, reviewLines(t, Filter{}, sitePolicy(t), lines...), "site")
	var unused []string
	for _, u := range p.Unused {
		unused = append(unused, u.Rule)
	}
	if !slices.Equal(unused, []string{"unused.site.example:8443"}) || p.Unused[0].File != "site.yaml" || p.Unused[0].Line == 0 {
		t.Errorf("unused %v (%+v)", unused, p.Unused)
	}
	var narrow []string
	for _, n := range p.Narrow {
		narrow = append(narrow, fmt.Sprintf("%s %d %v", n.Rule, n.Allows, n.Names))
	}
	want := []string{"*.cdn.site.example:443 3 [a.cdn.site.example b.cdn.site.example]", "192.0.2.0/24:443 1 [192.0.2.7]"}
	if !slices.Equal(narrow, want) {
		t.Errorf("narrow %q, want %q (the wildcard with 4 names is not one)", narrow, want)
	}
}
