package proxy

import (
	"net"
	"time"
)

// The life of every decision goes through these three calls, whichever
// listener took the connection: begin when a request or tunnel is seen,
// record when it is decided (before any byte goes upstream), finish when
// an allowed tunnel or request ends. Logging, and anything else that
// observes decisions, hangs off them.

// begin starts the event of one request or tunnel from client c.
func (s *Server) begin(listener string, c net.Conn, method string) *Event {
	return &Event{
		TraceID: newTraceID(), Listener: listener, Client: c.RemoteAddr().String(),
		Method: method, start: time.Now(),
	}
}

// record writes the decision line. An error means the log cannot be
// written and the caller must refuse the traffic (fail closed).
func (s *Server) record(ev *Event) error {
	return s.log.Decision(ev)
}

// finish writes the close line of an allowed tunnel or request.
func (s *Server) finish(ev *Event, up, down int64) {
	s.log.Closed(ev, up, down)
}
