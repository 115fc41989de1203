package telemetry

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/otlptranslator"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
)

// The metric names as Prometheus shows them. The exporter is told not to
// add unit or _total suffixes, so these are the names exactly.
const (
	MetricDecisions     = "egret_decisions_total"
	MetricActiveTunnels = "egret_active_tunnels"
	MetricBytes         = "egret_bytes_total"
	MetricDialDuration  = "egret_dial_duration_seconds"
	MetricReloads       = "egret_reloads_total"
)

// dialBuckets are the dial latency histogram's bounds in seconds: from a
// host next door to the dial timeout's default.
var dialBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

type metricsSetup struct {
	provider *sdkmetric.MeterProvider
	handler  http.Handler
	instruments
}

// newMetrics builds a meter provider whose only reader is a Prometheus
// exporter on a private registry (the process-wide default registry is
// left alone), plus Go runtime and process metrics on the same registry.
func newMetrics(res *resource.Resource) (*metricsSetup, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exp, err := otelprom.New(
		otelprom.WithRegisterer(reg),
		otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithoutSuffixes),
		otelprom.WithoutScopeInfo(),  // no otel_scope_* labels on every series
		otelprom.WithoutTargetInfo(), // no target_info series
	)
	if err != nil {
		return nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp), sdkmetric.WithResource(res))
	ins, err := newInstruments(mp.Meter(scopeName))
	if err != nil {
		mp.Shutdown(context.Background())
		return nil, err
	}
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	return &metricsSetup{provider: mp, handler: h, instruments: ins}, nil
}

// instruments are what egret measures. Attribute sets are built once per
// label combination, so recording allocates nothing after the first time.
type instruments struct {
	decisions    metric.Int64Counter
	tunnels      metric.Int64UpDownCounter
	bytes        metric.Int64Counter
	dialDuration metric.Float64Histogram
	reloads      metric.Int64Counter

	// Options are kept as slices: passing a stored slice on (opts...)
	// costs nothing, where a fresh variadic argument escapes to the heap.
	decisionLabels *labelCache[decisionKey]
	listenerLabels *labelCache[string]
	bytesUp        []metric.AddOption
	bytesDown      []metric.AddOption
	reloadOK       []metric.AddOption
	reloadError    []metric.AddOption
	dialOK         []metric.RecordOption
	dialError      []metric.RecordOption
}

type decisionKey struct{ product, decision, reason string }

func newInstruments(m metric.Meter) (instruments, error) {
	var ins instruments
	var errs [5]error
	ins.decisions, errs[0] = m.Int64Counter(MetricDecisions,
		metric.WithDescription("Decisions taken, by deciding product (allows) or the identity's products joined with + (denies), decision and reason."))
	ins.tunnels, errs[1] = m.Int64UpDownCounter(MetricActiveTunnels,
		metric.WithDescription("Tunnels open now, by listener."))
	ins.bytes, errs[2] = m.Int64Counter(MetricBytes, metric.WithUnit("By"),
		metric.WithDescription("Bytes relayed by allowed tunnels and requests, counted when each ends; direction up is client to upstream."))
	ins.dialDuration, errs[3] = m.Float64Histogram(MetricDialDuration, metric.WithUnit("s"),
		metric.WithDescription("Time to connect to an upstream (or the upstream proxy), by result."),
		metric.WithExplicitBucketBoundaries(dialBuckets...))
	ins.reloads, errs[4] = m.Int64Counter(MetricReloads,
		metric.WithDescription("Configuration reloads, by result (error: the previous policy was kept)."))
	for _, err := range errs {
		if err != nil {
			return ins, fmt.Errorf("telemetry: instrument: %w", err)
		}
	}
	ins.decisionLabels = newLabelCache(func(k decisionKey) attribute.Set {
		return attribute.NewSet(attribute.String("product", k.product),
			attribute.String("decision", k.decision), attribute.String("reason", k.reason))
	})
	ins.listenerLabels = newLabelCache(func(l string) attribute.Set {
		return attribute.NewSet(attribute.String("listener", l))
	})
	up, down := labels("direction", "up"), labels("direction", "down")
	ok, failed := labels("result", "ok"), labels("result", "error")
	ins.bytesUp, ins.bytesDown = []metric.AddOption{up}, []metric.AddOption{down}
	ins.reloadOK, ins.reloadError = []metric.AddOption{ok}, []metric.AddOption{failed}
	ins.dialOK, ins.dialError = []metric.RecordOption{ok}, []metric.RecordOption{failed}
	// Both reload series exist from the start, so that a rate or an alert
	// on errors has a zero to start from.
	ins.reloads.Add(context.Background(), 0, ins.reloadOK...)
	ins.reloads.Add(context.Background(), 0, ins.reloadError...)
	return ins, nil
}

// CountDecision counts one decision in egret_decisions_total.
func (t *Telemetry) CountDecision(product, decision, reason string) {
	t.decisions.Add(context.Background(), 1, t.decisionLabels.get(decisionKey{product, decision, reason})...)
}

// ListenerStarted makes the active-tunnel series of listener exist, at 0,
// before its first tunnel.
func (t *Telemetry) ListenerStarted(listener string) {
	t.tunnels.Add(context.Background(), 0, t.listenerLabels.get(listener)...)
}

// TunnelOpened and TunnelClosed move egret_active_tunnels of listener.
func (t *Telemetry) TunnelOpened(listener string) {
	t.tunnels.Add(context.Background(), 1, t.listenerLabels.get(listener)...)
}

// TunnelClosed: see TunnelOpened.
func (t *Telemetry) TunnelClosed(listener string) {
	t.tunnels.Add(context.Background(), -1, t.listenerLabels.get(listener)...)
}

// AddBytes counts the bytes of an ended tunnel or request.
func (t *Telemetry) AddBytes(up, down int64) {
	t.bytes.Add(context.Background(), up, t.bytesUp...)
	t.bytes.Add(context.Background(), down, t.bytesDown...)
}

// ObserveDial records how long a dial took and whether it connected.
func (t *Telemetry) ObserveDial(d time.Duration, err error) {
	result := t.dialOK
	if err != nil {
		result = t.dialError
	}
	t.dialDuration.Record(context.Background(), d.Seconds(), result...)
}

// CountReload counts one configuration reload; err is why it failed.
func (t *Telemetry) CountReload(err error) {
	result := t.reloadOK
	if err != nil {
		result = t.reloadError
	}
	t.reloads.Add(context.Background(), 1, result...)
}

// labels is the measurement option of one label.
func labels(k, v string) metric.MeasurementOption {
	return metric.WithAttributeSet(attribute.NewSet(attribute.String(k, v)))
}

// labelCache keeps the options of each label combination. The
// combinations are few (products, decisions, reasons, listeners), so it
// never evicts.
type labelCache[K comparable] struct {
	mu    sync.RWMutex
	m     map[K][]metric.AddOption
	build func(K) attribute.Set
}

func newLabelCache[K comparable](build func(K) attribute.Set) *labelCache[K] {
	return &labelCache[K]{m: map[K][]metric.AddOption{}, build: build}
}

func (c *labelCache[K]) get(k K) []metric.AddOption {
	c.mu.RLock()
	opt, ok := c.m[k]
	c.mu.RUnlock()
	if ok {
		return opt
	}
	opt = []metric.AddOption{metric.WithAttributeSet(c.build(k))}
	c.mu.Lock()
	c.m[k] = opt
	c.mu.Unlock()
	return opt
}
