package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"
)

// slogLine is the decision line as egret wrote it with log/slog's JSON
// handler before the encoder became zerolog: the reference the new lines
// must match, field for field and in the same order.
func slogLine(t *testing.T, msg string, e *Event, now time.Time, extra ...slog.Attr) []byte {
	t.Helper()
	var buf bytes.Buffer
	h := slog.NewJSONHandler(&buf, &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.LevelKey {
			return slog.Attr{}
		}
		return a
	}})
	products := e.Products
	if products == nil {
		products = []string{}
	}
	a := []slog.Attr{
		slog.String("decision", e.Decision), slog.String("mode", e.Mode.String()), slog.String("listener", e.Listener),
		slog.String("client", e.Client), slog.String("identity", e.Identity), slog.Any("products", products),
		slog.String("method", e.Method), slog.String("host", e.Host),
	}
	if e.Query == nil {
		a = append(a, slog.Int("port", int(e.Port)))
	} else {
		q := e.Query
		a = append(a, slog.String("qtype", q.QType), slog.String("proto", q.Proto), slog.String("rcode", q.Rcode), slog.Int("answers", q.Answers))
		if q.Removed > 0 {
			a = append(a, slog.Int("removed", q.Removed))
		}
		if q.ECHRemoved > 0 {
			a = append(a, slog.Int("ech_removed", q.ECHRemoved))
		}
		if q.Truncated {
			a = append(a, slog.Bool("truncated", true))
		}
	}
	for _, kv := range []struct{ k, v string }{
		{"path", e.Path}, {"rule", e.Rule}, {"source", e.Source}, {"reason", e.Reason},
		{"product", e.Product}, {"paths", e.Paths}, {"sni", e.SNI}, {"ip", e.IP}, {"dns", e.DNS}, {"ech", e.ECH},
		{"error", e.Error},
	} {
		if kv.v != "" {
			a = append(a, slog.String(kv.k, kv.v))
		}
	}
	if e.Status != 0 {
		a = append(a, slog.Int("status", e.Status))
	}
	a = append(a, slog.String("trace_id", e.TraceID))
	rec := slog.NewRecord(now, slog.LevelInfo, msg, 0)
	rec.AddAttrs(append(a, extra...)...)
	if err := h.Handle(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestDecisionLineMatchesSlog(t *testing.T) {
	awkward := []string{
		"", "plain", `quote " and backslash \`, "tab\tnewline\nreturn\r", "nul\x00bell\x07esc\x1b del\x7f",
		"<html>&amp;", "é ü ☃ 😀", "bad utf-8 \xff\xfe end", "cut \xe2\x82", "line sep \u2028 para sep \u2029",
		"percent %41 and /path?q=1", "\u00a0nbsp",
	}
	var buf bytes.Buffer
	l := NewDecisionLog(&buf, nil)
	for _, s := range awkward {
		ev := benchEvent()
		ev.Client, ev.Identity, ev.Host, ev.Path, ev.SNI, ev.Error, ev.Products = s, s, s, s, s, s, []string{s, "p"}
		for _, tc := range []struct {
			msg   string
			write func() error
			extra []slog.Attr
		}{
			{"decision", func() error { return l.Decision(ev) }, nil},
			{"close", func() error { return l.Closed(ev, 12, 345) }, []slog.Attr{slog.Int64("bytes_up", 12), slog.Int64("bytes_down", 345), slog.Int64("duration_ms", time.Since(ev.start).Milliseconds())}},
		} {
			buf.Reset()
			if err := tc.write(); err != nil {
				t.Fatal(err)
			}
			got := bytes.Clone(buf.Bytes())
			var line struct{ Time time.Time }
			if err := json.Unmarshal(got, &line); err != nil {
				t.Fatalf("%q: not JSON: %v\n%s", s, err, got)
			}
			want := slogLine(t, tc.msg, ev, line.Time, tc.extra...)
			if !sameJSON(t, got, want) {
				t.Errorf("%q %s:\n got %s\nwant %s", s, tc.msg, got, want)
			}
		}
	}
	// A DNS door line, and one with no products.
	ev := benchEvent()
	ev.Products, ev.Query = nil, &DNSQuery{QType: "A", Proto: "udp", Rcode: "NOERROR", Answers: 2, Removed: 1, ECHRemoved: 1, Truncated: true}
	buf.Reset()
	if err := l.Decision(ev); err != nil {
		t.Fatal(err)
	}
	var line struct{ Time time.Time }
	json.Unmarshal(buf.Bytes(), &line)
	if want := slogLine(t, "decision", ev, line.Time); !sameJSON(t, buf.Bytes(), want) {
		t.Errorf("DNS line:\n got %s\nwant %s", buf.Bytes(), want)
	}
}

// sameJSON reports whether a and b are one line each with the same keys in
// the same order and the same values. Strings may be escaped differently
// (slog writes \u2028 where zerolog writes the character), but must
// decode to the same text.
func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	if bytes.Count(a, []byte("\n")) != 1 || !bytes.HasSuffix(a, []byte("\n")) {
		t.Errorf("not one line: %q", a)
	}
	tokens := func(p []byte) []any {
		d := json.NewDecoder(bytes.NewReader(p))
		d.UseNumber()
		var out []any
		for {
			tok, err := d.Token()
			if err != nil {
				return out
			}
			out = append(out, tok)
		}
	}
	ta, tb := tokens(a), tokens(b)
	if len(ta) != len(tb) || len(ta) == 0 {
		return false
	}
	for i := range ta {
		if ta[i] != tb[i] {
			t.Logf("token %d: %v against %v", i, ta[i], tb[i])
			return false
		}
	}
	return true
}
