package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/egret-proxy/egret/telemetry"
	"github.com/egret-proxy/egret/telemetry/telemetrytest"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// otelEnv sets the OTLP variables for one test: endpoint "" turns export off.
func otelEnv(t *testing.T, endpoint string) {
	for _, k := range []string{
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
		"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "OTEL_TRACES_SAMPLER",
	} {
		t.Setenv(k, "")
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
}

func newTelemetry(t *testing.T) *telemetry.Telemetry {
	t.Helper()
	tel, err := telemetry.New(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tel.Shutdown(context.Background()) })
	return tel
}

func flush(t *testing.T, tel *telemetry.Telemetry) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, c *http.Client, url string) int {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestSpanPerTunnelAndRequest exports to an OTLP/HTTP receiver and checks
// that every decision line has its span, with the same trace ID, the
// decision's attributes and, for what was allowed, the bytes.
func TestSpanPerTunnelAndRequest(t *testing.T) {
	rcv := telemetrytest.NewReceiver(t)
	otelEnv(t, rcv.URL)
	tel := newTelemetry(t)
	h := newHarness(t, harnessOpts{server: []Option{WithTelemetry(tel)}})

	client := h.client("", "")
	if st := get(t, client, fmt.Sprintf("https://example.com:%d/tunnelled", h.tlsPort)); st != 200 {
		t.Fatalf("through a CONNECT tunnel: %d", st)
	}
	client.Transport.(*http.Transport).CloseIdleConnections() // ends the tunnel: close line, span end
	if st := get(t, client, fmt.Sprintf("http://example.com:%d/forwarded", h.httpPort)); st != 200 {
		t.Fatalf("forwarded GET: %d", st)
	}
	if st := h.raw("CONNECT denied.example:443 HTTP/1.1\r\nHost: denied.example:443\r\n\r\n").StatusCode; st != 403 {
		t.Fatalf("denied CONNECT: %d", st)
	}
	if st := h.raw("GET http://denied.example/x HTTP/1.1\r\nHost: denied.example\r\n\r\n").StatusCode; st != 403 {
		t.Fatalf("denied GET: %d", st)
	}
	lines := h.lines(6) // 4 decisions, 2 close lines
	flush(t, tel)
	spans := rcv.WaitSpans(t, 4, 5*time.Second)
	if len(spans) != 4 {
		t.Fatalf("%d spans, want 4 (2 allowed, 2 denied)", len(spans))
	}
	byTrace := map[string]*tracepb.Span{}
	for _, s := range spans {
		byTrace[telemetrytest.TraceID(s)] = s
	}
	closes := map[string]map[string]any{}
	for _, l := range lines {
		if l["msg"] == "close" {
			closes[fmt.Sprint(l["trace_id"])] = l
		}
	}
	for _, l := range lines {
		id := fmt.Sprint(l["trace_id"])
		span := byTrace[id]
		if span == nil {
			t.Errorf("no span with the trace_id %s of line %v", id, l)
			continue
		}
		if l["msg"] != "decision" {
			continue
		}
		if span.Name != l["method"] || span.Kind != tracepb.Span_SPAN_KIND_SERVER {
			t.Errorf("span %q kind %v for a %v line", span.Name, span.Kind, l["method"])
		}
		attrs := telemetrytest.Attrs(span)
		for _, k := range []string{"client", "identity", "host", "port", "decision", "rule", "reason", "product"} {
			want, logged := l[k]
			got, ok := attrs[k]
			if !logged {
				if ok {
					t.Errorf("span %s has %s=%v, which the log line does not", span.Name, k, got)
				}
				continue
			}
			if !ok || fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("span %s: %s = %v, want %v (from the log)", span.Name, k, got, want)
			}
		}
		if fmt.Sprint(attrs["products"]) != fmt.Sprint(l["products"]) {
			t.Errorf("span products %v, log %v", attrs["products"], l["products"])
		}
		c := closes[id]
		if l["decision"] == "deny" {
			if c != nil || attrs["bytes"] != nil {
				t.Errorf("a denied %v has a close line or bytes", l["method"])
			}
			continue
		}
		if c == nil {
			t.Errorf("allowed %v has no close line", l["method"])
			continue
		}
		for _, k := range []string{"bytes_up", "bytes_down"} {
			if fmt.Sprint(attrs[k]) != fmt.Sprint(c[k]) {
				t.Errorf("span %s: %s = %v, close line %v", span.Name, k, attrs[k], c[k])
			}
		}
		if n, _ := attrs["bytes_down"].(int64); n == 0 {
			t.Errorf("allowed %s moved no bytes down", span.Name)
		}
		if attrs["bytes"] != attrs["bytes_up"].(int64)+attrs["bytes_down"].(int64) {
			t.Errorf("bytes %v is not up+down", attrs["bytes"])
		}
	}
}

