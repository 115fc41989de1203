package proxy

import (
	"log/slog"
	"net/netip"
	"time"

	"github.com/egret-proxy/egret/allowlists"
	"go.opentelemetry.io/otel/attribute"
)

// What the DNS door (package dns) asks of the proxy: the same identities,
// policy, address guard, decision log, spans and metrics, so that a query
// is decided and observed like a request.

// DNSQuery is what a decision line of the DNS door says besides the
// common fields: the question and what egret answered.
type DNSQuery struct {
	QType string // A, AAAA, HTTPS, SVCB, or the refused type (TXT, ANY, TYPE65280, …)
	Proto string // udp or tcp
	Rcode string // NOERROR, REFUSED, NXDOMAIN, SERVFAIL
	// Answers counts the records of the answer section sent.
	Answers int
	// Removed counts the addresses the address guard took out of the
	// answer (A, AAAA and HTTPS/SVCB address hints).
	Removed int
	// ECHRemoved counts the ech SvcParams taken out of HTTPS/SVCB records.
	ECHRemoved int
	// Truncated is set when a UDP answer did not fit the client's size and
	// went out with TC set.
	Truncated bool
}

func (q *DNSQuery) attrs(a []slog.Attr) []slog.Attr {
	a = append(a, slog.String("qtype", q.QType), slog.String("proto", q.Proto),
		slog.String("rcode", q.Rcode), slog.Int("answers", q.Answers))
	if q.Removed > 0 {
		a = append(a, slog.Int("removed", q.Removed))
	}
	if q.ECHRemoved > 0 {
		a = append(a, slog.Int("ech_removed", q.ECHRemoved))
	}
	if q.Truncated {
		a = append(a, slog.Bool("truncated", true))
	}
	return a
}

func (q *DNSQuery) spanAttributes(a []attribute.KeyValue) []attribute.KeyValue {
	return append(a, attribute.String("qtype", q.QType), attribute.String("proto", q.Proto),
		attribute.String("rcode", q.Rcode), attribute.Int("answers", q.Answers),
		attribute.Int("removed", q.Removed), attribute.Int("ech_removed", q.ECHRemoved))
}

// IdentifyDNS finds the client of a DNS query, which carries no
// credentials: by source address, then listener dns, else the default
// identity (as on the transparent listener).
func (r *Rules) IdentifyDNS(src netip.Addr) *Client {
	if cl := r.byAddress(ListenerDNS, src); cl != nil {
		return cl
	}
	return &r.Default
}

// GuardAnswer reports why addr may not be handed out in an answer for the
// name d (a Dest from allowlists.NameDest) that cl asked, or ReasonRule
// when it may. It is the check a dialled address gets (DESIGN §6): a deny
// entry's range wins (deny-entry); an address in a guarded range is
// refused (private-address: DNS rebinding) unless --allow-range or one of
// the client's cidr rules inside a guarded range lets it through; there is
// no port, so no address is egret's own.
func (r *Rules) GuardAnswer(cl *Client, d allowlists.Dest, addr netip.Addr) allowlists.Reason {
	addr = addr.Unmap()
	if r.Policy.DenyEntry(d.WithAddr(addr)) != nil {
		return allowlists.ReasonDenyEntry
	}
	var opening *allowlists.Rule
	if v := r.Policy.Decide(cl.Identity, allowlists.AddrDest(addr)); v.Allow && v.Rule != nil && v.Rule.Host == "" {
		opening = v.Rule
	}
	return r.Guard.Check(addr, 0, opening)
}

// BeginDNS starts the event of one DNS query from client (ip:port) and
// its span, as the listeners do for a request.
func (s *Server) BeginDNS(client string, cl *Client, q *DNSQuery) *Event {
	span := s.tel.StartSpan("DNS")
	return &Event{
		TraceID: span.SpanContext().TraceID().String(), Listener: ListenerDNS, Client: client,
		Identity: cl.Name, Products: cl.Identity.Products, Mode: cl.Mode,
		Method: "DNS", Query: q, start: time.Now(), span: span,
	}
}

// RecordDNS writes the decision line of a query, counts it in
// egret_decisions_total and ends its span: a query has no close line. An
// error means the log cannot be written and the door must not answer
// (fail closed).
func (s *Server) RecordDNS(ev *Event) error {
	err := s.record(ev)
	if err == nil && ev.Decision != "deny" { // record ended the span of a deny, and of a failure
		ev.span.End()
	}
	return err
}
