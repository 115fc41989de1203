package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/egret-proxy/egret/review"
)

// TestDiffRoundTrip: the real binary in report mode logs an allow and two
// would-denies; a changed policy that drops the allowing product and adds
// a rule for one of the denied names is diffed against that log: exactly
// the allow becomes a deny (exit 1), exactly the one name becomes allowed,
// and the other deny stays.
func TestDiffRoundTrip(t *testing.T) {
	_, port := upstream(t)
	args := []string{"--mode", "report", "--resolve", "a.svc.example.org=127.0.0.1", "--resolve", "b.svc.example.org=127.0.0.1"}
	s := startServe(t, "product: [local]\n", port, args...)
	for _, host := range []string{"example.com", "a.svc.example.org", "b.svc.example.org", "example.com"} {
		c, _, status := s.tunnel(fmt.Sprintf("%s:%d", host, port))
		if status != 200 {
			t.Fatalf("CONNECT %s in report mode: %d", host, status)
		}
		c.Close()
	}
	s.waitFor(func() bool { return strings.Count(s.stdout.String(), `"msg":"decision"`) == 4 }, "four decision lines")
	dir := t.TempDir()
	logPath := filepath.Join(dir, "decisions.log.gz")
	writeGzip(t, logPath, s.stdout.String())

	tight := filepath.Join(dir, "tight")
	os.MkdirAll(tight, 0o755)
	os.WriteFile(filepath.Join(tight, "tight.yaml"), []byte(fmt.Sprintf(
		"product: tight\ntitle: the changed policy\nsource: test\nproxy:\n  - {host: a.svc.example.org, ports: [%d], purpose: newly allowed}\n", port)), 0o644)
	newConfig := filepath.Join(dir, "new.yaml")
	os.WriteFile(newConfig, []byte("product: [tight]\n"), 0o644)
	localDir := filepath.Join(s.dir, "allowlists")

	code, out, errOut := egret(t, "diff", "--config", newConfig, "--allowlists", localDir, "--allowlists", tight, "--format", "json", logPath)
	if code != 1 {
		t.Fatalf("diff: exit %d, want 1 (an allow becomes a deny)\n%s%s", code, out, errOut)
	}
	var rep review.DiffReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	got := func(rows []review.DiffRow) []string {
		var s []string
		for _, r := range rows {
			s = append(s, fmt.Sprintf("%s %v %s:%d x%d %s -> %s", r.Identity, r.Products, r.Host, r.Port, r.Count, r.Before, r.After))
		}
		return s
	}
	wantDenied := []string{fmt.Sprintf("default [tight] example.com:%d x2 example.com -> no-rule", port)}
	wantAllowed := []string{fmt.Sprintf("default [tight] a.svc.example.org:%d x1 no-rule -> a.svc.example.org", port)}
	if g := got(rep.NowDenied); fmt.Sprint(g) != fmt.Sprint(wantDenied) {
		t.Errorf("now denied %q, want %q", g, wantDenied)
	}
	if g := got(rep.NowAllowed); fmt.Sprint(g) != fmt.Sprint(wantAllowed) {
		t.Errorf("now allowed %q, want %q", g, wantAllowed)
	}
	if rep.Unchanged != (review.DiffCounts{Allow: 0, Deny: 1}) || rep.NotReplayed != 0 {
		t.Errorf("unchanged %+v, not replayed %d; want 1 deny (b.svc.example.org)", rep.Unchanged, rep.NotReplayed)
	}
	if len(rep.NowDenied) == 1 && (rep.NowDenied[0].First.IsZero() || rep.NowDenied[0].Last.Before(rep.NowDenied[0].First)) {
		t.Errorf("first/last %v %v", rep.NowDenied[0].First, rep.NowDenied[0].Last)
	}

	// The table says the same, and a change that only adds breaks nothing.
	code, out, _ = egret(t, "diff", "--config", newConfig, "--allowlists", localDir, "--allowlists", tight, logPath)
	for _, want := range []string{"allowed before, denied now: 1", "denied before, allowed now: 1", "unchanged: 0 allowed, 1 denied"} {
		if code != 1 || !strings.Contains(out, want) {
			t.Errorf("table (exit %d) lacks %q:\n%s", code, want, out)
		}
	}
	code, out, _ = egret(t, "diff", "--config", newConfig, "--allowlists", localDir, "--allowlists", tight, "--format", "html", logPath)
	if code != 1 || !strings.Contains(out, `<table class="now-denied">`) || !strings.Contains(out, fmt.Sprintf(`data-dest="example.com:%d"`, port)) {
		t.Errorf("html (exit %d):\n%s", code, out)
	}
	os.WriteFile(newConfig, []byte("product: [local, tight]\n"), 0o644)
	code, out, errOut = egret(t, "diff", "--config", newConfig, "--allowlists", localDir, "--allowlists", tight, logPath)
	if code != 0 || !strings.Contains(out, "allowed before, denied now: 0") || !strings.Contains(out, "unchanged: 2 allowed, 1 denied") {
		t.Errorf("an additive change: exit %d\n%s%s", code, out, errOut)
	}
	// Without --config each line is replayed with the products it logged.
	code, out, _ = egret(t, "diff", "--allowlists", localDir, logPath)
	if code != 0 || !strings.Contains(out, "unchanged: 2 allowed, 2 denied") {
		t.Errorf("the same policy: exit %d\n%s", code, out)
	}
}

func TestDiffUsageErrors(t *testing.T) {
	if code, _, errOut := egret(t, "diff", "--format", "yaml", "x.log"); code != 2 || !strings.Contains(errOut, "use table, json or html") {
		t.Errorf("--format yaml: %d %q", code, errOut)
	}
	if code, _, errOut := egret(t, "diff", filepath.Join(t.TempDir(), "missing.log")); code != 2 || !strings.Contains(errOut, "missing.log") {
		t.Errorf("missing log: %d %q", code, errOut)
	}
}