// TestMetricsAfterTraffic scrapes /metrics from the admin handler after
// allowed and denied traffic, with no OTLP endpoint: metrics count, and
// nothing is sent anywhere.
func TestMetricsAfterTraffic(t *testing.T) {
	otelEnv(t, "")
	rcv := telemetrytest.NewReceiver(t) // only the other signals' variables point here
	t.Setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", rcv.URL+"/v1/metrics")
	t.Setenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", rcv.URL+"/v1/logs")
	tel := newTelemetry(t)
	deadPort := closedPort(t)
	h := newHarness(t, harnessOpts{
		server:     []Option{WithTelemetry(tel)},
		extraRules: fmt.Sprintf("  - {host: example.com, ports: [%d], purpose: nothing listens}\n", deadPort),
	})
	admin := httptest.NewServer(h.srv.AdminHandler())
	defer admin.Close()
	metrics := admin.URL + "/metrics"

	client := h.client("", "")
	if st := get(t, client, fmt.Sprintf("http://example.com:%d/a", h.httpPort)); st != 200 {
		t.Fatalf("allowed GET: %d", st)
	}
	for range 2 {
		if st := h.raw("GET http://denied.example/x HTTP/1.1\r\nHost: denied.example\r\n\r\n").StatusCode; st != 403 {
			t.Fatalf("denied GET: %d", st)
		}
	}
	if st := h.raw("CONNECT denied.example:443 HTTP/1.1\r\nHost: denied.example:443\r\n\r\n").StatusCode; st != 403 {
		t.Fatalf("denied CONNECT: %d", st)
	}
	dead := fmt.Sprintf("example.com:%d", deadPort)
	if st := h.raw("CONNECT " + dead + " HTTP/1.1\r\nHost: " + dead + "\r\n\r\n").StatusCode; st != 502 {
		t.Fatalf("CONNECT to a closed port: %d, want 502", st)
	}

	// The series exists at 0 before the first tunnel (a request has been
	// served, so the listener has started), counts an open tunnel, and
	// goes back to 0 when it closes.
	active := map[string]string{"listener": "explicit"}
	if m := telemetrytest.Find(telemetrytest.Scrape(t, metrics), telemetry.MetricActiveTunnels, active); m == nil || m.Gauge.GetValue() != 0 {
		t.Errorf("active tunnels before the first tunnel: %v, want a series at 0", m)
	}
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	target := fmt.Sprintf("example.com:%d", h.httpPort)
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	fmt.Fprintf(c, "GET /in-tunnel HTTP/1.1\r\nHost: example.com\r\n\r\n")
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET in the tunnel: %v %v", resp, err)
	} else {
		io.Copy(io.Discard, resp.Body)
	}
	if n := telemetrytest.Value(telemetrytest.Scrape(t, metrics), telemetry.MetricActiveTunnels, active); n != 1 {
		t.Errorf("active tunnels %v while one is open, want 1", n)
	}
	c.Close()
	lines := h.lines(9) // 6 decisions + close lines of the GET, the 502 and the tunnel
	fams := telemetrytest.Scrape(t, metrics)
	if n := telemetrytest.Value(fams, telemetry.MetricActiveTunnels, active); n != 0 {
		t.Errorf("active tunnels %v after the tunnel closed, want 0", n)
	}

	decisions := []struct {
		labels map[string]string
		want   float64
	}{
		{map[string]string{"product": "test", "decision": "allow", "reason": "rule"}, 3},
		{map[string]string{"product": "test", "decision": "deny", "reason": "no-rule"}, 3},
	}
	for _, d := range decisions {
		if got := telemetrytest.Value(fams, telemetry.MetricDecisions, d.labels); got != d.want {
			t.Errorf("%s%v = %v, want %v", telemetry.MetricDecisions, d.labels, got, d.want)
		}
	}
	if n := len(fams[telemetry.MetricDecisions].GetMetric()); n != len(decisions) {
		t.Errorf("%d decision series, want %d", n, len(decisions))
	}
	var up, down float64
	for _, l := range lines {
		if l["msg"] == "close" {
			up += l["bytes_up"].(float64)
			down += l["bytes_down"].(float64)
		}
	}
	if got := telemetrytest.Value(fams, telemetry.MetricBytes, map[string]string{"direction": "up"}); got != up || up == 0 {
		t.Errorf("bytes up %v, close lines say %v", got, up)
	}
	if got := telemetrytest.Value(fams, telemetry.MetricBytes, map[string]string{"direction": "down"}); got != down || down == 0 {
		t.Errorf("bytes down %v, close lines say %v", got, down)
	}
	// Dials: the forwarded GET's and the tunnel's connected, the closed port's did not.
	if got := telemetrytest.Value(fams, telemetry.MetricDialDuration, map[string]string{"result": "ok"}); got != 2 {
		t.Errorf("dial histogram ok count %v, want 2", got)
	}
	if got := telemetrytest.Value(fams, telemetry.MetricDialDuration, map[string]string{"result": "error"}); got != 1 {
		t.Errorf("dial histogram error count %v, want 1", got)
	}

	flush(t, tel)
	if n := rcv.Requests(); n != 0 {
		t.Errorf("with no OTLP endpoint, %d requests reached the receiver", n)
	}
}

func TestDecidingProduct(t *testing.T) {
	for _, tt := range []struct {
		name string
		ev   Event
		want string
	}{
		{"allow: the deciding product", Event{Product: "b", Products: []string{"a", "b"}}, "b"},
		{"deny: the identity's products", Event{Products: []string{"a", "b"}}, "a+b"},
		{"deny: one product", Event{Products: []string{"a"}}, "a"},
		{"deny: no products", Event{}, ""},
	} {
		if got := decidingProduct(&tt.ev); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

// closedPort returns a loopback port on which nothing listens.
func closedPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return portOf(t, l.Addr())
}
