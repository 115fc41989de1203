// Package telemetry builds egret's OpenTelemetry tracer and meter
// providers from the environment, holds the instruments egret records,
// serves the metrics as Prometheus text, and flushes on shutdown.
//
// Traces are exported over OTLP only when OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set: the OTLP exporters would
// otherwise send to localhost:4318 on their own. Every span has a trace
// ID either way, since the decision log carries it on every line.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// scopeName names egret's tracer and meter.
const scopeName = "github.com/egret-proxy/egret"

// Telemetry is egret's tracer, instruments and /metrics handler. Its
// methods are safe for concurrent use.
type Telemetry struct {
	tracer    trace.Tracer
	shutdown  []func(context.Context) error
	metrics   http.Handler
	exporting string // the OTLP protocol spans are exported with; "" when they are not
	instruments
}

// New builds telemetry from the environment. version is reported as the
// resource's service.version.
//
// Spans go to an OTLP exporter when OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set: OTLP/HTTP with protobuf by
// default, gRPC when OTEL_EXPORTER_OTLP_PROTOCOL (or _TRACES_PROTOCOL) is
// "grpc". The exporters read the other OTEL_EXPORTER_OTLP_* variables
// (headers, TLS, timeout, compression) themselves, the batch processor
// reads OTEL_BSP_*, the sampler OTEL_TRACES_SAMPLER (default: every span),
// the resource OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
//
// Without an endpoint nothing is exported and spans are never sampled:
// the SDK still gives each one a fresh trace ID, and a span that is not
// sampled records nothing, so the data path pays only for the IDs.
func New(ctx context.Context, version string) (*Telemetry, error) {
	res, err := newResource(ctx, version)
	if err != nil {
		return nil, err
	}
	protocol, err := exportProtocol("TRACES")
	if err != nil {
		return nil, err
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if protocol == "" {
		opts = append(opts, sdktrace.WithSampler(sdktrace.NeverSample()))
	} else {
		exp, err := newSpanExporter(ctx, protocol)
		if err != nil {
			return nil, err
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	m, err := newMetrics(res)
	if err != nil {
		tp.Shutdown(ctx)
		return nil, err
	}
	t := &Telemetry{
		tracer:      tp.Tracer(scopeName, trace.WithInstrumentationVersion(version)),
		shutdown:    []func(context.Context) error{tp.Shutdown, m.provider.Shutdown},
		metrics:     m.handler,
		exporting:   protocol,
		instruments: m.instruments,
	}
	return t, nil
}

// newResource is what egret's spans, metrics and log records say about
// the process: service.name egret and its version, unless
// OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES say otherwise.
func newResource(ctx context.Context, version string) (*resource.Resource, error) {
	res, err := resource.New(ctx,
		resource.WithAttributes(
			attribute.String("service.name", "egret"),
			attribute.String("service.version", version)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES override the defaults
	)
	if err != nil {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	return res, nil
}

// Nop returns telemetry that exports nothing and measures nothing, whose
// spans still carry fresh trace IDs; its /metrics handler answers 404.
func Nop() *Telemetry {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
	ins, _ := newInstruments(metricnoop.NewMeterProvider().Meter(scopeName))
	return &Telemetry{
		tracer:      tp.Tracer(scopeName),
		shutdown:    []func(context.Context) error{tp.Shutdown},
		metrics:     http.NotFoundHandler(),
		instruments: ins,
	}
}

// Exporting returns the OTLP protocol spans are exported with
// ("http/protobuf", "http/json" or "grpc"), or "" when they are not.
func (t *Telemetry) Exporting() string { return t.exporting }

// StartSpan starts the span of one request or tunnel. The caller ends it.
func (t *Telemetry) StartSpan(name string) trace.Span {
	_, span := t.tracer.Start(context.Background(), name, trace.WithSpanKind(trace.SpanKindServer))
	return span
}

// MetricsHandler serves the metrics as Prometheus text.
func (t *Telemetry) MetricsHandler() http.Handler { return t.metrics }

// Shutdown exports the spans still queued and stops the exporters; it
// gives up when ctx is done.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	for _, f := range t.shutdown {
		errs = append(errs, f(ctx))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("telemetry: shutdown: %w", err)
	}
	return nil
}

// exportProtocol returns the OTLP protocol to export signal (TRACES or
// LOGS) with, or "" when no endpoint is configured for it: the
// signal's own OTEL_EXPORTER_OTLP_<SIGNAL>_* variables win over the
// general ones, as the OTLP exporters read them. The error names the
// variable that holds an unknown protocol.
func exportProtocol(signal string) (protocol string, err error) {
	if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_"+signal+"_ENDPOINT") == "" {
		return "", nil
	}
	name := "OTEL_EXPORTER_OTLP_" + signal + "_PROTOCOL"
	if protocol = os.Getenv(name); protocol == "" {
		name, protocol = "OTEL_EXPORTER_OTLP_PROTOCOL", os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	switch strings.TrimSpace(protocol) {
	case "", "http/protobuf":
		return "http/protobuf", nil
	case "http/json":
		return "http/json", nil
	case "grpc":
		return "grpc", nil
	}
	return "", fmt.Errorf("telemetry: %s=%q: use http/protobuf (the default), http/json or grpc", name, protocol)
}

// newSpanExporter builds the OTLP exporter for protocol; it takes its
// endpoint and the rest of its settings from the environment.
func newSpanExporter(ctx context.Context, protocol string) (sdktrace.SpanExporter, error) {
	var exp sdktrace.SpanExporter
	var err error
	if protocol == "grpc" {
		exp, err = otlptracegrpc.New(ctx)
	} else {
		exp, err = otlptracehttp.New(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry: OTLP %s exporter: %w", protocol, err)
	}
	return exp, nil
}
