package dns

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/egret-proxy/egret/allowlists"
	"github.com/egret-proxy/egret/proxy"
	mdns "github.com/miekg/dns"
)

const (
	// maxUDPSize is the largest UDP answer the door sends, whatever
	// size a client's EDNS0 record claims.
	maxUDPSize = 4096
	// ednsSize is the UDP size egret announces to clients and asks of the
	// upstream (the DNS flag day 2020 value: no IP fragmentation).
	ednsSize = 1232
	// maxLoggedName bounds the host field of a bad-host line.
	maxLoggedName = 300
	// queueWait is how long a query waits for a free slot when
	// MaxInFlight are being served.
	queueWait = 100 * time.Millisecond
)

// answerable reports whether the door answers queries of this type: the
// ones that lead to an address. TXT, NULL, ANY, zone transfers and every
// other type are refused (reason qtype): they carry data, not
// destinations, and are how DNS tunnels move it.
func answerable(qclass, qtype uint16) bool {
	if qclass != mdns.ClassINET {
		return false
	}
	switch qtype {
	case mdns.TypeA, mdns.TypeAAAA, mdns.TypeHTTPS, mdns.TypeSVCB:
		return true
	}
	return false
}

// query is one query being decided and answered.
type query struct {
	s     *Server
	opts  *Options
	rules *proxy.Rules
	cl    *proxy.Client
	req   *mdns.Msg
	ev    *proxy.Event
	dq    *proxy.DNSQuery
	dest  allowlists.Dest // the normalised name, once it is known

	removal allowlists.Reason // why the first address was removed
	removed bool
}

// serve answers one query: decide, resolve, filter, log, remember, reply.
func (s *Server) serve(w mdns.ResponseWriter, req *mdns.Msg, proto string) {
	if len(req.Question) != 1 {
		// A header that promises a question the packet does not hold: the
		// library unpacks it without one. It asks for no name: FORMERR, no
		// line.
		w.WriteMsg(new(mdns.Msg).SetRcodeFormatError(req))
		return
	}
	if !s.acquire() {
		s.busy.Add(1)
		w.WriteMsg(new(mdns.Msg).SetRcode(req, mdns.RcodeServerFailure))
		return
	}
	defer func() { <-s.slots }()
	rules := s.proxy.Rules()
	cl := rules.IdentifyDNS(addrOf(w.RemoteAddr()))
	dq := &proxy.DNSQuery{Proto: proto, QType: typeName(req.Question[0])}
	qr := &query{s: s, opts: s.opts.Load(), rules: rules, cl: cl, req: req, dq: dq,
		ev: s.proxy.BeginDNS(w.RemoteAddr().String(), cl, dq)}
	resp := qr.answer(context.Background())
	s.reply(w, qr, resp)
}

