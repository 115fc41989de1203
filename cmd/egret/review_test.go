package main

import (
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReviewRoundTrip runs egret in report mode for real, sends it to
// destinations its products do not allow (three names under one parent, a
// fourth name, an IP literal) and to one they do, and reviews the log it
// wrote: the patch lints clean and, added with --allowlists, makes every
// reviewed destination allowed, which it was not before.
func TestReviewRoundTrip(t *testing.T) {
	_, port := upstream(t)
	names := []string{"a.svc.example.org", "b.svc.example.org", "c.svc.example.org", "updates.example.net"}
	args := []string{"--mode", "report"}
	for _, n := range names {
		args = append(args, "--resolve", n+"=127.0.0.1")
	}
	s := startServe(t, "product: [netapp-connector-aws, local]\n", port, args...)
	denied := []string{"127.0.0.1"}
	denied = append(denied, names...)
	for _, host := range append(denied, "example.com") {
		c, _, status := s.tunnel(fmt.Sprintf("%s:%d", host, port))
		if status != 200 {
			t.Fatalf("CONNECT %s in report mode: %d", host, status)
		}
		c.Close()
	}
	dir := t.TempDir()
	logPath := filepath.Join(dir, "decisions.log.1") // gzip, told by its content
	// The proxy wrote each decision before answering; wait until this
	// process has read them all from its pipe.
	s.waitFor(func() bool { return strings.Count(s.stdout.String(), `"msg":"decision"`) == len(denied)+1 }, "six decision lines")
	writeGzip(t, logPath, s.stdout.String())
	localDir := filepath.Join(s.dir, "allowlists")
	outDir := filepath.Join(dir, "reviewed")

	code, out, errOut := egret(t, "review", "--allowlists", localDir, logPath)
	if code != 0 {
		t.Fatalf("review: %d\n%s", code, errOut)
	}
	rows := tableRows(out)
	for dest, rule := range map[string]string{
		"a.svc.example.org": "*.svc.example.org", "c.svc.example.org": "*.svc.example.org",
		"updates.example.net": "updates.example.net", "127.0.0.1": "127.0.0.1/32",
	} {
		if got := rows[fmt.Sprintf("%s:%d", dest, port)]; got != rule {
			t.Errorf("table: %s suggests %q, want %q", dest, got, rule)
		}
	}
	for _, want := range []string{"product local", "product netapp-connector-aws", "rules that allowed nothing", "netapp-connector-aws.yaml:"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "local.yaml:") {
		t.Errorf("local's rule allowed example.com, yet it is listed as unused:\n%s", out)
	}

	code, _, errOut = egret(t, "review", "--format", "yaml", "--allowlists", localDir, logPath)
	if code != 2 || !strings.Contains(errOut, "--out DIR") {
		t.Errorf("yaml for two products on standard output: %d %q", code, errOut)
	}
	code, _, errOut = egret(t, "review", "--format", "yaml", "--out", outDir, "--allowlists", localDir, logPath)
	if code != 0 {
		t.Fatalf("review --out: %d\n%s", code, errOut)
	}
	patch, err := os.ReadFile(filepath.Join(outDir, "review-netapp-connector-aws.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"*.svc.example.org", "cidr: 127.0.0.1/32", "source: egret review", "denied once from"} {
		if !strings.Contains(string(patch), want) {
			t.Errorf("patch lacks %q:\n%s", want, patch)
		}
	}
	t.Logf("the patch:\n%s", patch)

	if code, out, _ := egret(t, "lint", outDir); code != 0 || !strings.Contains(out, "2 files: 0 errors, 0 warnings, 0 inactive rules") {
		t.Errorf("lint of the patch: %d\n%s", code, out)
	}
	for _, host := range denied {
		dest := fmt.Sprintf("%s:%d", host, port)
		if code, out, _ := egret(t, "check", "--product", "netapp-connector-aws", dest); code != 1 {
			t.Errorf("check %s before the patch: %d\n%s", dest, code, out)
		}
		code, out, _ := egret(t, "check", "--product", "netapp-connector-aws", "--allowlists", outDir, dest)
		if code != 0 || !strings.Contains(out, "source:   egret review") {
			t.Errorf("check %s with the patch: %d\n%s", dest, code, out)
		}
	}

	// The patched policy allows everything the log denied: a second review
	// suggests nothing and says why.
	code, out, _ = egret(t, "review", "--allowlists", localDir, "--allowlists", outDir, logPath)
	if code != 0 || !strings.Contains(out, "(allowed now by *.svc.example.org:") {
		t.Errorf("review with the patch: %d\n%s", code, out)
	}
}

// tableRows maps each denied destination of the table to its suggested rule.
func tableRows(table string) map[string]string {
	rows := map[string]string{}
	for _, line := range strings.Split(table, "\n") {
		f := strings.Fields(line)
		if len(f) == 5 && strings.HasPrefix(f[1], "20") {
			rows[f[3]] = f[4]
		}
	}
	return rows
}

func writeGzip(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(f)
	zw.Write([]byte(text))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

const reviewLine = `{"time":"2026-11-21T10:00:00Z","msg":"decision","decision":"deny","mode":"enforce","listener":"explicit","client":"10.0.1.7:5000","identity":"default","products":["netapp-connector-aws"],"method":"CONNECT","host":"new.example.net","port":443,"reason":"no-rule","trace_id":"0af7651916cd43dd8448eb211c80319c"}`

func TestReviewCommandLine(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "decisions.log")
	os.WriteFile(logPath, []byte("garbage\n"+reviewLine+"\n{}\n"), 0o644)
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"table", []string{"review", logPath}, 0, "new.example.net:443", logPath + ":1: "},
		{"malformed lines counted", []string{"review", logPath}, 0, "2 malformed", "skipped 2 malformed lines"},
		{"json", []string{"review", "--format", "json", logPath}, 0, `"host": "new.example.net"`, ""},
		{"yaml to standard output", []string{"review", "--format", "yaml", logPath}, 0, "host: new.example.net", ""},
		{"html", []string{"review", "--format", "html", logPath}, 0, `<svg class="chart"`, ""},
		{"since excludes", []string{"review", "--since", "2026-11-21T10:00:01Z", logPath}, 0, "0 decisions", ""},
		{"until excludes", []string{"review", "--until", "2026-11-21", logPath}, 0, "0 decisions", ""},
		{"product filter", []string{"review", "--product", "netapp-cvo-aws", logPath}, 0, "product netapp-cvo-aws\n", ""},
		{"nothing to suggest", []string{"review", "--format", "yaml", "--since", "2026-11-22", logPath}, 0, "", "no rule to suggest"},
		{"until as a duration before now", []string{"review", "--until", "87600h", logPath}, 0, "0 decisions", ""},
		{"missing file", []string{"review", filepath.Join(dir, "nope.log")}, 2, "", "no such file"},
		{"no log", []string{"review"}, 2, "", "requires at least 1 arg"},
		{"bad format", []string{"review", "--format", "xml", logPath}, 2, "", `--format "xml"`},
		{"bad since", []string{"review", "--since", "yesterday", logPath}, 2, "", `--since "yesterday"`},
		{"since after until", []string{"review", "--since", "2026-11-22", "--until", "2026-11-21", logPath}, 2, "", "is not before"},
		{"out without yaml", []string{"review", "--out", dir, logPath}, 2, "", "--out is for --format yaml"},
		{"bad variable", []string{"review", "--var", "novalue", logPath}, 2, "", "--var"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := egret(t, tt.args...)
			if code != tt.code || !strings.Contains(out, tt.stdout) || !strings.Contains(errOut, tt.stderr) {
				t.Errorf("exit %d (want %d)\nstdout:\n%s\nstderr:\n%s", code, tt.code, out, errOut)
			}
		})
	}
}

