// Package telemetrytest has what egret's tests use to look at its
// telemetry from the outside: an OTLP/HTTP trace receiver on loopback that
// decodes what arrives, and a /metrics scraper that parses the Prometheus
// text format. Only tests import it.
package telemetrytest

import (
	"compress/gzip"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Receiver is an OTLP/HTTP trace and log endpoint (POST /v1/traces,
// protobuf or JSON; POST /v1/logs, protobuf) on 127.0.0.1. It keeps every
// span and log record it decodes. SetLogsDown makes it answer log exports
// 503, as a collector that cannot take them does.
type Receiver struct {
	URL string // base URL, for OTEL_EXPORTER_OTLP_ENDPOINT

	srv          *httptest.Server
	mu           sync.Mutex
	requests     int
	contentTypes []string // of the exports decoded
	spans        []*tracepb.Span
	logs         []*logspb.LogRecord
	logsDown     bool
	arrived      chan struct{} // signalled after each request
}

// NewReceiver starts a receiver, closed when the test ends.
func NewReceiver(t testing.TB) *Receiver {
	r := &Receiver{arrived: make(chan struct{}, 1)}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	r.URL = r.srv.URL
	return r
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.requests++
	r.mu.Unlock()
	defer r.signal()
	if req.Method == http.MethodPost && req.URL.Path == "/v1/logs" {
		r.serveLogs(w, req)
		return
	}
	if req.Method != http.MethodPost || req.URL.Path != "/v1/traces" {
		http.Error(w, "not an OTLP trace export", http.StatusNotFound)
		return
	}
	b, err := readBody(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var export coltracepb.ExportTraceServiceRequest
	unmarshal, marshal, contentType := proto.Unmarshal, proto.Marshal, "application/x-protobuf"
	if req.Header.Get("Content-Type") == "application/json" {
		unmarshal, marshal, contentType = unmarshalOTLPJSON, protojson.Marshal, "application/json"
	}
	if err := unmarshal(b, &export); err != nil {
		http.Error(w, "not an ExportTraceServiceRequest: "+err.Error(), http.StatusBadRequest)
		return
	}
	r.Add(&export)
	r.mu.Lock()
	r.contentTypes = append(r.contentTypes, contentType)
	r.mu.Unlock()
	out, _ := marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", contentType)
	w.Write(out)
}

func (r *Receiver) serveLogs(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	down := r.logsDown
	r.mu.Unlock()
	if down {
		http.Error(w, "collector unavailable", http.StatusServiceUnavailable)
		return
	}
	b, err := readBody(req)
	var export collogspb.ExportLogsServiceRequest
	if err == nil {
		err = proto.Unmarshal(b, &export)
	}
	if err != nil {
		http.Error(w, "not an ExportLogsServiceRequest: "+fmt.Sprint(err), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	for _, rl := range export.ResourceLogs {
		for _, sl := range rl.ScopeLogs {
			r.logs = append(r.logs, sl.LogRecords...)
		}
	}
	r.mu.Unlock()
	out, _ := proto.Marshal(&collogspb.ExportLogsServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

// readBody reads an export's body, gunzipped if it came compressed.
func readBody(req *http.Request) ([]byte, error) {
	var body io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			return nil, err
		}
		body = zr
	}
	return io.ReadAll(body)
}

// SetLogsDown makes log exports fail with 503 (down) or succeed again.
func (r *Receiver) SetLogsDown(down bool) {
	r.mu.Lock()
	r.logsDown = down
	r.mu.Unlock()
}

// Logs returns the log records received so far.
func (r *Receiver) Logs() []*logspb.LogRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*logspb.LogRecord(nil), r.logs...)
}

// Add keeps the spans of an export request (for receivers of other
// transports that share this bookkeeping).
func (r *Receiver) Add(export *coltracepb.ExportTraceServiceRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range export.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			r.spans = append(r.spans, ss.Spans...)
		}
	}
}

// unmarshalOTLPJSON decodes OTLP/JSON, which departs from protojson in
// one way: trace and span IDs are hex, not base64.
func unmarshalOTLPJSON(b []byte, m proto.Message) error {
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		return err
	}
	if err := hexIDsToBase64(doc); err != nil {
		return err
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	return protojson.Unmarshal(b, m)
}

func hexIDsToBase64(v any) error {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if s, ok := e.(string); ok && (k == "traceId" || k == "spanId" || k == "parentSpanId") {
				raw, err := hex.DecodeString(s)
				if err != nil {
					return fmt.Errorf("%s %q is not hex: %w", k, s, err)
				}
				x[k] = base64.StdEncoding.EncodeToString(raw)
				continue
			}
			if err := hexIDsToBase64(e); err != nil {
				return err
			}
		}
	case []any:
		for _, e := range x {
			if err := hexIDsToBase64(e); err != nil {
				return err
			}
		}
	}
	return nil
}

