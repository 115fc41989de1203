package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/egret-proxy/egret/config"
	"github.com/spf13/pflag"
)

// The README is the front page and docs/ holds the reference. These tests
// keep the two honest: every link lands, every serve flag is documented,
// and the commands the README shows do what their comments say.

const repoRoot = "../.."

// documents are the Markdown files a reader follows links through.
func documents(t *testing.T) []string {
	t.Helper()
	docs, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	return append(docs, filepath.Join(repoRoot, "README.md"), filepath.Join(repoRoot, "allowlists", "FORMAT.md"))
}

var (
	markdownLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	heading      = regexp.MustCompile(`(?m)^#{1,6} +(.+)$`)
	notInSlug    = regexp.MustCompile(`[^a-z0-9 _-]`)
)

// slug is GitHub's anchor for a heading: lower case, punctuation dropped,
// spaces turned to '-'.
func slug(title string) string {
	s := notInSlug.ReplaceAllString(strings.ToLower(strings.TrimSpace(title)), "")
	return strings.ReplaceAll(s, " ", "-")
}

func anchors(t *testing.T, file string) map[string]bool {
	t.Helper()
	text, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, m := range heading.FindAllStringSubmatch(withoutCode(string(text)), -1) {
		out[slug(m[1])] = true
	}
	return out
}

// withoutCode drops fenced code blocks, whose '#' lines are comments.
func withoutCode(text string) string {
	var b strings.Builder
	in := false
	for _, line := range strings.SplitAfter(text, "\n") {
		if strings.HasPrefix(line, "```") {
			in = !in
			continue
		}
		if !in {
			b.WriteString(line)
		}
	}
	return b.String()
}

// TestDocsHeadingsAreUnique: a heading twice in one file is a section lost
// in a move (and GitHub gives the second anchor a -1).
func TestDocsHeadingsAreUnique(t *testing.T) {
	for _, doc := range documents(t) {
		text, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, m := range heading.FindAllStringSubmatch(withoutCode(string(text)), -1) {
			if seen[m[0]] {
				t.Errorf("%s: heading %q appears twice", doc, m[0])
			}
			seen[m[0]] = true
		}
	}
}

func TestDocsLinksResolve(t *testing.T) {
	checked := 0
	for _, doc := range documents(t) {
		text, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range markdownLink.FindAllStringSubmatch(string(text), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, anchor, _ := strings.Cut(target, "#")
			path := doc
			if file != "" {
				path = filepath.Join(filepath.Dir(doc), file)
			}
			if _, err := os.Stat(path); err != nil {
				t.Errorf("%s links to %s, which does not exist", doc, target)
				continue
			}
			if anchor != "" && strings.HasSuffix(path, ".md") && !anchors(t, path)[anchor] {
				t.Errorf("%s links to %s, but %s has no heading #%s", doc, target, path, anchor)
			}
			checked++
		}
	}
	if checked < 20 {
		t.Fatalf("only %d relative links checked; the README should link its reference", checked)
	}
}

func TestDocsNameEveryServeFlag(t *testing.T) {
	var docs strings.Builder
	for _, doc := range documents(t) {
		text, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		docs.Write(text)
	}
	sample, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "egret.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	config.Flags(fs)
	n := 0
	fs.VisitAll(func(f *pflag.Flag) {
		n++
		if !strings.Contains(docs.String(), "--"+f.Name) {
			t.Errorf("flag --%s is not documented in README.md or docs/", f.Name)
		}
		key := strings.ReplaceAll(f.Name, "-", "_")
		switch f.Name {
		case "config": // names the file itself
		case "var": // the file's key is `variables:`
			key = "variables"
			fallthrough
		default:
			if !strings.Contains(string(sample), key+":") {
				t.Errorf("key %s (--%s) is missing from deploy/egret.yaml, which documents every key", key, f.Name)
			}
		}
	})
	if n < 20 {
		t.Fatalf("only %d serve flags seen", n)
	}
}

var (
	readmeCommand = regexp.MustCompile(`(?m)^go run \./cmd/egret (.+?)\s+# (.*)$`)
	exitComment   = regexp.MustCompile(`^exit (\d+)`)
	productCount  = regexp.MustCompile(`^the (\d+) embedded products`)
)

// TestReadmeCommands runs the `go run ./cmd/egret …` lines of the README
// in-process and holds each to its comment: "exit N" is the exit code, and
// "the N embedded products" the length of the list.
func TestReadmeCommands(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	ran := 0
	for _, m := range readmeCommand.FindAllStringSubmatch(string(readme), -1) {
		args, comment := strings.Fields(m[1]), m[2]
		if args[0] == "review" || args[0] == "diff" { // read a log the reader has; review_test.go and diff_test.go cover them
			continue
		}
		code, out, errOut := egret(t, args...)
		ran++
		if e := exitComment.FindStringSubmatch(comment); e != nil {
			if want, _ := strconv.Atoi(e[1]); code != want {
				t.Errorf("egret %s: exit %d, the README says %d\n%s%s", m[1], code, want, out, errOut)
			}
			continue
		}
		if code != 0 {
			t.Errorf("egret %s: exit %d\n%s%s", m[1], code, out, errOut)
		}
		if p := productCount.FindStringSubmatch(comment); p != nil {
			lines := strings.Count(strings.TrimSpace(out), "\n") // after the header line
			if want, _ := strconv.Atoi(p[1]); lines != want {
				t.Errorf("egret products lists %d products, the README says %d", lines, want)
			}
		}
	}
	if ran < 4 {
		t.Fatalf("only %d README commands ran; the pattern no longer matches the README", ran)
	}
}
