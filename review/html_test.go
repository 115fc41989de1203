package review

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"
)

// chromium is Debian's headless browser; CI installs it (.ci/run).
const chromium = "/usr/bin/chromium"

// TestHTMLRendersInChromium opens the page in headless Chromium and reads
// the DOM after its script ran: a table row per denied destination, and a
// chart with a row per destination whose cells add up to its count. The
// chart exists only if the inline script drew it from the embedded data.
func TestHTMLRendersInChromium(t *testing.T) {
	if _, err := os.Stat(chromium); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("chromium is required in CI: %v", err)
		}
		t.Skipf("chromium not installed: %v", err)
	}
	r := reviewLines(t, Filter{}, sitePolicy(t),
		deny(0, "a.svc.example.org", 443, "no-rule", "site"),
		deny(time.Hour, "a.svc.example.org", 443, "no-rule", "site"),
		deny(2*time.Hour, "b.svc.example.org", 443, "no-rule", "site"),
		deny(3*time.Hour, "c.svc.example.org", 443, "no-rule", "site"),
		deny(30*time.Minute, "a.example.org", 443, "auth", "site"),
		deny(0, "x</script><b>.example.org", 443, "bad-host", "site"),
		allow(0, "a.cdn.site.example", "*.cdn.site.example", "site"),
	)
	dir := t.TempDir()
	page := filepath.Join(dir, "review.html")
	var buf bytes.Buffer
	if err := r.WriteHTML(&buf); err != nil {
		t.Fatal(err)
	}
	if m := externalRef.Find(buf.Bytes()); m != nil {
		t.Errorf("the page loads something from outside itself: %q", m)
	}
	os.WriteFile(page, buf.Bytes(), 0o644)

	doc := dumpDOM(t, page, filepath.Join(dir, "profile"))
	section := find(doc, func(n *html.Node) bool { return n.Data == "section" && attr(n, "data-product") == "site" })
	if section == nil {
		t.Fatal("no section for product site")
	}
	rows := map[string]string{}
	for _, tr := range findAll(section, func(n *html.Node) bool { return n.Data == "tr" && attr(n, "data-dest") != "" }) {
		rows[attr(tr, "data-dest")] = text(tr)
	}
	for dest, want := range map[string]string{
		"a.svc.example.org:443":         "*.svc.example.org",
		"c.svc.example.org:443":         "*.svc.example.org",
		"a.example.org:443":             "auth",
		"x</script><b>.example.org:443": "bad-host",
	} {
		if !strings.Contains(rows[dest], want) {
			t.Errorf("table row %q = %q, want it to contain %q", dest, rows[dest], want)
		}
	}
	chart := find(section, func(n *html.Node) bool { return n.Data == "svg" && hasClass(n, "chart") })
	if chart == nil {
		t.Fatal("no chart")
	}
	counts := map[string]int{}
	for _, g := range findAll(chart, func(n *html.Node) bool { return n.Data == "g" && hasClass(n, "dest") }) {
		sum := 0
		for _, rect := range findAll(g, func(n *html.Node) bool { return n.Data == "rect" && hasClass(n, "bucket") }) {
			n, _ := strconv.Atoi(attr(rect, "data-count"))
			sum += n
		}
		counts[attr(g, "data-dest")] = sum
	}
	want := map[string]int{"a.svc.example.org:443": 2, "b.svc.example.org:443": 1, "c.svc.example.org:443": 1,
		"a.example.org:443": 1, "x</script><b>.example.org:443": 1}
	if len(counts) != len(want) {
		t.Errorf("chart rows %v, want %v", counts, want)
	}
	for dest, n := range want {
		if counts[dest] != n {
			t.Errorf("chart row %q adds up to %d, want %d", dest, counts[dest], n)
		}
	}
	for _, table := range []string{"unused", "narrow", "suggested"} {
		if find(section, func(n *html.Node) bool { return n.Data == "table" && hasClass(n, table) }) == nil {
			t.Errorf("no %s table", table)
		}
	}
}

// externalRef finds what would make a page fetch: src or href
// attributes, CSS url() and @import, link elements, script requests.
var externalRef = regexp.MustCompile(`(?i)\b(src|href)\s*=|url\(|@import|<link|fetch\(|XMLHttpRequest|import\(`)

// dumpDOM runs headless Chromium on the file and parses the DOM it prints
// after the page's scripts ran.
func dumpDOM(t *testing.T, page, profile string) *html.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
		"--user-data-dir="+profile, "--dump-dom", "file://"+page)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	doc, err := html.Parse(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func findAll(n *html.Node, match func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	for d := range n.Descendants() {
		if d.Type == html.ElementNode && match(d) {
			out = append(out, d)
		}
	}
	return out
}

func find(n *html.Node, match func(*html.Node) bool) *html.Node {
	if all := findAll(n, match); len(all) > 0 {
		return all[0]
	}
	return nil
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func hasClass(n *html.Node, class string) bool {
	return strings.Contains(" "+attr(n, "class")+" ", " "+class+" ")
}

func text(n *html.Node) string {
	var b strings.Builder
	for d := range n.Descendants() {
		if d.Type == html.TextNode {
			b.WriteString(d.Data)
			b.WriteByte(' ')
		}
	}
	return b.String()
}
