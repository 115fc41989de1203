package logsink

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/egret-proxy/egret/internal/rsyslogtest"
)

func line(i int, msg string) []byte {
	return []byte(fmt.Sprintf(`{"time":"2026-12-04T10:00:00Z","msg":%q,"decision":"allow","host":"h%d.example.com","products":["p"],"port":443}`+"\n", msg, i))
}

// TestRsyslogReadsWhatIsSent: rsyslog parses the messages as RFC 5424
// over TCP (octet counting) and UDP: app, MSGID, PROCID, facility, and the
// JSON line intact as the message.
func TestRsyslogReadsWhatIsSent(t *testing.T) {
	srv := rsyslogtest.Start(t)
	sent := 0
	for _, target := range []string{"syslog://" + srv.Addr, "syslog+udp://" + srv.Addr + "?facility=local3"} {
		s, err := DialSyslog(target, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 50; i++ {
			msg := "decision"
			if i%2 == 1 {
				msg = "close"
			}
			if _, err := s.Write(line(sent, msg)); err != nil {
				t.Fatalf("%s: write %d: %v", target, i, err)
			}
			sent++
		}
		s.Close()
	}
	got := srv.WaitFor(sent)
	if len(got) != sent {
		t.Fatalf("rsyslog wrote %d messages, want %d", len(got), sent)
	}
	seen := map[string]bool{}
	for i, m := range got {
		var v map[string]any
		if err := json.Unmarshal([]byte(m.Msg), &v); err != nil {
			t.Fatalf("message %d is not the JSON line: %q", i, m.Msg)
		}
		host := v["host"].(string)
		seen[host] = true
		var n int
		fmt.Sscanf(host, "h%d.", &n)
		wantFacility := "local0" // TCP, the default (rsyslog's inputs run apart: no order between them)
		if n >= 50 {
			wantFacility = "local3"
		}
		if m.App != "egret" || m.ProcID != strconv.Itoa(os.Getpid()) || m.MsgID != v["msg"] || m.Facility != wantFacility {
			t.Errorf("message %d: %+v", i, m)
		}
	}
	if len(seen) != sent {
		t.Errorf("%d distinct lines of %d", len(seen), sent)
	}
}

// TestSyslogServerRestart: a stopped server fails the next write (the
// proxy's 503); a restarted one takes the lines again, on a new
// connection; nothing written successfully is missing.
func TestSyslogServerRestart(t *testing.T) {
	srv := rsyslogtest.Start(t)
	s, err := DialSyslog("syslog://"+srv.Addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ok := 0
	write := func(i int) error {
		_, err := s.Write(line(i, "decision"))
		if err == nil {
			ok++
		}
		return err
	}
	for i := 0; i < 20; i++ {
		if err := write(i); err != nil {
			t.Fatal(err)
		}
	}
	srv.WaitFor(20)
	srv.Stop()
	if err := write(20); err == nil {
		t.Fatal("a write to a stopped server succeeded")
	} else if !strings.Contains(err.Error(), "syslog server") {
		t.Errorf("error %v does not name the syslog server", err)
	}
	srv.Restart()
	time.Sleep(redialPause) // the failed dial is remembered for this long
	for i := 21; i < 40; i++ {
		if err := write(i); err != nil {
			t.Fatalf("after the restart, write %d: %v", i, err)
		}
	}
	if got := srv.WaitFor(ok); len(got) != ok {
		t.Errorf("rsyslog has %d messages, %d writes succeeded", len(got), ok)
	}
}

func TestParseSyslog(t *testing.T) {
	for _, tc := range []struct {
		target, network, addr string
		facility              int
		err                   string
	}{
		{"syslog://127.0.0.1:514", "tcp", "127.0.0.1:514", 16, ""},
		{"syslog+tcp://logs.corp:6514", "tcp", "logs.corp:6514", 16, ""},
		{"syslog+udp://[::1]:514?facility=daemon", "udp", "[::1]:514", 3, ""},
		{"syslog://127.0.0.1", "", "", 0, "the server is HOST:PORT"},
		{"syslog://127.0.0.1:0", "", "", 0, "the port must be a number from 1 to 65535"},
		{"syslog://127.0.0.1:514?facility=mail7", "", "", 0, `"mail7" is not a facility`},
		{"syslog://127.0.0.1:514?level=info", "", "", 0, "the only parameter is facility"},
		{"syslog://u:p@127.0.0.1:514", "", "", 0, "write syslog://HOST:PORT"},
		{"syslog+tls://127.0.0.1:6514", "", "", 0, "the scheme is syslog://"},
	} {
		network, addr, facility, err := ParseSyslog(tc.target)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: err %v, want %q", tc.target, err, tc.err)
		case tc.err == "" && (err != nil || network != tc.network || addr != tc.addr || facility != tc.facility):
			t.Errorf("%s: %s %s %d %v", tc.target, network, addr, facility, err)
		}
	}
}

func TestMsgID(t *testing.T) {
	for in, want := range map[string]string{
		`{"time":"x","msg":"decision","a":1}`: "decision",
		`{"msg":"close"}`:                     "close",
		`{"msg":"two words"}`:                 "-",
		`{"msg":""}`:                          "-",
		`{"decision":"allow"}`:                "-",
	} {
		if got := msgID([]byte(in)); got != want {
			t.Errorf("msgID(%s) = %q, want %q", in, got, want)
		}
	}
}
