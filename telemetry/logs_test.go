package telemetry

import (
	"context"
	"testing"

	"github.com/egret-proxy/egret/telemetry/telemetrytest"
)

const benchLine = `{"time":"2026-12-04T10:00:00Z","msg":"decision","decision":"allow","mode":"enforce","listener":"explicit","client":"127.0.0.1:5000","identity":"default","products":["netapp-connector-aws"],"method":"CONNECT","host":"api.services.cloud.netapp.com","port":443,"rule":"api.services.cloud.netapp.com","source":"seed","reason":"rule","product":"netapp-connector-aws","trace_id":"9ead8363065aa56dc1bf6a25b1454756"}` + "\n"

func TestLogSinkRecord(t *testing.T) {
	rcv := telemetrytest.NewReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rcv.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "")
	s, err := NewLogSink(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Write([]byte(benchLine)); err != nil {
		t.Fatal(err)
	}
	logs := rcv.Logs()
	if len(logs) != 1 {
		t.Fatalf("%d records, want 1", len(logs))
	}
	rec := logs[0]
	body := map[string]string{}
	var products []string
	var port int64
	for _, kv := range rec.GetBody().GetKvlistValue().GetValues() {
		switch kv.Key {
		case "port":
			port = kv.Value.GetIntValue()
		case "products":
			for _, v := range kv.Value.GetArrayValue().GetValues() {
				products = append(products, v.GetStringValue())
			}
		default:
			body[kv.Key] = kv.Value.GetStringValue()
		}
	}
	if rec.EventName != "decision" || body["host"] != "api.services.cloud.netapp.com" || body["trace_id"] != "9ead8363065aa56dc1bf6a25b1454756" ||
		port != 443 || len(products) != 1 || products[0] != "netapp-connector-aws" {
		t.Errorf("record %v", rec)
	}
	rcv.SetLogsDown(true)
	if _, err := s.Write([]byte(benchLine)); err == nil {
		t.Error("a write to a collector answering 503 succeeded")
	}
	if _, err := s.Write([]byte("not json\n")); err == nil {
		t.Error("a line that is not JSON was sent")
	}
}

// BenchmarkLogSink is the cost of one decision line exported as one OTLP
// log record over HTTP to a receiver on loopback (which decodes it).
func BenchmarkLogSink(b *testing.B) {
	rcv := telemetrytest.NewReceiver(b)
	b.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rcv.URL)
	s, err := NewLogSink(context.Background(), "bench")
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	p := []byte(benchLine)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Write(p); err != nil {
			b.Fatal(err)
		}
	}
}
