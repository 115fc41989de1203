package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// decisionLines counts the decision lines in the log file and every file
// rotated beside it, and how many files there are.
func decisionLines(t *testing.T, dir string) (lines, files int) {
	t.Helper()
	names, _ := filepath.Glob(filepath.Join(dir, "decisions*.log"))
	for _, name := range names {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if !strings.HasPrefix(sc.Text(), "{") || !strings.HasSuffix(sc.Text(), "}") {
				t.Errorf("%s: a line that is not one whole JSON object: %q", name, sc.Text())
			}
			if strings.Contains(sc.Text(), `"msg":"decision"`) {
				lines++
			}
		}
		f.Close()
	}
	return lines, len(names)
}

// TestServeRotatesTheDecisionLog: SIGUSR1 starts a new file and keeps the
// old one; past --decision-log-max-size the file rotates by itself, and
// --decision-log-keep bounds the rotated files. No decision line is lost
// or split across files.
func TestServeRotatesTheDecisionLog(t *testing.T) {
	_, port := upstream(t)
	dir := t.TempDir()
	logPath := filepath.Join(dir, "decisions.log")
	s := startServe(t, "product: [local]\n", port,
		"--decision-log", logPath, "--decision-log-max-size", "1MiB", "--decision-log-keep", "2")
	denied := fmt.Sprintf("denied.example:%d", port)
	sent := 0
	send := func(n int) {
		for range n {
			c, _, st := s.tunnel(denied)
			c.Close()
			if st != 403 {
				t.Fatalf("CONNECT %s: %d", denied, st)
			}
			sent++
		}
	}

	send(10)
	s.cmd.Process.Signal(syscall.SIGUSR1)
	s.waitFor(func() bool { return strings.Contains(s.stderr.String(), "decision log rotated") }, "the rotation by SIGUSR1")
	send(10)
	if lines, files := decisionLines(t, dir); lines != sent || files != 2 {
		t.Fatalf("after SIGUSR1: %d decision lines in %d files, want %d in 2", lines, files, sent)
	}
	fi, err := os.Stat(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() == 0 || fi.Size() > 10*1024 {
		t.Errorf("the new file holds %d bytes, want only the 10 lines since the rotation", fi.Size())
	}

	// ~300 bytes a line: 4,000 lines pass 1 MiB once; that rotation keeps
	// every line, in three files.
	send(4000)
	if lines, files := decisionLines(t, dir); lines != sent || files != 3 {
		t.Errorf("after passing 1 MiB: %d decision lines in %d files, want %d in 3", lines, files, sent)
	}
	if fi, _ := os.Stat(logPath); fi.Size() > 1<<20 {
		t.Errorf("the log is %d bytes, past --decision-log-max-size 1MiB", fi.Size())
	}

	// A third rotation leaves four files; keep 2 removes the oldest (the
	// removal runs after the rotation, in lumberjack's own goroutine).
	s.cmd.Process.Signal(syscall.SIGUSR1)
	s.waitFor(func() bool { return strings.Count(s.stderr.String(), "decision log rotated") == 2 }, "the second SIGUSR1")
	send(5)
	s.waitFor(func() bool { _, files := decisionLines(t, dir); return files == 3 }, "the oldest rotated file removed")
	lines, files := decisionLines(t, dir)
	if lines != sent-10 {
		t.Errorf("%d lines kept of %d sent, want all but the 10 of the removed first file", lines, sent)
	}
	t.Logf("%d decisions sent, %d lines kept in %d files", sent, lines, files)
}
