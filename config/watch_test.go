package config

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const (
	eventually = 5 * time.Second        // how long a reload may take to come
	quiet      = 500 * time.Millisecond // how long to wait for an extra one
)

// watched runs Watch on file until the test ends and counts the reloads.
type watched struct {
	t      *testing.T
	calls  atomic.Int32
	sighup chan os.Signal
}

// startWatch starts Watch and waits until it runs: a SIGHUP gets through.
func startWatch(t *testing.T, file string) *watched {
	t.Helper()
	w := &watched{t: t, sighup: make(chan os.Signal, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Watch(ctx, file, w.sighup, func() { w.calls.Add(1) }) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Watch: %v", err)
			}
		case <-time.After(eventually):
			t.Error("Watch did not return after its context was cancelled")
		}
	})
	w.hup()
	w.expect(1, "the first SIGHUP")
	return w
}

func (w *watched) hup() { w.sighup <- syscall.SIGHUP }

// expect waits for the n-th reload, then checks that no other follows.
func (w *watched) expect(n int32, after string) {
	w.t.Helper()
	deadline := time.Now().Add(eventually)
	for w.calls.Load() < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := w.calls.Load(); got < n {
		w.t.Fatalf("after %s: %d reloads within %v, want %d", after, got, eventually, n)
	}
	time.Sleep(quiet)
	if got := w.calls.Load(); got != n {
		w.t.Fatalf("after %s: %d reloads, want %d (one per burst)", after, got, n)
	}
}

