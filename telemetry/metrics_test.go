package telemetry

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/egret-proxy/egret/telemetry/telemetrytest"
	dto "github.com/prometheus/client_model/go"
)

func TestMetricsExposition(t *testing.T) {
	clearOTLPEnv(t)
	tel := newTelemetry(t)
	defer shutdown(t, tel)
	srv := httptest.NewServer(tel.MetricsHandler())
	defer srv.Close()

	before := telemetrytest.Scrape(t, srv.URL)
	for _, result := range []string{"ok", "error"} {
		m := telemetrytest.Find(before, MetricReloads, map[string]string{"result": result})
		if m == nil || m.Counter.GetValue() != 0 {
			t.Errorf("%s{result=%q} should exist at 0 before any reload: %v", MetricReloads, result, m)
		}
	}

	tel.CountDecision("netapp-connector-aws", "allow", "rule")
	tel.CountDecision("netapp-connector-aws", "allow", "rule")
	tel.CountDecision("a+b", "deny", "no-rule")
	tel.TunnelOpened("explicit")
	tel.TunnelOpened("explicit")
	tel.TunnelClosed("explicit")
	tel.AddBytes(100, 2000)
	tel.ObserveDial(3*time.Millisecond, nil)
	tel.ObserveDial(2*time.Second, errors.New("timeout"))
	tel.CountReload(nil)
	tel.CountReload(errors.New("bad key"))
	tel.CountReload(errors.New("bad key"))

	fams := telemetrytest.Scrape(t, srv.URL)
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{MetricDecisions, map[string]string{"product": "netapp-connector-aws", "decision": "allow", "reason": "rule"}, 2},
		{MetricDecisions, map[string]string{"product": "a+b", "decision": "deny", "reason": "no-rule"}, 1},
		{MetricActiveTunnels, map[string]string{"listener": "explicit"}, 1},
		{MetricBytes, map[string]string{"direction": "up"}, 100},
		{MetricBytes, map[string]string{"direction": "down"}, 2000},
		{MetricDialDuration, map[string]string{"result": "ok"}, 1},
		{MetricDialDuration, map[string]string{"result": "error"}, 1},
		{MetricReloads, map[string]string{"result": "ok"}, 1},
		{MetricReloads, map[string]string{"result": "error"}, 2},
	}
	for _, c := range checks {
		if telemetrytest.Find(fams, c.name, c.labels) == nil {
			t.Errorf("no series %s%v; families: %v", c.name, c.labels, familyNames(fams))
			continue
		}
		if got := telemetrytest.Value(fams, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	wantTypes := map[string]dto.MetricType{
		MetricDecisions: dto.MetricType_COUNTER, MetricActiveTunnels: dto.MetricType_GAUGE,
		MetricBytes: dto.MetricType_COUNTER, MetricDialDuration: dto.MetricType_HISTOGRAM,
		MetricReloads: dto.MetricType_COUNTER,
	}
	for name, typ := range wantTypes {
		if f := fams[name]; f == nil || f.GetType() != typ {
			t.Errorf("%s: type %v, want %v", name, f.GetType(), typ)
		}
	}
	h := telemetrytest.Find(fams, MetricDialDuration, map[string]string{"result": "ok"}).Histogram
	if got := h.GetSampleSum(); got < 0.003 || got > 0.0031 {
		t.Errorf("dial histogram sum %v s, want 0.003", got)
	}
	if len(h.Bucket) != len(dialBuckets)+1 { // and +Inf
		t.Errorf("dial histogram has %d buckets, want %d", len(h.Bucket), len(dialBuckets)+1)
	}
	for name, f := range fams {
		if name == "target_info" || strings.HasPrefix(name, "otel_") {
			t.Errorf("unwanted family %s", name)
		}
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if strings.HasPrefix(l.GetName(), "otel_") {
					t.Errorf("%s has label %s", name, l.GetName())
				}
			}
		}
	}
	if fams["go_goroutines"] == nil || fams["process_open_fds"] == nil {
		t.Errorf("Go runtime and process metrics missing: %v", familyNames(fams))
	}
}

func familyNames(fams map[string]*dto.MetricFamily) []string {
	var out []string
	for n := range fams {
		out = append(out, n)
	}
	return out
}
