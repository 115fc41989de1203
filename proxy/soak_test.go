package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/egret-proxy/egret/allowlists"
)

// TestSoak holds many tunnels open through one egret at once, reloads the
// rules under that load, and lets slowloris clients trickle their headers
// meanwhile. It checks that every tunnel echoes before and after the
// reloads, that every slowloris client is cut by the read-header timeout,
// and that once the tunnels close, goroutines and open file descriptors
// return to what they were before (no leak).
//
// The normal suite opens 1,000 tunnels; `make soak` sets
// EGRET_SOAK_TUNNELS=10000 (docs/SECURITY.md has the numbers).
func TestSoak(t *testing.T) {
	tunnels := 1000
	if s := os.Getenv("EGRET_SOAK_TUNNELS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("EGRET_SOAK_TUNNELS=%q: want a positive number", s)
		}
		tunnels = n
	}
	const slowClients = 20
	// Per tunnel: the client's socket; egret's two sockets and, while it
	// splices, a pipe (two fds) per direction; the echo upstream's socket.
	// Eight in all.
	raiseFileLimit(t, uint64(8*tunnels+4*slowClients+1024))
	deadline := time.Now().Add(2*time.Minute + time.Duration(tunnels)*10*time.Millisecond)

	echo := serveUpstream(t, func(c *net.TCPConn) {
		defer c.Close()
		io.Copy(struct{ io.Writer }{c}, struct{ io.Reader }{c}) // no splice: no pipe fds on the test's side
	})
	lines := &lineCounter{}
	h := newHarness(t, harnessOpts{
		extraRules: fmt.Sprintf("  - {host: example.com, ports: [%d], purpose: echo}", echo),
		log:        lines,
		mutate: func(r *Rules) {
			r.Limits.MaxConns = tunnels + slowClients + 100
			r.Limits.ReadHeaderTimeout = time.Second
		},
	})
	target := fmt.Sprintf("example.com:%d", echo)
	// One tunnel first, so that what the server starts once is running
	// before the baseline is taken.
	warm := openTunnel(t, h.addr, target, deadline)
	warm.echo(t, "warm-up")
	warm.Close()
	waitFor(t, "the warm-up tunnel to end", func() bool { return h.srv.ActiveConns() == 0 })
	baseG, baseFD := settle(runtime.NumGoroutine, 0, 0), settle(openFDs, 0, 0)

	start := time.Now()
	slow := startSlowloris(t, h.addr, slowClients)

	conns := make([]*tunnelConn, tunnels)
	parallel(t, tunnels, func(i int) {
		conns[i] = openTunnel(t, h.addr, target, deadline)
		conns[i].echo(t, fmt.Sprintf("tunnel %d", i))
	})
	opened := time.Since(start)
	if n := h.srv.ActiveConns(); n < int64(tunnels) {
		t.Fatalf("%d connections active with %d tunnels open", n, tunnels)
	}
	peakG, peakFD := runtime.NumGoroutine(), openFDs()
	var mem runtime.MemStats
	runtime.ReadMemStats(&mem)

	// Reload under load, several times, while every tunnel talks again.
	var reloads atomic.Int64
	stopReloading := make(chan struct{})
	reloaded := make(chan struct{})
	go func() {
		defer close(reloaded)
		for {
			select {
			case <-stopReloading:
				return
			case <-time.After(20 * time.Millisecond):
			}
			swapRules(h, func(r *Rules) {
				r.Policy, r.Default.Identity = recompile(t, r.Policy, allowlists.Settings{Deny: []string{fmt.Sprintf("reload-%d.example", reloads.Load())}})
			})
			reloads.Add(1)
		}
	}()
	parallel(t, tunnels, func(i int) { conns[i].echo(t, fmt.Sprintf("tunnel %d after reload", i)) })
	close(stopReloading)
	<-reloaded
	if reloads.Load() == 0 {
		t.Fatal("no reload happened while the tunnels were busy")
	}
	fresh := openTunnel(t, h.addr, target, deadline)
	fresh.echo(t, "a tunnel opened after the reloads")
	fresh.Close()

	if cut := slow.wait(t, 10*time.Second); cut != slowClients {
		t.Fatalf("%d of %d slowloris clients were cut by the read-header timeout", cut, slowClients)
	}

	for _, c := range conns {
		c.Close()
	}
	waitUntil(t, deadline, "every connection to end", func() bool { return h.srv.ActiveConns() == 0 })
	const slack = 10 // the runtime's and the test's own coming and going
	endG := settle(runtime.NumGoroutine, baseG+slack, 30*time.Second)
	endFD := settle(openFDs, baseFD+slack, 30*time.Second)
	t.Logf("%d tunnels opened and echoed in %v; %d reloads under load; %d slowloris clients cut; heap in use with the tunnels open %d MiB (the test's clients and upstream included)",
		tunnels, opened.Round(time.Millisecond), reloads.Load(), slowClients, mem.HeapInuse>>20)
	t.Logf("goroutines: baseline %d, peak %d, after %d; open fds: baseline %d, peak %d, after %d; decision log lines %d",
		baseG, peakG, endG, baseFD, peakFD, endFD, lines.n.Load())
	if endG > baseG+slack {
		t.Errorf("goroutines: %d after the tunnels closed, baseline %d", endG, baseG)
	}
	if endFD > baseFD+slack {
		t.Errorf("open fds: %d after the tunnels closed, baseline %d", endFD, baseFD)
	}
	// Two lines (decision, close) per tunnel, warm-up and fresh included,
	// and one bad-request line per slowloris client cut.
	waitUntil(t, deadline, "every close line", func() bool { return lines.n.Load() == int64(2*(tunnels+2)+slowClients) })
}

