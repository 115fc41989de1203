package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/egret-proxy/egret/telemetry"
	"github.com/egret-proxy/egret/telemetry/telemetrytest"
)

// clearOTelEnv keeps the test's environment, which the egret process
// inherits, from pointing its exporter anywhere the test did not mean.
func clearOTelEnv(t *testing.T) {
	for _, k := range []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
		"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_TRACES_SAMPLER",
		"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
	} {
		t.Setenv(k, "")
	}
}

// TestServeFlushesSpansOnSIGTERM runs egret with an OTLP endpoint and a
// batch delay of ten minutes: the tunnel's span can only reach the
// receiver through the flush on SIGTERM, and must have reached it by the
// time the process exits.
func TestServeFlushesSpansOnSIGTERM(t *testing.T) {
	clearOTelEnv(t)
	rcv := telemetrytest.NewReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rcv.URL)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")
	_, port := upstream(t)
	s := startServe(t, "product: [local]\n", port)
	if !strings.Contains(s.stderr.String(), "exporting spans with OTLP http/protobuf") {
		t.Errorf("stderr does not say spans are exported:\n%s", s.stderr.String())
	}
	c, br, status := s.tunnel(fmt.Sprintf("example.com:%d", port))
	if status != 200 {
		t.Fatalf("CONNECT %d", status)
	}
	if got := get(t, c, br, "/traced"); got != "upstream /traced" {
		t.Fatalf("through the tunnel: %q", got)
	}
	c.Close()
	s.waitFor(func() bool { return strings.Contains(s.stdout.String(), `"msg":"close"`) }, "the close line")
	if n := rcv.Requests(); n != 0 {
		t.Fatalf("%d exports before SIGTERM; the batch delay should hold them", n)
	}

	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, s.stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("egret did not exit after SIGTERM")
	}
	spans := rcv.Spans()
	if len(spans) != 1 {
		t.Fatalf("%d spans had arrived when egret exited, want 1\nstderr:\n%s", len(spans), s.stderr.String())
	}
	var decision struct {
		TraceID string `json:"trace_id"`
	}
	first, _, _ := strings.Cut(s.stdout.String(), "\n")
	if err := json.Unmarshal([]byte(first), &decision); err != nil {
		t.Fatalf("decision line %q: %v", first, err)
	}
	if got := telemetrytest.TraceID(spans[0]); got != decision.TraceID {
		t.Errorf("span trace ID %s, decision line's %s", got, decision.TraceID)
	}
	attrs := telemetrytest.Attrs(spans[0])
	if attrs["host"] != "example.com" || attrs["decision"] != "allow" || attrs["product"] != "local" || attrs["bytes_down"] == int64(0) {
		t.Errorf("span attributes %v", attrs)
	}
}

// TestServeMetricsCountReloadsAndDecisions scrapes the admin listener's
// /metrics of a running egret through a failed and a good reload.
func TestServeMetricsCountReloadsAndDecisions(t *testing.T) {
	clearOTelEnv(t)
	_, port := upstream(t)
	s := startServe(t, "product: [local]\n", port)
	metrics := "http://" + s.admin + "/metrics"
	reloads := func(result string) float64 {
		return telemetrytest.Value(telemetrytest.Scrape(t, metrics), telemetry.MetricReloads, map[string]string{"result": result})
	}
	fams := telemetrytest.Scrape(t, metrics)
	for _, result := range []string{"ok", "error"} {
		if telemetrytest.Find(fams, telemetry.MetricReloads, map[string]string{"result": result}) == nil {
			t.Errorf("no %s{result=%q} series before any reload", telemetry.MetricReloads, result)
		}
	}
	if _, _, st := s.tunnel(fmt.Sprintf("example.com:%d", port)); st != 200 {
		t.Fatalf("CONNECT %d", st)
	}
	if _, _, st := s.tunnel("example.org:443"); st != 403 {
		t.Fatalf("CONNECT example.org: %d", st)
	}
	fams = telemetrytest.Scrape(t, metrics)
	for _, d := range []map[string]string{
		{"product": "local", "decision": "allow", "reason": "rule"},
		{"product": "local", "decision": "deny", "reason": "no-rule"},
	} {
		if got := telemetrytest.Value(fams, telemetry.MetricDecisions, d); got != 1 {
			t.Errorf("%s%v = %v, want 1", telemetry.MetricDecisions, d, got)
		}
	}

	replaceFile(t, s.cfgPath, "product: [local]\nmdoe: report\n") // unknown key: fails validation
	s.waitFor(func() bool { return reloads("error") == 1 }, `egret_reloads_total{result="error"} 1`)
	if !strings.Contains(s.stderr.String(), "reload failed") {
		t.Errorf("no reload failure on stderr:\n%s", s.stderr.String())
	}
	replaceFile(t, s.cfgPath, "product: [local, netapp-connector-aws]\n")
	s.waitFor(func() bool { return reloads("ok") == 1 }, `egret_reloads_total{result="ok"} 1`)
	if n := reloads("error"); n != 1 {
		t.Errorf("error count %v after a good reload, want still 1", n)
	}
}

// replaceFile writes content next to path and renames it over path, as
// a careful operator (or a ConfigMap) does: the watcher sees one change.
func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
