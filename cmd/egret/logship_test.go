package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/egret-proxy/egret/internal/rsyslogtest"
	"github.com/egret-proxy/egret/telemetry/telemetrytest"
)

// shipper sends plain requests through a running egret and remembers
// which were answered (not 503): each of those must have its decision line
// at the sink.
type shipper struct {
	t        *testing.T
	s        *served
	port     int
	client   *http.Client
	answered map[string]int // path → status, for every request not refused with 503
}

func newShipper(t *testing.T, s *served, port int) *shipper {
	pu, _ := url.Parse("http://" + s.proxy)
	return &shipper{t: t, s: s, port: port, answered: map[string]int{},
		client: &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(pu), DisableKeepAlives: true}}}
}

// get requests path on the upstream (allowed) or on denied.example, and
// returns the status.
func (sh *shipper) get(path string, allowed bool) int {
	sh.t.Helper()
	target := fmt.Sprintf("http://example.com:%d%s", sh.port, path)
	if !allowed {
		target = "http://denied.example" + path
	}
	resp, err := sh.client.Get(target)
	if err != nil {
		sh.t.Fatalf("GET %s: %v", target, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		sh.answered[path] = resp.StatusCode
	}
	return resp.StatusCode
}

// check compares the decision lines' paths at the sink with the answered
// requests: none missing, none extra.
func (sh *shipper) check(lines []map[string]any) {
	sh.t.Helper()
	got := map[string]bool{}
	for _, l := range lines {
		if l["msg"] == "decision" {
			p, _ := l["path"].(string)
			got[p] = true
		}
	}
	for p := range sh.answered {
		if !got[p] {
			sh.t.Errorf("request %s was answered %d but its decision line is not at the sink", p, sh.answered[p])
		}
	}
	for p := range got {
		if _, ok := sh.answered[p]; !ok {
			sh.t.Errorf("the sink has a decision for %s, which was refused", p)
		}
	}
}

// TestServeShipsToRsyslog: --decision-log syslog://… delivers every
// decision to a real rsyslog; while rsyslog is stopped requests get 503
// and nothing is lost; once it is back, traffic flows again.
func TestServeShipsToRsyslog(t *testing.T) {
	srv := rsyslogtest.Start(t)
	_, port := upstream(t)
	s := startServe(t, "product: [local]\n", port, "--decision-log", "syslog://"+srv.Addr)
	sh := newShipper(t, s, port)
	for i := 0; i < 10; i++ {
		if code := sh.get(fmt.Sprintf("/up-%d", i), i%3 != 0); code != 200 && code != 403 {
			t.Fatalf("request %d: %d", i, code)
		}
	}
	s.waitFor(func() bool { return len(srv.Messages()) >= 2*len(sh.answered)-countDenied(sh) }, "the lines so far at rsyslog")
	srv.Stop()
	for i := 0; i < 3; i++ {
		if code := sh.get(fmt.Sprintf("/down-%d", i), true); code != http.StatusServiceUnavailable {
			t.Errorf("with rsyslog stopped, request %d: %d, want 503", i, code)
		}
	}
	srv.Restart()
	s.waitFor(func() bool { return sh.get("/back", true) == 200 }, "traffic after rsyslog is back")
	for i := 0; i < 5; i++ {
		if code := sh.get(fmt.Sprintf("/again-%d", i), true); code != 200 {
			t.Fatalf("after the restart, request %d: %d", i, code)
		}
	}
	// Decision and close lines of every answered request.
	msgs := srv.WaitFor(len(sh.answered))
	s.waitFor(func() bool { msgs = srv.Messages(); return len(msgs) >= 2*len(sh.answered)-countDenied(sh) }, "every line at rsyslog")
	var lines []map[string]any
	for _, m := range msgs {
		var v map[string]any
		if err := json.Unmarshal([]byte(m.Msg), &v); err != nil {
			t.Fatalf("rsyslog's message is not the JSON line: %q", m.Msg)
		}
		if m.App != "egret" || m.MsgID != v["msg"] {
			t.Errorf("message %+v", m)
		}
		lines = append(lines, v)
	}
	sh.check(lines)
	if !strings.Contains(s.stderr.String(), "refusing traffic until it can be written") || !strings.Contains(s.stderr.String(), "decision log writable again") {
		t.Errorf("stderr does not tell the outage:\n%s", s.stderr.String())
	}
}

func countDenied(sh *shipper) int {
	n := 0
	for _, code := range sh.answered {
		if code == 403 {
			n++ // a deny has no close line
		}
	}
	return n
}

// TestServeShipsToOTLP: --decision-log otlp sends each line as an
// OpenTelemetry log record to the collector; a collector answering 503
// makes egret answer 503, and nothing answered is missing.
func TestServeShipsToOTLP(t *testing.T) {
	clearOTelEnv(t)
	rcv := telemetrytest.NewReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rcv.URL)
	_, port := upstream(t)
	s := startServe(t, "product: [local]\n", port, "--decision-log", "otlp")
	sh := newShipper(t, s, port)
	for i := 0; i < 6; i++ {
		if code := sh.get(fmt.Sprintf("/up-%d", i), i%2 == 0); code != 200 && code != 403 {
			t.Fatalf("request %d: %d", i, code)
		}
	}
	// A close line is written after its response: let the last one arrive
	// before the collector goes down, or it is refused, and lost (it has no
	// request left to refuse).
	s.waitFor(func() bool { return len(rcv.Logs()) >= 2*len(sh.answered)-countDenied(sh) }, "the lines so far at the collector")
	rcv.SetLogsDown(true)
	if code := sh.get("/down", true); code != http.StatusServiceUnavailable {
		t.Errorf("with the collector refusing: %d, want 503", code)
	}
	rcv.SetLogsDown(false)
	if code := sh.get("/back", true); code != 200 {
		t.Errorf("after the collector is back: %d", code)
	}
	var lines []map[string]any
	s.waitFor(func() bool { return len(rcv.Logs()) >= 2*len(sh.answered)-countDenied(sh) }, "every record at the collector")
	for _, rec := range rcv.Logs() {
		body := rec.GetBody().GetKvlistValue()
		if body == nil {
			t.Fatalf("record body is not a map: %v", rec.GetBody())
		}
		v := map[string]any{}
		for _, kv := range body.Values {
			if kv.Key == "port" {
				v["port"] = kv.Value.GetIntValue() // a number, as in the JSON line
			} else {
				v[kv.Key] = kv.Value.GetStringValue()
			}
		}
		if rec.EventName != v["msg"] || rec.SeverityText != "INFO" {
			t.Errorf("record event %q severity %q, body msg %v", rec.EventName, rec.SeverityText, v["msg"])
		}
		if v["msg"] == "decision" && v["port"] != int64(port) && v["port"] != int64(80) {
			t.Errorf("port %v, want %d or 80, in %v", v["port"], port, v)
		}
		lines = append(lines, v)
	}
	sh.check(lines)
}
