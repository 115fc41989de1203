package proxy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
	"gopkg.in/natefinch/lumberjack.v2"
)

// DecisionLog writes one JSON object per line for every decision and every
// closed tunnel (DESIGN §7). Each line goes to the writer in one write
// call, before the proxy opens the tunnel; when a write fails the log
// reports it and the proxy refuses traffic until a write succeeds again
// (fail closed).
type DecisionLog struct {
	mu     sync.Mutex
	h      slog.Handler
	closer io.Closer
	broken atomic.Pointer[error] // the last write error, nil while healthy
}

// OpenDecisionLog opens path for appending ("-" is standard output). A
// file is written through lumberjack, which rotates it to
// NAME-TIMESTAMP.EXT when Rotate is called (SIGUSR1) or when a line would
// take it past maxSize bytes (0: never by size; whole MiB), and removes the
// oldest rotated files beyond keep.
func OpenDecisionLog(path string, maxSize, keep int) (*DecisionLog, error) {
	if path == "-" || path == "" {
		return NewDecisionLog(os.Stdout, nil), nil
	}
	// lumberjack opens the file on the first write: open it once now, so
	// that an unwritable path stops egret at start, not at the first request.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("decision log: %w", err)
	}
	f.Close()
	mb := maxSize >> 20
	if mb <= 0 {
		mb = 1 << 30 // lumberjack has no "never": a PiB stands for it
	}
	lj := &lumberjack.Logger{Filename: path, MaxSize: mb, MaxBackups: keep}
	return NewDecisionLog(lj, lj), nil
}

// Rotate starts a new decision log file, keeping the old one beside it; a
// log on standard output has nothing to rotate. Lines are never split
// between files: a rotation waits for the line being written.
func (l *DecisionLog) Rotate() error {
	r, ok := l.closer.(interface{ Rotate() error })
	if !ok {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return r.Rotate()
}

// NewDecisionLog writes to w; closer (may be nil) is closed by Close.
func NewDecisionLog(w io.Writer, closer io.Closer) *DecisionLog {
	// Drop slog's "level": every line is a decision, none is more urgent.
	opts := &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.LevelKey {
			return slog.Attr{}
		}
		return a
	}}
	return &DecisionLog{h: slog.NewJSONHandler(w, opts), closer: closer}
}

// Err returns the last write error, or nil if the log is writable.
func (l *DecisionLog) Err() error {
	if p := l.broken.Load(); p != nil {
		return *p
	}
	return nil
}

// Close closes the underlying file, if any.
func (l *DecisionLog) Close() error {
	if l.closer != nil {
		return l.closer.Close()
	}
	return nil
}

// write emits one line; slog's JSON handler makes one Write call per record.
func (l *DecisionLog) write(msg string, attrs []slog.Attr) error {
	rec := slog.NewRecord(time.Now(), slog.LevelInfo, msg, 0)
	rec.AddAttrs(attrs...)
	l.mu.Lock()
	err := l.h.Handle(context.Background(), rec)
	l.mu.Unlock()
	if err != nil {
		err = fmt.Errorf("decision log: %w", err)
		if l.broken.Swap(&err) == nil {
			fmt.Fprintf(os.Stderr, "egret: %v; refusing traffic until it can be written\n", err)
		}
		return err
	}
	if l.broken.Swap(nil) != nil {
		fmt.Fprintln(os.Stderr, "egret: decision log writable again; serving")
	}
	return nil
}

// Event is what the log says about one decision. The same Event is logged
// again, with byte counts, when its tunnel or request ends.
type Event struct {
	TraceID  string // the span's: 32 lower-case hex digits (W3C)
	Decision string // allow, deny, would-deny
	Mode     Mode
	Listener string // explicit, transparent
	Client   string // ip:port
	Identity string
	Products []string
	Method   string // CONNECT, GET, …, TLS
	Host     string
	Port     uint16
	Path     string
	Rule     string
	Source   string
	Reason   string
	Product  string
	Paths    string // "unenforced" when a path rule allowed a tunnel
	SNI      string
	IP       string
	DNS      string // match or mismatch: the original address against the DNS door's answers (transparent, with a door)
	ECH      string // outer-sni: a ClientHello offering ECH decided by its outer name
	Error    string // why a dial or forward failed (close lines)
	Status   int    // HTTP status egret answered with, when it answered
	// Query is set on the decision lines of the DNS door, which have no
	// port: what was asked and answered.
	Query *DNSQuery
	start time.Time
	span  trace.Span // ended by record (denies) or finish
}

func (e *Event) attrs() []slog.Attr {
	// Room for every field a line can have (the close line's three
	// included): the slice is made once, not grown twice.
	a := make([]slog.Attr, 0, 28)
	a = append(a,
		slog.String("decision", e.Decision),
		slog.String("mode", e.Mode.String()),
		slog.String("listener", e.Listener),
		slog.String("client", e.Client),
		slog.String("identity", e.Identity),
		slog.Any("products", nonNil(e.Products)),
		slog.String("method", e.Method),
		slog.String("host", e.Host),
	)
	if e.Query == nil {
		a = append(a, slog.Int("port", int(e.Port)))
	} else {
		a = e.Query.attrs(a)
	}
	optional := []struct{ k, v string }{
		{"path", e.Path}, {"rule", e.Rule}, {"source", e.Source}, {"reason", e.Reason},
		{"product", e.Product}, {"paths", e.Paths}, {"sni", e.SNI}, {"ip", e.IP}, {"dns", e.DNS}, {"ech", e.ECH},
		{"error", e.Error},
	}
	for _, kv := range optional {
		if kv.v != "" {
			a = append(a, slog.String(kv.k, kv.v))
		}
	}
	if e.Status != 0 {
		a = append(a, slog.Int("status", e.Status))
	}
	return append(a, slog.String("trace_id", e.TraceID))
}

// Decision logs the decision line.
func (l *DecisionLog) Decision(e *Event) error {
	return l.write("decision", e.attrs())
}

// Closed logs the close line of an allowed tunnel or request.
func (l *DecisionLog) Closed(e *Event, up, down int64) error {
	a := append(e.attrs(),
		slog.Int64("bytes_up", up),
		slog.Int64("bytes_down", down),
		slog.Int64("duration_ms", time.Since(e.start).Milliseconds()))
	return l.write("close", a)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
