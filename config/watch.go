package config

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// debounce is how long Watch waits after the last event of a burst.
const debounce = 200 * time.Millisecond

// maxDelay bounds how long a burst of events can put a look off.
const maxDelay = 2 * time.Second

// pollInterval is how often Watch also looks at the file without an event,
// in case a watch was lost (its directory removed and created again). A
// variable so that tests can turn it off.
var pollInterval = 5 * time.Second

// Watch calls reload after the configuration file changes and on every
// signal received on sighup, until ctx is done; it then returns nil.
//
// It watches the file's directory, not the file, so that it sees in-place
// writes, a temporary file renamed over it, removal and re-creation, and a
// Kubernetes ConfigMap's ..data symlink swap. Events are debounced: a
// burst gives one call, 200ms after its last event (or 2s after its first,
// in a directory that never rests). A burst calls reload
// only when the file's content differs from what Watch saw last (a missing
// or empty file waits until it has content again), so unrelated files in
// the directory and rewrites with the same content do not; a SIGHUP always
// does. An in-place write slower than the debounce can still be seen half
// done: Load then fails or loads part of the file, and the write's end
// brings another call. Writers should rename a complete file into place.
//
// reload runs on Watch's goroutine, one call at a time. Watch never loads
// or swaps anything itself: reload should call Load and decide. file may
// be "" (SIGHUP only); sighup may be nil (file changes only).
func Watch(ctx context.Context, file string, sighup <-chan os.Signal, reload func()) error {
	w := &watcher{}
	if file != "" {
		if err := w.start(file); err != nil {
			return err
		}
		defer w.fw.Close()
	}
	timer := time.NewTimer(debounce)
	timer.Stop()
	var fire <-chan time.Time
	var burst time.Time // when the pending burst began
	arm := func() {
		switch {
		case fire == nil:
			burst, fire = time.Now(), timer.C
			timer.Reset(debounce)
		case time.Since(burst) < maxDelay:
			timer.Reset(debounce)
		} // else a directory that never rests: let the timer fire
	}
	poll := time.NewTicker(pollInterval)
	defer poll.Stop()
	forced := false
	for {
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case _, ok := <-w.events:
			if !ok {
				w.events = nil
				continue
			}
			arm()
		case _, ok := <-w.errors: // overflow and the like: look again
			if !ok {
				w.errors = nil
				continue
			}
			arm()
		case <-poll.C:
			if w.fw != nil {
				arm()
			}
		case _, ok := <-sighup:
			if !ok {
				sighup = nil
				continue
			}
			forced = true
			arm()
		case <-fire:
			fire = nil
			if w.changed() || forced {
				forced = false
				reload()
			}
		}
	}
}

// watcher follows one file through its directory.
type watcher struct {
	fw     *fsnotify.Watcher
	abs    string // the file's absolute path, as given
	dir    string // its directory
	target string // the extra directory of the symlink's target, if any
	last   []byte // the content hash last seen, nil if never read
	events chan fsnotify.Event
	errors chan error
}

func (w *watcher) start(file string) error {
	abs, err := filepath.Abs(file)
	if err != nil {
		return fmt.Errorf("watch %s: %w", file, err)
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch %s: %w", file, err)
	}
	w.fw, w.abs, w.dir = fw, abs, filepath.Dir(abs)
	if err := fw.Add(w.dir); err != nil {
		fw.Close()
		return fmt.Errorf("watch %s: %w", w.dir, err)
	}
	w.events, w.errors = fw.Events, fw.Errors
	w.last = w.look() // the content the caller has just loaded, presumably
	return nil
}

// changed reports whether the file's content differs from what was seen
// last, and remembers it. A file that cannot be read has not changed.
func (w *watcher) changed() bool {
	sum := w.look()
	if sum == nil || bytes.Equal(sum, w.last) {
		return false
	}
	w.last = sum
	return true
}

// look hashes the file's content (nil if it cannot be read or is empty),
// making sure
// the directories that matter are watched.
func (w *watcher) look() []byte {
	if w.fw == nil {
		return nil
	}
	_ = w.fw.Add(w.dir) // a no-op unless the directory came back
	if resolved, err := filepath.EvalSymlinks(w.abs); err == nil {
		w.follow(filepath.Dir(resolved))
	}
	data, err := os.ReadFile(w.abs)
	if err != nil || len(data) == 0 {
		return nil // missing, or an in-place write caught between truncate and write
	}
	sum := sha256.Sum256(data)
	return sum[:]
}

// follow also watches dir, the directory of the symlink's target, when it
// is not the file's own directory: in-place writes to a target elsewhere
// produce no event in the link's directory.
func (w *watcher) follow(dir string) {
	if dir == w.target || (dir == w.dir && w.target == "") {
		return
	}
	if w.target != "" {
		_ = w.fw.Remove(w.target) // it may be gone already
		w.target = ""
	}
	if dir != w.dir && w.fw.Add(dir) == nil {
		w.target = dir
	}
}
