package proxy

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/egret-proxy/egret/telemetry"
)

// Benchmarks of the per-connection hot paths besides Decide (which
// allowlists/bench_test.go measures): reading a ClientHello for its SNI,
// and encoding decision-log lines. Results: docs/BENCHMARKS.md.

// helloBytes is a ClientHello as crypto/tls writes it for name
// (helloRecorder: bypass_test.go).
func helloBytes(tb testing.TB, name string) []byte {
	tb.Helper()
	rec := &helloRecorder{}
	// Without a name, crypto/tls needs InsecureSkipVerify to start at all;
	// nothing is verified here, the handshake never gets that far.
	tls.Client(rec, &tls.Config{ServerName: name, InsecureSkipVerify: name == ""}).Handshake()
	if rec.Len() == 0 {
		tb.Fatal("no ClientHello written")
	}
	return rec.Bytes()
}

// replayConn hands out the same bytes on every Reset, as a connection
// whose first read delivers a whole ClientHello.
type replayConn struct {
	net.Conn
	data []byte
	off  int
}

func (c *replayConn) Read(p []byte) (int, error) {
	if c.off == len(c.data) {
		return 0, io.EOF
	}
	n := copy(p, c.data[c.off:])
	c.off += n
	return n, nil
}

func BenchmarkReadClientHello(b *testing.B) {
	for _, bc := range []struct {
		name string
		sni  string
	}{
		{"sni", "api.services.cloud.netapp.com"},
		{"no-sni", ""},
	} {
		b.Run(bc.name, func(b *testing.B) {
			raw := helloBytes(b, bc.sni)
			conn := &replayConn{data: raw[1:]} // the first byte is read before, to tell TLS from HTTP
			first := raw[:1]
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				conn.off = 0
				h, err := readClientHello(conn, first)
				if err != nil || h.serverName != bc.sni || len(h.raw) != len(raw) {
					b.Fatalf("readClientHello: %q, %d bytes, %v", h.serverName, len(h.raw), err)
				}
			}
		})
	}
}

func benchEvent() *Event {
	return &Event{
		TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", Decision: "allow", Mode: ModeEnforce, Listener: ListenerExplicit,
		Client: "10.0.1.17:53122", Identity: "connector", Products: []string{"netapp-connector-aws"},
		Method: "CONNECT", Host: "api.services.cloud.netapp.com", Port: 443,
		Rule: "api.services.cloud.netapp.com", Source: "000_d49fc179dcbbed47.txt", Reason: "rule",
		Product: "netapp-connector-aws", IP: "203.0.113.10", start: time.Now(),
	}
}

// BenchmarkDecisionLog encodes and writes (to io.Discard) the lines of one
// allowed tunnel: the decision line, and the close line with byte counts.
func BenchmarkDecisionLog(b *testing.B) {
	l := NewDecisionLog(io.Discard, nil)
	ev := benchEvent()
	b.Run("decision", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := l.Decision(ev); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("close", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := l.Closed(ev, 123456, 7890123); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("deny", func(b *testing.B) {
		deny := benchEvent()
		deny.Decision, deny.Reason, deny.Rule, deny.Source, deny.Product, deny.IP = "deny", "no-rule", "", "", "", ""
		deny.Host, deny.Status = "example.com", 403
		b.ReportAllocs()
		for b.Loop() {
			if err := l.Decision(deny); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkSpanTraceID is what every event costs for its trace_id when
// spans are not exported: a span started, its trace ID formatted, ended.
func BenchmarkSpanTraceID(b *testing.B) {
	tel := telemetry.Nop()
	b.ReportAllocs()
	for b.Loop() {
		span := tel.StartSpan("CONNECT")
		if len(span.SpanContext().TraceID().String()) != 32 {
			b.Fatal("trace id not 32 hex digits")
		}
		span.End()
	}
}