func write(t *testing.T, name, text string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestWatchInPlaceWrite(t *testing.T) {
	t.Parallel()
	file := writeConfig(t, "mode: enforce\n")
	w := startWatch(t, file)
	write(t, file, "mode: report\n")
	w.expect(2, "an in-place write")
	// A burst of writes is one reload.
	for i := range 5 {
		write(t, file, "max_conns: "+string(rune('1'+i))+"\n")
	}
	w.expect(3, "a burst of writes")
	// Writing the same content again is no change.
	write(t, file, "max_conns: 5\n")
	w.expect(3, "a rewrite with the same content")
}

func TestWatchRename(t *testing.T) {
	t.Parallel()
	file := writeConfig(t, "mode: enforce\n")
	w := startWatch(t, file)
	for i, text := range []string{"mode: report\n", "mode: enforce\n"} {
		tmp := filepath.Join(filepath.Dir(file), ".egret.yaml.tmp")
		write(t, tmp, text)
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
		w.expect(int32(2+i), "a temporary file renamed over the file")
	}
}

func TestWatchRemoveRecreate(t *testing.T) {
	t.Parallel()
	file := writeConfig(t, "mode: enforce\n")
	w := startWatch(t, file)
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	write(t, file, "mode: report\n")
	w.expect(2, "remove and re-create")
	// A missing file is not a change; its return with new content is.
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	w.expect(2, "a removal")
	write(t, file, "mode: enforce\n")
	w.expect(3, "the file coming back")
	// The watch still works afterwards.
	write(t, file, "mode: report\n")
	w.expect(4, "an in-place write after re-creation")
}

// TestWatchConfigMap swaps a Kubernetes ConfigMap volume's ..data symlink:
// egret.yaml -> ..data/egret.yaml, ..data -> ..2026_01_01.
func TestWatchConfigMap(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	version := func(name, text string) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, name, "egret.yaml"), text)
	}
	swap := func(name string) {
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(name, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	version("..2026_01_01", "mode: enforce\n")
	if err := os.Symlink("..2026_01_01", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "egret.yaml")
	if err := os.Symlink("..data/egret.yaml", file); err != nil {
		t.Fatal(err)
	}
	w := startWatch(t, file)

	version("..2026_01_02", "mode: report\n")
	swap("..2026_01_02")
	if err := os.RemoveAll(filepath.Join(dir, "..2026_01_01")); err != nil { // as the kubelet does
		t.Fatal(err)
	}
	w.expect(2, "a ..data swap")

	version("..2026_01_03", "mode: enforce\n")
	swap("..2026_01_03")
	w.expect(3, "a second ..data swap")
	if got, _ := os.ReadFile(file); string(got) != "mode: enforce\n" {
		t.Fatalf("the file reads %q", got)
	}
}

// TestWatchSymlinkElsewhere writes in place to a symlink's target in
// another directory.
func TestWatchSymlinkElsewhere(t *testing.T) {
	t.Parallel()
	target := writeConfig(t, "mode: enforce\n")
	file := filepath.Join(t.TempDir(), "egret.yaml")
	if err := os.Symlink(target, file); err != nil {
		t.Fatal(err)
	}
	w := startWatch(t, file)
	write(t, target, "mode: report\n")
	w.expect(2, "an in-place write to the target")
}

func TestWatchSIGHUP(t *testing.T) {
	t.Parallel()
	file := writeConfig(t, "mode: enforce\n")
	w := startWatch(t, file)
	w.hup()
	w.expect(2, "a SIGHUP without a change")
	// A SIGHUP during a burst of writes adds no call.
	write(t, file, "mode: report\n")
	w.hup()
	w.expect(3, "a write and a SIGHUP together")
}

func TestWatchSIGHUPOnly(t *testing.T) {
	t.Parallel()
	w := startWatch(t, "") // no file: SIGHUP alone
	w.hup()
	w.expect(2, "a SIGHUP")
}

func TestWatchIgnoresOtherFiles(t *testing.T) {
	t.Parallel()
	file := writeConfig(t, "mode: enforce\n")
	w := startWatch(t, file)
	other := filepath.Join(filepath.Dir(file), "other.yaml")
	write(t, other, "unrelated: true\n")
	write(t, other, "unrelated: false\n")
	if err := os.Rename(other, other+".bak"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * debounce)
	w.expect(1, "writes to another file in the directory")
}

// TestWatchLoad reloads with Load from Watch's callback, as egret serve
// does, under the race detector.
func TestWatchLoad(t *testing.T) {
	t.Parallel()
	file := writeConfig(t, "listen: \":1111\"\n")
	fs := serveFlags(t, "--config", file, "--mode", "report")
	var mu sync.Mutex
	var listens []string
	seen := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), listens...)
	}
	waitFor := func(want ...string) {
		t.Helper()
		deadline := time.Now().Add(eventually)
		for len(seen()) < len(want) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if got := seen(); !slices.Equal(got, want) {
			t.Fatalf("reloads saw %q, want %q", got, want)
		}
	}
	sighup := make(chan os.Signal, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Watch(ctx, file, sighup, func() {
			c, err := Load(fs)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				listens = append(listens, err.Error())
			case c.Mode != "report":
				listens = append(listens, "--mode lost its precedence: "+c.Mode)
			default:
				listens = append(listens, c.Listen)
			}
		})
	}()
	defer func() { cancel(); <-done }()
	sighup <- syscall.SIGHUP
	waitFor(":1111")
	write(t, file, "listen: \":2222\"\n")
	waitFor(":1111", ":2222")
	write(t, file, "listen: [\":3333\"]\n")
	waitFor(":1111", ":2222", file+":1: listen: want a single value, not a list")
}

// TestWatchDirectoryRecreated removes the file's whole directory and makes
// it again: the directory's watch is gone, and the poll finds the file.
// Not parallel: it shortens the poll for its own Watch only.
func TestWatchDirectoryRecreated(t *testing.T) {
	old := pollInterval
	t.Cleanup(func() { pollInterval = old }) // after Watch's own clean-up
	pollInterval = 100 * time.Millisecond    // shorter than debounce: no starving
	file := writeConfig(t, "mode: enforce\n")
	w := startWatch(t, file)
	dir := filepath.Dir(file)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, file, "mode: report\n")
	w.expect(2, "the directory made again")
	write(t, file, "mode: enforce\n")
	w.expect(3, "a write after the directory came back")
}
