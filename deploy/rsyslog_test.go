package deploy

import (
	"os"
	"path/filepath"
	"strings"
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
	text, err := os.ReadFile("rsyslog/egret.conf")
	if err != nil {
		t.Fatal(err)
	}
	srv := rsyslogtest.StartConfig(t, func(port, dir string) string {
		conf := string(text)
		for from, to := range map[string]string{
			`input(type="imtcp" port="514"`:       `input(type="imtcp" address="127.0.0.1" port="` + port + `"`,
			`file="/var/log/egret/decisions.log"`: `file="` + filepath.Join(dir, "decisions.log") + `"`,
		} {
			if !strings.Contains(conf, from) {
				t.Fatalf("rsyslog/egret.conf lost %q", from)
			}
			conf = strings.ReplaceAll(conf, from, to)
		}
		return conf
	})
	out := filepath.Join(srv.Dir, "decisions.log")
	sink, err := logsink.DialSyslog("syslog://"+srv.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
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
