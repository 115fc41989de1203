package review

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"
)

// TestDiffHTMLRendersInChromium opens the diff page in headless Chromium:
// a row per changed destination in each table, a hostile host name shown
// as text, and nothing loaded from outside the page.
func TestDiffHTMLRendersInChromium(t *testing.T) {
	if _, err := os.Stat(chromium); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("chromium is required in CI: %v", err)
		}
		t.Skipf("chromium not installed: %v", err)
	}
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	rep := &DiffReport{
		NowDenied: []DiffRow{
			{Identity: "connector", Products: []string{"netapp-connector-aws"}, Host: "api.example.org", Port: 443, Count: 7, First: at, Last: at.Add(time.Hour), Before: "*.example.org", After: "no-rule"},
			{Identity: "connector", Products: []string{"netapp-connector-aws"}, Host: "x</td><b>.example.org", Port: 443, Count: 1, First: at, Last: at, Before: "*.example.org", After: "deny-entry"},
		},
		NowAllowed: []DiffRow{
			{Identity: "default", Products: []string{"site"}, Host: "time.example.net", Port: 0, Count: 3, First: at, Last: at, Before: "no-rule", After: "time.example.net"},
		},
		Unchanged: DiffCounts{Allow: 10, Deny: 2}, NotReplayed: 4,
	}
	var buf bytes.Buffer
	if err := rep.WriteHTML(&buf); err != nil {
		t.Fatal(err)
	}
	if m := externalRef.Find(buf.Bytes()); m != nil {
		t.Errorf("the page loads something from outside itself: %q", m)
	}
	dir := t.TempDir()
	page := filepath.Join(dir, "diff.html")
	os.WriteFile(page, buf.Bytes(), 0o644)
	doc := dumpDOM(t, page, filepath.Join(dir, "profile"))

	rowsOf := func(class string) map[string]string {
		table := find(doc, func(n *html.Node) bool { return n.Data == "table" && hasClass(n, class) })
		if table == nil {
			t.Fatalf("no table %s", class)
		}
		rows := map[string]string{}
		for _, tr := range findAll(table, func(n *html.Node) bool { return n.Data == "tr" && attr(n, "data-dest") != "" }) {
			rows[attr(tr, "data-dest")] = text(tr)
		}
		return rows
	}
	denied, allowed := rowsOf("now-denied"), rowsOf("now-allowed")
	if len(denied) != 2 || !strings.Contains(denied["api.example.org:443"], "*.example.org") || !strings.Contains(denied["api.example.org:443"], "no-rule") {
		t.Errorf("now-denied rows %q", denied)
	}
	if !strings.Contains(denied["x</td><b>.example.org:443"], "deny-entry") {
		t.Errorf("the hostile name is not one row of text: %q", denied)
	}
	if len(allowed) != 1 || !strings.Contains(allowed["time.example.net (DNS)"], "time.example.net") {
		t.Errorf("now-allowed rows %q", allowed)
	}
	summary := find(doc, func(n *html.Node) bool { return attr(n, "id") == "summary" })
	if summary == nil || !strings.Contains(text(summary), "unchanged: 10 allowed, 2 denied") || !strings.Contains(text(summary), "not replayed (denies no policy decides): 4") {
		t.Errorf("summary: %v", summary)
	}
}