func TestReviewStandardInput(t *testing.T) {
	root := newRootCmd()
	var out, errOut strings.Builder
	root.SetArgs([]string{"review", "-"})
	root.SetIn(strings.NewReader(reviewLine + "\nnot json\n"))
	root.SetOut(&out)
	root.SetErr(&errOut)
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "new.example.net:443") || !strings.Contains(errOut.String(), "standard input:2: ") {
		t.Errorf("stdout:\n%s\nstderr:\n%s", out.String(), errOut.String())
	}
}

func TestParseWhen(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"", time.Time{}, true},
		{"2026-11-21T09:30:00Z", time.Date(2026, 11, 21, 9, 30, 0, 0, time.UTC), true},
		{"2026-11-21T10:30:00.5+01:00", time.Date(2026, 11, 21, 9, 30, 0, 5e8, time.UTC), true},
		{"2026-11-20", time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC), true},
		{"24h", now.Add(-24 * time.Hour), true},
		{"90m", now.Add(-90 * time.Minute), true},
		{"-1h", time.Time{}, false},
		{"0s", time.Time{}, false},
		{"yesterday", time.Time{}, false},
	}
	for _, tt := range tests {
		got, err := parseWhen("--since", tt.in, now)
		if (err == nil) != tt.ok || !got.Equal(tt.want) {
			t.Errorf("parseWhen(%q) = %v, %v; want %v, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