func (r *Receiver) signal() {
	select {
	case r.arrived <- struct{}{}:
	default:
	}
}

// Requests returns how many HTTP requests of any kind arrived.
func (r *Receiver) Requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests
}

// ContentTypes returns the content type of each export decoded so far.
func (r *Receiver) ContentTypes() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.contentTypes...)
}

// Spans returns the spans received so far.
func (r *Receiver) Spans() []*tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*tracepb.Span(nil), r.spans...)
}

// WaitSpans waits up to timeout for at least n spans and returns them;
// the test fails if fewer arrive.
func (r *Receiver) WaitSpans(t testing.TB, n int, timeout time.Duration) []*tracepb.Span {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		if s := r.Spans(); len(s) >= n {
			return s
		}
		select {
		case <-r.arrived:
		case <-deadline.C:
			t.Fatalf("OTLP receiver: %d spans after %s, want %d", len(r.Spans()), timeout, n)
		}
	}
}

// TraceID returns a span's trace ID as 32 lowercase hex digits.
func TraceID(s *tracepb.Span) string { return hex.EncodeToString(s.TraceId) }

// Attrs returns a span's attributes as Go values (string, int64, bool,
// float64, []string).
func Attrs(s *tracepb.Span) map[string]any {
	out := map[string]any{}
	for _, kv := range s.Attributes {
		out[kv.Key] = value(kv.Value)
	}
	return out
}

func value(v *commonpb.AnyValue) any {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return x.IntValue
	case *commonpb.AnyValue_BoolValue:
		return x.BoolValue
	case *commonpb.AnyValue_DoubleValue:
		return x.DoubleValue
	case *commonpb.AnyValue_ArrayValue:
		var out []string
		for _, e := range x.ArrayValue.Values {
			out = append(out, fmt.Sprint(value(e)))
		}
		return out
	}
	return nil
}

// Scrape fetches url (a /metrics endpoint) and parses the Prometheus text
// format; the test fails if it cannot.
func Scrape(t testing.TB, url string) map[string]*dto.MetricFamily {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("scrape %s: not Prometheus text: %v", url, err)
	}
	return fams
}

// Find returns the series of family name whose labels are exactly
// labels, or nil.
func Find(fams map[string]*dto.MetricFamily, name string, labels map[string]string) *dto.Metric {
	f := fams[name]
	if f == nil {
		return nil
	}
	for _, m := range f.Metric {
		if len(m.Label) != len(labels) {
			continue
		}
		match := true
		for _, lp := range m.Label {
			if v, ok := labels[lp.GetName()]; !ok || v != lp.GetValue() {
				match = false
				break
			}
		}
		if match {
			return m
		}
	}
	return nil
}

// Value returns the value of a counter or gauge series (0 when absent)
// or, for a histogram, its sample count.
func Value(fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	m := Find(fams, name, labels)
	switch {
	case m == nil:
		return 0
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}
