package deploy

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/egret-proxy/egret/internal/rsyslogtest"
	"github.com/egret-proxy/egret/logsink"
)

// TestRsyslogConfig runs rsyslog/egret.conf for real (its port and file
// moved into the test's directory): lines egret's syslog sink sends come
// out byte for byte as egret writes them to a file, so egret review and
// egret diff read the result as they read egret's own log.
func TestRsyslogConfig(t *testing.T) {
	rsyslogd := rsyslogtest.Require(t)
	text, err := os.ReadFile("rsyslog/egret.conf")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(addr)
	out := filepath.Join(dir, "decisions.log")
	conf := string(text)
	for from, to := range map[string]string{
		`input(type="imtcp" port="514"`:       `input(type="imtcp" address="127.0.0.1" port="` + port + `"`,
		`file="/var/log/egret/decisions.log"`: `file="` + out + `"`,
	} {
		if !strings.Contains(conf, from) {
			t.Fatalf("rsyslog/egret.conf lost %q", from)
		}
		conf = strings.ReplaceAll(conf, from, to)
	}
	confFile := filepath.Join(dir, "rsyslog.conf")
	os.WriteFile(confFile, []byte(fmt.Sprintf("global(workDirectory=%q)\n%s", dir, conf)), 0o644)
	if out, err := exec.Command(rsyslogd, "-N1", "-f", confFile).CombinedOutput(); err != nil {
		t.Fatalf("rsyslogd -N1: %v\n%s", err, out)
	}
	cmd := exec.Command(rsyslogd, "-n", "-f", confFile, "-i", filepath.Join(dir, "pid"))
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	var sink *logsink.Syslog
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if sink, err = logsink.DialSyslog("syslog://"+addr, 5*time.Second); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rsyslogd did not listen: %v\n%s", err, stderr.String())
		}
	}
	defer sink.Close()
	lines := []string{
		`{"time":"2026-12-04T10:00:00Z","msg":"decision","decision":"deny","mode":"enforce","listener":"explicit","client":"10.0.1.7:4000","identity":"default","products":["netapp-connector-aws"],"method":"CONNECT","host":"tracker.example","port":443,"reason":"no-rule","status":403,"trace_id":"9ead8363065aa56dc1bf6a25b1454756"}`,
		`{"time":"2026-12-04T10:00:01Z","msg":"decision","decision":"deny","mode":"enforce","listener":"explicit","client":"10.0.1.7:4001","identity":"default","products":["netapp-connector-aws"],"method":"CONNECT","host":"tracker.example","port":443,"reason":"no-rule","status":403,"trace_id":"9ead8363065aa56dc1bf6a25b1454757"}`,
	}
	for _, l := range lines {
		if _, err := sink.Write([]byte(l + "\n")); err != nil {
			t.Fatal(err)
		}
	}
	want := strings.Join(lines, "\n") + "\n"
	var got []byte
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		got, _ = os.ReadFile(out)
		if string(got) == want || time.Now().After(deadline) {
			break
		}
	}
	if string(got) != want {
		t.Fatalf("rsyslog wrote\n%s\nwant\n%s", got, want)
	}
}
