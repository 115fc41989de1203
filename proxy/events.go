package proxy

import (
	"net"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
)

// The life of every decision goes through these three calls, whichever
// listener took the connection: begin when a request or tunnel is seen,
// record when it is decided (before any byte goes upstream), finish when
// an allowed tunnel or request ends. Logging, tracing and the metrics
// hang off them; a listener calls nothing else to be observed, except
// splice around a tunnel.

// begin starts the event of one request or tunnel from client c, and its
// span: the span's trace ID is the one every log line of the event shows.
func (s *Server) begin(listener string, c net.Conn, method string) *Event {
	span := s.tel.StartSpan(method)
	return &Event{
		TraceID: span.SpanContext().TraceID().String(), Listener: listener, Client: c.RemoteAddr().String(),
		Method: method, start: time.Now(), span: span,
	}
}

// record writes the decision line and counts the decision. An error means
// the log cannot be written and the caller must refuse the traffic (fail
// closed); the event ends there. A deny ends there too: it has no close
// line, so record ends its span.
func (s *Server) record(ev *Event) error {
	if ev.span.IsRecording() { // attributes cost allocations; a span not sampled needs none
		ev.span.SetAttributes(decisionAttributes(ev)...)
	}
	if err := s.log.Decision(ev); err != nil {
		ev.span.SetStatus(codes.Error, err.Error())
		ev.span.End()
		return err
	}
	s.tel.CountDecision(decidingProduct(ev), ev.Decision, ev.Reason)
	if ev.Decision == "deny" {
		ev.span.End()
	}
	return nil
}

// finish counts the bytes of an allowed tunnel or request, ends its span
// and writes its close line, in that order: whoever sees the close line
// finds the metrics and the span complete.
func (s *Server) finish(ev *Event, up, down int64) {
	s.tel.AddBytes(up, down)
	if ev.span.IsRecording() {
		ev.span.SetAttributes(closeAttributes(ev, up, down)...)
		if ev.Error != "" {
			ev.span.SetStatus(codes.Error, ev.Error)
		}
	}
	ev.span.End()
	s.log.Closed(ev, up, down)
}

// splice runs an allowed tunnel (see tunnel) and counts it among the
// active tunnels of its listener while it is open.
func (s *Server) splice(ev *Event, client, upstream net.Conn, idle time.Duration) (up, down int64) {
	s.tel.TunnelOpened(ev.Listener)
	defer s.tel.TunnelClosed(ev.Listener)
	return tunnel(client, upstream, idle)
}

// decidingProduct is the product label of egret_decisions_total: the
// product whose rule allowed, or else the identity's products joined with
// "+" (DESIGN §8).
func decidingProduct(ev *Event) string {
	if ev.Product != "" {
		return ev.Product
	}
	if len(ev.Products) == 1 {
		return ev.Products[0]
	}
	return strings.Join(ev.Products, "+")
}

// decisionAttributes are the span attributes of a decision, named as the
// decision log's fields.
func decisionAttributes(ev *Event) []attribute.KeyValue {
	a := make([]attribute.KeyValue, 0, 20)
	a = append(a,
		attribute.String("decision", ev.Decision),
		attribute.String("mode", ev.Mode.String()),
		attribute.String("listener", ev.Listener),
		attribute.String("client", ev.Client),
		attribute.String("identity", ev.Identity),
		attribute.StringSlice("products", ev.Products),
		attribute.String("method", ev.Method),
		attribute.String("host", ev.Host),
	)
	if ev.Query == nil {
		a = append(a, attribute.Int("port", int(ev.Port)))
	} else {
		a = ev.Query.spanAttributes(a)
	}
	optional := [...]struct{ k, v string }{
		{"path", ev.Path}, {"rule", ev.Rule}, {"source", ev.Source}, {"reason", ev.Reason},
		{"product", ev.Product}, {"paths", ev.Paths}, {"sni", ev.SNI}, {"ip", ev.IP},
		{"dns", ev.DNS}, {"ech", ev.ECH},
	}
	for _, kv := range optional {
		if kv.v != "" {
			a = append(a, attribute.String(kv.k, kv.v))
		}
	}
	if ev.Status != 0 {
		a = append(a, attribute.Int("status", ev.Status))
	}
	return a
}

// closeAttributes are what an ended tunnel or request adds to its span:
// bytes each way and in all, and what became known after the decision.
func closeAttributes(ev *Event, up, down int64) []attribute.KeyValue {
	a := []attribute.KeyValue{
		attribute.Int64("bytes_up", up),
		attribute.Int64("bytes_down", down),
		attribute.Int64("bytes", up+down),
	}
	if ev.IP != "" {
		a = append(a, attribute.String("ip", ev.IP))
	}
	if ev.Status != 0 {
		a = append(a, attribute.Int("status", ev.Status))
	}
	if ev.Error != "" {
		a = append(a, attribute.String("error", ev.Error))
	}
	return a
}
