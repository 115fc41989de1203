package proxy

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"
	"gopkg.in/natefinch/lumberjack.v2"
)

// DecisionLog writes one JSON object per line for every decision and every
// closed tunnel (DESIGN §7). Each line goes to the writer in one write
// call, before the proxy opens the tunnel; when a write fails the log
// reports it and the proxy refuses traffic until a write succeeds again
// (fail closed).
//
// The lines are encoded by zerolog, which appends each field to one
// buffer with no allocation: slog's JSON handler cost about four times as
// much per line (docs/BENCHMARKS.md), and a request writes two lines.
type DecisionLog struct {
	mu     sync.Mutex // one line at a time: out and stamp are the line's
	z      zerolog.Logger
	out    errWriter
	stamp  []byte // the line's time, formatted
	closer io.Closer
	broken atomic.Pointer[error] // the last write error, nil while healthy
}

// errWriter keeps the error of the line's one Write call for the caller:
// zerolog itself only prints such an error.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	_, e.err = e.w.Write(p)
	return len(p), nil
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
	l := &DecisionLog{out: errWriter{w: w}, closer: closer}
	l.z = zerolog.New(&l.out) // no level, no timestamp of its own: every line is a decision
	return l
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

// begin starts a line, and holds the log until end: the time, then msg
// (decision or close), as every line begins.
func (l *DecisionLog) begin(msg string) *zerolog.Event {
	l.mu.Lock()
	l.stamp = time.Now().AppendFormat(l.stamp[:0], time.RFC3339Nano)
	return l.z.Log().Bytes("time", l.stamp).Str("msg", msg)
}

// end writes the line begun, in one Write call, and reports its error.
func (l *DecisionLog) end(line *zerolog.Event) error {
	line.Send()
	err := l.out.err
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

// fields appends the event's fields to line, in DESIGN §7's order; the
// optional ones only when set.
func (e *Event) fields(line *zerolog.Event) *zerolog.Event {
	line.Str("decision", e.Decision).Str("mode", e.Mode.String()).Str("listener", e.Listener).
		Str("client", e.Client).Str("identity", e.Identity).Strs("products", e.Products).
		Str("method", e.Method).Str("host", e.Host)
	if e.Query == nil {
		line.Int("port", int(e.Port))
	} else {
		e.Query.fields(line)
	}
	optional := [...]struct{ k, v string }{
		{"path", e.Path}, {"rule", e.Rule}, {"source", e.Source}, {"reason", e.Reason},
		{"product", e.Product}, {"paths", e.Paths}, {"sni", e.SNI}, {"ip", e.IP}, {"dns", e.DNS}, {"ech", e.ECH},
		{"error", e.Error},
	}
	for _, kv := range optional {
		if kv.v != "" {
			line.Str(kv.k, kv.v)
		}
	}
	if e.Status != 0 {
		line.Int("status", e.Status)
	}
	return line.Str("trace_id", e.TraceID)
}

// Decision logs the decision line.
func (l *DecisionLog) Decision(e *Event) error {
	return l.end(e.fields(l.begin("decision")))
}

// Closed logs the close line of an allowed tunnel or request.
func (l *DecisionLog) Closed(e *Event, up, down int64) error {
	return l.end(e.fields(l.begin("close")).
		Int64("bytes_up", up).
		Int64("bytes_down", down).
		Int64("duration_ms", time.Since(e.start).Milliseconds()))
}
