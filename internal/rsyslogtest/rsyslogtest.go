// Package rsyslogtest runs a real rsyslogd for tests: listening on
// loopback for TCP and UDP on one port, writing every message it parses to
// a file as APP-NAME|MSGID|PROCID|FACILITY|MSG, one line each. What egret
// sends is thus read by the server operators run, not by a parser of
// egret's own.
package rsyslogtest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Server is a running rsyslogd.
type Server struct {
	t    testing.TB
	Addr string // 127.0.0.1:PORT (TCP, and UDP for Start)
	Dir  string // the test's directory for rsyslog's files
	conf string
	out  string
	cmd  *exec.Cmd
}

// Message is one parsed message as rsyslog wrote it.
type Message struct {
	App, MsgID, ProcID, Facility, Msg string
}

// Require fails under CI (which installs rsyslog) and skips elsewhere when
// rsyslogd is missing.
func Require(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("rsyslogd")
	if err != nil {
		if _, e := os.Stat("/usr/sbin/rsyslogd"); e == nil {
			return "/usr/sbin/rsyslogd"
		}
		if os.Getenv("CI") != "" {
			t.Fatal("rsyslogd is not installed (Debian: rsyslog); .ci/run installs it")
		}
		t.Skip("rsyslogd is not installed")
	}
	return path
}

// Start runs rsyslogd on a free loopback port until the test ends,
// writing every message to Messages' file.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartConfig(t, func(port, dir string) string {
		return fmt.Sprintf(`module(load="imtcp")
module(load="imudp")
template(name="fields" type="string" string="%%app-name%%|%%msgid%%|%%procid%%|%%syslogfacility-text%%|%%msg%%\n")
input(type="imtcp" address="127.0.0.1" port="%[1]s")
input(type="imudp" address="127.0.0.1" port="%[1]s")
*.* action(type="omfile" file="%[2]s" template="fields")
`, port, filepath.Join(dir, "messages.log"))
	})
}

// StartConfig runs rsyslogd on a configuration of the caller's, which
// conf writes for a free loopback TCP port and a directory of the test's
// own (Dir), until the test ends. rsyslogd -N1 checks it first; the
// server is running once it accepts on that port.
func StartConfig(t testing.TB, conf func(port, dir string) string) *Server {
	t.Helper()
	s := &Server{t: t, Dir: t.TempDir()}
	s.out = filepath.Join(s.Dir, "messages.log")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(s.Addr)
	s.conf = filepath.Join(s.Dir, "rsyslog.conf")
	text := fmt.Sprintf("global(workDirectory=%q)\n%s", s.Dir, conf(port, s.Dir))
	if err := os.WriteFile(s.conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(Require(t), "-N1", "-f", s.conf).CombinedOutput(); err != nil {
		t.Fatalf("rsyslogd -N1 refuses the configuration: %v\n%s\n%s", err, out, text)
	}
	s.start()
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) start() {
	s.t.Helper()
	s.cmd = exec.Command(Require(s.t), "-n", "-f", s.conf, "-i", filepath.Join(s.Dir, "rsyslogd.pid"))
	var stderr strings.Builder
	s.cmd.Stdout, s.cmd.Stderr = &stderr, &stderr
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("rsyslogd did not listen on %s: %v\n%s", s.Addr, err, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop stops rsyslogd with SIGTERM (it closes its connections) and waits
// for it to exit.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
	s.cmd = nil
}

// Restart starts rsyslogd again on the same port and file.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}

// Messages returns what rsyslog has written so far.
func (s *Server) Messages() []Message {
	f, err := os.Open(s.out)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		s.t.Fatal(err)
	}
	defer f.Close()
	var out []Message
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		p := strings.SplitN(sc.Text(), "|", 5)
		if len(p) != 5 {
			s.t.Fatalf("rsyslog wrote %q", sc.Text())
		}
		out = append(out, Message{App: p[0], MsgID: p[1], ProcID: p[2], Facility: p[3], Msg: p[4]})
	}
	return out
}

// WaitFor polls until rsyslog has written at least n messages, and
// returns them.
func (s *Server) WaitFor(n int) []Message {
	s.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		m := s.Messages()
		if len(m) >= n {
			return m
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("rsyslog wrote %d messages, want %d", len(m), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
