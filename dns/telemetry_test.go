package dns

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/egret-proxy/egret/proxy"
	"github.com/egret-proxy/egret/telemetry"
	"github.com/egret-proxy/egret/telemetry/telemetrytest"
	mdns "github.com/miekg/dns"
)

// Every query has a span, with the trace ID its line shows, and counts in
// egret_decisions_total.
func TestSpansAndMetrics(t *testing.T) {
	rcv := telemetrytest.NewReceiver(t)
	for _, k := range []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
		"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "OTEL_TRACES_SAMPLER"} {
		t.Setenv(k, "")
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rcv.URL)
	tel, err := telemetry.New(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	d := newDoor(t, doorOpts{server: []proxy.Option{proxy.WithTelemetry(tel)}})
	d.ask("udp", "www.example.com.", mdns.TypeA)
	d.ask("udp", "www.example.com.", mdns.TypeTXT)
	d.ask("tcp", "example.org.", mdns.TypeA)

	admin := httptest.NewServer(d.px.AdminHandler())
	defer admin.Close()
	fams := telemetrytest.Scrape(t, admin.URL+"/metrics")
	for _, c := range []struct {
		labels map[string]string
		want   float64
	}{
		{map[string]string{"product": "test", "decision": "allow", "reason": "rule"}, 1},
		{map[string]string{"product": "test", "decision": "deny", "reason": "qtype"}, 1},
		{map[string]string{"product": "test", "decision": "deny", "reason": "no-rule"}, 3}, // and waitServing's two probes
	} {
		if got := telemetrytest.Value(fams, telemetry.MetricDecisions, c.labels); got != c.want {
			t.Errorf("egret_decisions_total%v = %v, want %v", c.labels, got, c.want)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	lines := d.log.lines(t)
	spans := rcv.WaitSpans(t, len(lines), 5*time.Second)
	byTrace := map[string]map[string]any{}
	for _, s := range spans {
		if s.Name != "DNS" {
			t.Errorf("span %q", s.Name)
		}
		byTrace[telemetrytest.TraceID(s)] = telemetrytest.Attrs(s)
	}
	for _, l := range lines {
		attrs := byTrace[fmt.Sprint(l["trace_id"])]
		if attrs == nil {
			t.Errorf("no span for line %v", l)
			continue
		}
		for _, k := range []string{"decision", "reason", "host", "qtype", "listener"} {
			if fmt.Sprint(attrs[k]) != fmt.Sprint(l[k]) {
				t.Errorf("span %s = %v, line %v", k, attrs[k], l[k])
			}
		}
	}
}