// acquire takes one of the MaxInFlight slots, waiting up to queueWait
// for one: a burst is smoothed, a flood answered SERVFAIL (the goroutines
// waiting are bounded by the query rate times queueWait).
func (s *Server) acquire() bool {
	select {
	case s.slots <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(queueWait)
	defer t.Stop()
	select {
	case s.slots <- struct{}{}:
		return true
	case <-t.C:
		return false
	}
}

// answer decides the query and builds the response. It fills the event
// but writes nothing.
func (qr *query) answer(ctx context.Context) *mdns.Msg {
	resp := new(mdns.Msg).SetReply(qr.req)
	resp.RecursionAvailable = true
	q := qr.req.Question[0]
	qr.ev.Host = loggedName(q.Name)
	d, err := allowlists.NameDest(q.Name)
	if err != nil {
		return qr.deny(resp, allowlists.ReasonBadHost, qr.denyRcode())
	}
	qr.dest, qr.ev.Host = d, d.Host
	if !answerable(q.Qclass, q.Qtype) {
		return qr.deny(resp, allowlists.ReasonQType, mdns.RcodeRefused)
	}
	v := qr.rules.Policy.DecideName(qr.cl.Identity, d)
	fillVerdict(qr.ev, v)
	if !v.Allow {
		if qr.cl.Mode != proxy.ModeReport {
			return qr.deny(resp, v.Reason, qr.denyRcode())
		}
		qr.ev.Decision = "would-deny"
	}
	up, err := qr.resolve(ctx, q.Qtype)
	if err != nil {
		qr.ev.Error = err.Error()
		resp.Rcode = mdns.RcodeServerFailure
		return resp
	}
	resp.Rcode = up.Rcode
	resp.Answer = qr.guard(answerChain(up.Answer, d.Host, q.Qtype))
	resp.Ns = negativeAuthority(up.Ns)
	capTTLs(resp.Answer, qr.opts.MaxTTL)
	capTTLs(resp.Ns, qr.opts.MaxTTL)
	if qr.removed {
		qr.ev.Reason = qr.removal.String()
		if !hasTarget(resp.Answer) {
			qr.ev.Decision = "deny" // nothing left to reach: the guard denied the answer
		}
	}
	return resp
}

// deny fills the event with a deny and the response with rcode.
func (qr *query) deny(resp *mdns.Msg, why allowlists.Reason, rcode int) *mdns.Msg {
	qr.ev.Decision, qr.ev.Reason = "deny", why.String()
	resp.Rcode = rcode
	return resp
}

func (qr *query) denyRcode() int {
	if qr.opts.NXDomain {
		return mdns.RcodeNameError
	}
	return mdns.RcodeRefused
}

// fillVerdict copies the policy's verdict into the event, as the proxy
// does for a request.
func fillVerdict(ev *proxy.Event, v allowlists.Verdict) {
	ev.Decision, ev.Reason = "allow", v.Reason.String()
	if v.Allow {
		ev.Product = v.Product()
	} else {
		ev.Decision = "deny"
	}
	if r := v.Rule; r != nil {
		ev.Rule, ev.Source = r.Pattern(), r.Source
	}
}

// resolve answers from a --resolve pin, else asks the upstream.
func (qr *query) resolve(ctx context.Context, qtype uint16) (*mdns.Msg, error) {
	if addr, ok := qr.rules.Pins[qr.dest.Host]; ok {
		return pinned(qr.dest.Host, qtype, addr, qr.opts.MaxTTL), nil
	}
	return forward(ctx, qr.opts, mdns.Fqdn(qr.dest.Host), qtype)
}

// reply sizes the response for its transport, logs the decision, and
// only then remembers the addresses, adds them to the sets and sends it:
// a client that has the answer finds the set elements in place, and an
// answer whose line could not be written is never sent (fail closed).
func (s *Server) reply(w mdns.ResponseWriter, qr *query, resp *mdns.Msg) {
	resp.Compress = true
	opt := qr.req.IsEdns0()
	if opt != nil {
		resp.SetEdns0(ednsSize, false)
	}
	if qr.dq.Proto == "udp" {
		size := mdns.MinMsgSize
		if opt != nil {
			size = min(max(int(opt.UDPSize()), mdns.MinMsgSize), maxUDPSize)
		}
		resp.Truncate(size)
		qr.dq.Truncated = resp.Truncated
	}
	qr.dq.Rcode, qr.dq.Answers = rcodeName(resp.Rcode), len(resp.Answer)
	if err := s.proxy.RecordDNS(qr.ev); err != nil {
		w.WriteMsg(new(mdns.Msg).SetRcode(qr.req, mdns.RcodeServerFailure))
		return
	}
	if qr.ev.Decision != "deny" && resp.Rcode == mdns.RcodeSuccess {
		if addrs := handedOut(resp.Answer); len(addrs) > 0 {
			ttl := minTTL(resp.Answer)
			s.answers.Add(qr.dest.Host, addrs, ttl)
			s.fillSets(qr, addrs, ttl)
		}
	}
	w.WriteMsg(resp)
}

// fillSets adds addrs to the sets of the client's rules that name the host.
func (s *Server) fillSets(qr *query, addrs []netip.Addr, ttl time.Duration) {
	if s.sets == nil {
		return
	}
	names := SetsFor(qr.rules.Policy, qr.cl.Identity.Products, qr.dest.Host)
	if len(names) == 0 {
		return
	}
	if err := s.sets.Add(names, addrs, max(ttl, time.Second)); err != nil {
		s.warn(err)
	}
}

// loggedName is a name as the log shows it before it is known to be
// valid: the library's presentation form (\DDD for odd bytes), bounded.
func loggedName(name string) string {
	if len(name) > 1 && name[len(name)-1] == '.' {
		name = name[:len(name)-1]
	}
	if len(name) > maxLoggedName {
		name = name[:maxLoggedName]
	}
	return name
}

// typeName is the question's type for the log (A, TXT, TYPE65280), with
// its class in front when that is not IN (CH TXT).
func typeName(q mdns.Question) string {
	t := mdns.Type(q.Qtype).String()
	if q.Qclass != mdns.ClassINET {
		return mdns.Class(q.Qclass).String() + " " + t
	}
	return t
}

func rcodeName(rcode int) string {
	if s, ok := mdns.RcodeToString[rcode]; ok {
		return s
	}
	return "RCODE" + strconv.Itoa(rcode)
}

func addrOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.UDPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap.Addr().Unmap()
}
