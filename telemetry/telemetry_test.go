package telemetry

import (
	"context"
	"errors"
	"net"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/egret-proxy/egret/telemetry/telemetrytest"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
)

var traceIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

// clearOTLPEnv unsets every variable that could point the exporters
// somewhere, so that a test sets exactly what it means.
func clearOTLPEnv(t *testing.T) {
	for _, k := range []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
		"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
		"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
		"OTEL_TRACES_SAMPLER", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
	} {
		t.Setenv(k, "")
	}
}

func newTelemetry(t *testing.T) *Telemetry {
	t.Helper()
	tel, err := New(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	return tel
}

func shutdown(t *testing.T, tel *Telemetry) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestNoEndpointExportsNothing(t *testing.T) {
	clearOTLPEnv(t)
	// The variables of other signals point at a receiver; only the trace
	// endpoint variables may turn span export on.
	rcv := telemetrytest.NewReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", rcv.URL+"/v1/metrics")
	t.Setenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", rcv.URL+"/v1/logs")
	// The exporters' own default is localhost:4318; listen there when we
	// can, to see that nothing connects.
	var defaultHits atomic.Int64
	if l, err := net.Listen("tcp", "127.0.0.1:4318"); err == nil {
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				defaultHits.Add(1)
				c.Close()
			}
		}()
	}

	tel := newTelemetry(t)
	if p := tel.Exporting(); p != "" {
		t.Fatalf("Exporting() = %q without an endpoint", p)
	}
	seen := map[string]bool{}
	for range 10 {
		span := tel.StartSpan("CONNECT")
		id := span.SpanContext().TraceID().String()
		if !traceIDPattern.MatchString(id) || id == strings.Repeat("0", 32) {
			t.Errorf("trace ID %q is not 32 lowercase hex digits", id)
		}
		if seen[id] {
			t.Errorf("trace ID %s given twice", id)
		}
		seen[id] = true
		if span.IsRecording() {
			t.Error("a span records although nothing exports it")
		}
		span.End()
	}
	shutdown(t, tel) // would flush, were there anything to flush
	if n := rcv.Requests(); n != 0 {
		t.Errorf("the receiver got %d requests; nothing should be exported", n)
	}
	if n := defaultHits.Load(); n != 0 {
		t.Errorf("%d connections to localhost:4318, the exporters' default", n)
	}
}

func TestExportOverHTTP(t *testing.T) {
	clearOTLPEnv(t)
	rcv := telemetrytest.NewReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rcv.URL)
	tel := newTelemetry(t)
	if p := tel.Exporting(); p != "http/protobuf" {
		t.Fatalf("Exporting() = %q, want http/protobuf", p)
	}
	span := tel.StartSpan("CONNECT")
	want := span.SpanContext().TraceID().String()
	span.End()
	shutdown(t, tel)
	spans := rcv.WaitSpans(t, 1, 5*time.Second)
	if len(spans) != 1 || telemetrytest.TraceID(spans[0]) != want || spans[0].Name != "CONNECT" {
		t.Fatalf("received %v, want one CONNECT span of trace %s", spans, want)
	}
	if ct := rcv.ContentTypes(); len(ct) != 1 || ct[0] != "application/x-protobuf" {
		t.Errorf("content types %v, want one protobuf export", ct)
	}
}

func TestExportOverHTTPJSON(t *testing.T) {
	clearOTLPEnv(t)
	rcv := telemetrytest.NewReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rcv.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
	tel := newTelemetry(t)
	span := tel.StartSpan("GET")
	want := span.SpanContext().TraceID().String()
	span.End()
	shutdown(t, tel)
	spans := rcv.WaitSpans(t, 1, 5*time.Second)
	if telemetrytest.TraceID(spans[0]) != want {
		t.Errorf("trace ID %s, want %s", telemetrytest.TraceID(spans[0]), want)
	}
	if ct := rcv.ContentTypes(); len(ct) != 1 || ct[0] != "application/json" {
		t.Errorf("content types %v, want one application/json export", ct)
	}
}

func TestTracesEndpointAloneTurnsExportOn(t *testing.T) {
	clearOTLPEnv(t)
	rcv := telemetrytest.NewReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", rcv.URL+"/v1/traces")
	tel := newTelemetry(t)
	tel.StartSpan("GET").End()
	shutdown(t, tel)
	rcv.WaitSpans(t, 1, 5*time.Second)
}

// traceService is an OTLP/gRPC trace receiver.
type traceService struct {
	coltracepb.UnimplementedTraceServiceServer
	rcv *telemetrytest.Receiver
}

func (s *traceService) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	s.rcv.Add(req)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func TestExportOverGRPC(t *testing.T) {
	clearOTLPEnv(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	svc := &traceService{rcv: telemetrytest.NewReceiver(t)} // its HTTP side stays unused
	coltracepb.RegisterTraceServiceServer(gs, svc)
	go gs.Serve(l)
	t.Cleanup(gs.Stop)

	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+l.Addr().String())
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	tel := newTelemetry(t)
	if p := tel.Exporting(); p != "grpc" {
		t.Fatalf("Exporting() = %q, want grpc", p)
	}
	span := tel.StartSpan("CONNECT")
	want := span.SpanContext().TraceID().String()
	span.End()
	shutdown(t, tel)
	spans := svc.rcv.Spans()
	if len(spans) != 1 || telemetrytest.TraceID(spans[0]) != want {
		t.Fatalf("gRPC receiver got %v, want one span of trace %s", spans, want)
	}
	if n := svc.rcv.Requests(); n != 0 {
		t.Errorf("%d HTTP requests with protocol grpc", n)
	}
}

func TestBadProtocolIsAnError(t *testing.T) {
	clearOTLPEnv(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift")
	_, err := New(context.Background(), "test")
	if err == nil || !strings.Contains(err.Error(), "OTEL_EXPORTER_OTLP_PROTOCOL") || !strings.Contains(err.Error(), "grpc") {
		t.Fatalf("err = %v, want one naming the variable and the choices", err)
	}
}

func TestNopHasTraceIDs(t *testing.T) {
	tel := Nop()
	span := tel.StartSpan("GET")
	if id := span.SpanContext().TraceID().String(); !traceIDPattern.MatchString(id) || !span.SpanContext().IsValid() {
		t.Fatalf("Nop span trace ID %q", id)
	}
	tel.CountDecision("p", "allow", "rule") // measures nothing, must not panic
	if err := tel.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestCountingAllocatesNothing(t *testing.T) {
	clearOTLPEnv(t)
	tel := newTelemetry(t)
	defer shutdown(t, tel)
	tel.CountDecision("netapp-connector-aws", "allow", "rule")
	tel.TunnelOpened("explicit")
	tel.TunnelClosed("explicit")
	allocs := testing.AllocsPerRun(100, func() {
		tel.CountDecision("netapp-connector-aws", "allow", "rule")
		tel.TunnelOpened("explicit")
		tel.TunnelClosed("explicit")
		tel.AddBytes(10, 20)
		tel.ObserveDial(time.Millisecond, nil)
		tel.ObserveDial(time.Millisecond, errors.New("refused"))
	})
	if allocs > 0 {
		t.Errorf("recording metrics allocates %.1f times per call", allocs)
	}
}
