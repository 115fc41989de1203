package telemetry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/valyala/fastjson"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
)

// LogSink sends each decision line as one OpenTelemetry log record to
// the OTLP endpoint of the environment (OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_LOGS_ENDPOINT; protocol http/protobuf, or grpc). The
// record's body is the line's JSON object as a map, its event name the
// line's msg (decision or close).
//
// A Write returns once the collector accepted the record, or with the
// error: the proxy writes the decision before it opens the tunnel, so a
// collector that is down refuses traffic (503) rather than losing lines.
// Records are therefore exported one at a time, not batched, and the
// exporter does not retry (a retry would hold the request for up to a
// minute); OTEL_EXPORTER_OTLP_TIMEOUT bounds each export.
type LogSink struct {
	provider *sdklog.LoggerProvider
	logger   log.Logger
	parsers  fastjson.ParserPool
}

// LogsConfigured reports whether the environment names an OTLP endpoint
// for logs.
func LogsConfigured() bool {
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT") != ""
}

// NewLogSink builds the sink; version is the resource's service.version.
func NewLogSink(ctx context.Context, version string) (*LogSink, error) {
	protocol, err := exportProtocol("LOGS")
	switch {
	case err != nil:
		return nil, fmt.Errorf("decision log otlp: %w", err)
	case protocol == "":
		return nil, errors.New("decision log otlp: set OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_LOGS_ENDPOINT) to the collector")
	}
	res, err := newResource(ctx, version)
	if err != nil {
		return nil, err
	}
	var exp sdklog.Exporter
	switch protocol {
	case "http/protobuf":
		exp, err = otlploghttp.New(ctx, otlploghttp.WithRetry(otlploghttp.RetryConfig{Enabled: false}))
	case "grpc":
		exp, err = otlploggrpc.New(ctx, otlploggrpc.WithRetry(otlploggrpc.RetryConfig{Enabled: false}))
	default: // the log exporters have no JSON encoding
		return nil, fmt.Errorf("decision log otlp: protocol %s: logs go over http/protobuf (the default) or grpc", protocol)
	}
	if err != nil {
		return nil, fmt.Errorf("decision log otlp: exporter: %w", err)
	}
	p := sdklog.NewLoggerProvider(sdklog.WithResource(res), sdklog.WithProcessor(&syncExport{exp: exp}))
	return &LogSink{provider: p, logger: p.Logger(scopeName)}, nil
}

// Write sends p, one JSON line, as one record.
func (s *LogSink) Write(p []byte) (int, error) {
	line := bytes.TrimSuffix(p, []byte("\n"))
	parser := s.parsers.Get()
	defer s.parsers.Put(parser)
	v, err := parser.ParseBytes(line)
	if err != nil {
		return 0, fmt.Errorf("decision log otlp: not a JSON line: %w", err)
	}
	now := time.Now()
	var rec log.Record
	rec.SetTimestamp(now)
	rec.SetObservedTimestamp(now)
	rec.SetSeverity(log.SeverityInfo)
	rec.SetSeverityText("INFO")
	rec.SetEventName(string(v.GetStringBytes("msg")))
	rec.SetBody(logValue(v))
	var exportErr error
	s.logger.Emit(context.WithValue(context.Background(), exportErrKey{}, &exportErr), rec)
	if exportErr != nil {
		return 0, fmt.Errorf("decision log otlp: %w", exportErr)
	}
	return len(p), nil
}

// Close shuts the exporter down.
func (s *LogSink) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.provider.Shutdown(ctx)
}

// logValue turns a JSON value into a log value: objects into maps, arrays
// into slices, integers into int64.
func logValue(v *fastjson.Value) attribute.Value {
	switch v.Type() {
	case fastjson.TypeObject:
		o, _ := v.Object()
		kvs := make([]attribute.KeyValue, 0, o.Len())
		o.Visit(func(k []byte, e *fastjson.Value) {
			kvs = append(kvs, attribute.KeyValue{Key: attribute.Key(k), Value: logValue(e)})
		})
		return attribute.MapValue(kvs...)
	case fastjson.TypeArray:
		a, _ := v.Array()
		vs := make([]attribute.Value, len(a))
		for i, e := range a {
			vs[i] = logValue(e)
		}
		return attribute.SliceValue(vs...)
	case fastjson.TypeString:
		return attribute.StringValue(string(v.GetStringBytes()))
	case fastjson.TypeNumber:
		if n, err := v.Int64(); err == nil {
			return attribute.Int64Value(n)
		}
		return attribute.Float64Value(v.GetFloat64())
	case fastjson.TypeTrue:
		return attribute.BoolValue(true)
	case fastjson.TypeFalse:
		return attribute.BoolValue(false)
	}
	return attribute.Value{}
}

// exportErrKey carries, in the context of one Emit, where syncExport puts
// the export's error: the log API's Emit returns none.
type exportErrKey struct{}

// syncExport exports each record as it is emitted and hands the error back
// to the Write that emitted it.
type syncExport struct{ exp sdklog.Exporter }

func (p *syncExport) OnEmit(ctx context.Context, r *sdklog.Record) error {
	err := p.exp.Export(ctx, []sdklog.Record{*r})
	if slot, ok := ctx.Value(exportErrKey{}).(*error); ok {
		*slot = err
		return nil // reported to the writer, not to otel's global handler
	}
	return err
}

func (p *syncExport) Enabled(context.Context, sdklog.EnabledParameters) bool { return true }
func (p *syncExport) Shutdown(ctx context.Context) error                     { return p.exp.Shutdown(ctx) }
func (p *syncExport) ForceFlush(ctx context.Context) error                   { return p.exp.ForceFlush(ctx) }