// raiseFileLimit makes sure the process may open n files.
func raiseFileLimit(t *testing.T, n uint64) {
	t.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	if old.Cur >= n {
		return
	}
	lim := syscall.Rlimit{Cur: n, Max: max(n, old.Max)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("the soak needs %d open files; the limit is %d/%d and cannot be raised: %v", n, old.Cur, old.Max, err)
	}
	t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
}

func openFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

// settle samples f until it is at most limit (or, with limit 0, until it
// stops changing), for at most wait; it returns the last sample.
func settle(f func() int, limit int, wait time.Duration) int {
	if wait == 0 {
		wait = 5 * time.Second
	}
	end := time.Now().Add(wait)
	last := f()
	for time.Now().Before(end) {
		time.Sleep(50 * time.Millisecond)
		cur := f()
		if (limit > 0 && cur <= limit) || (limit == 0 && cur == last) {
			return cur
		}
		last = cur
	}
	return last
}

func waitUntil(t *testing.T, deadline time.Time, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// parallel runs f(0..n-1) on a bounded number of workers (a burst of
// thousands of dials would overflow the listen backlog).
func parallel(t *testing.T, n int, f func(i int)) {
	t.Helper()
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for range min(n, 128) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n && !t.Failed(); i = int(next.Add(1) - 1) {
				f(i)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
}

// tunnelConn is a client's open CONNECT tunnel to the echo upstream.
type tunnelConn struct {
	net.Conn
	br *bufio.Reader
}

// openTunnel is called from worker goroutines: it reports with t.Error
// and returns nil-safe values rather than calling t.Fatal.
func openTunnel(t *testing.T, addr, target string, deadline time.Time) *tunnelConn {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Errorf("dial: %v", err)
		return &tunnelConn{}
	}
	c.SetDeadline(deadline)
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	status, err := br.ReadString('\n')
	for err == nil { // the rest of the header
		var line string
		if line, err = br.ReadString('\n'); line == "\r\n" {
			break
		}
	}
	if err != nil || len(status) < 12 || status[9:12] != "200" {
		t.Errorf("CONNECT: %q %v", status, err)
	}
	return &tunnelConn{Conn: c, br: br}
}

// echo sends a line through the tunnel and expects it back.
func (c *tunnelConn) echo(t *testing.T, msg string) {
	if c.Conn == nil {
		return
	}
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		t.Errorf("%s: write: %v", msg, err)
		return
	}
	if got, err := c.br.ReadString('\n'); err != nil || got != msg+"\n" {
		t.Errorf("%s: echoed %q, %v", msg, got, err)
	}
}

func (c *tunnelConn) Close() error {
	if c.Conn == nil {
		return nil
	}
	return c.Conn.Close()
}

// slowloris is a set of clients sending a request header one byte every
// 100 ms, forever.
type slowloris struct {
	cut  atomic.Int64
	done sync.WaitGroup
}

func startSlowloris(t *testing.T, addr string, n int) *slowloris {
	t.Helper()
	s := &slowloris{}
	for range n {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		s.done.Add(1)
		go s.trickle(c)
	}
	return s
}

func (s *slowloris) trickle(c net.Conn) {
	defer s.done.Done()
	defer c.Close()
	header := "GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\nX-Slow: "
	cut := make(chan struct{})
	go func() { // the read side sees egret's 408 or close
		defer close(cut)
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		io.Copy(io.Discard, c)
	}()
	for i := 0; i < 300; i++ { // 30 s at most, far beyond the 1 s timeout
		select {
		case <-cut:
			s.cut.Add(1)
			return
		case <-time.After(100 * time.Millisecond):
		}
		b := header[i%len(header)]
		if i >= len(header) {
			b = 'a'
		}
		if _, err := c.Write([]byte{b}); err != nil {
			<-cut
			s.cut.Add(1)
			return
		}
	}
}

// wait waits up to d for the clients to end and returns how many egret cut.
func (s *slowloris) wait(t *testing.T, d time.Duration) int64 {
	t.Helper()
	done := make(chan struct{})
	go func() { s.done.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
	return s.cut.Load()
}

// lineCounter is a decision log that counts its lines.
type lineCounter struct{ n atomic.Int64 }

func (l *lineCounter) Write(p []byte) (int, error) {
	for _, b := range p {
		if b == '\n' {
			l.n.Add(1)
		}
	}
	return len(p), nil
}
