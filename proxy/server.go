// Package proxy is egret's data path: listeners, client identification,
// destination extraction, the decision (allowlists.Policy.Decide plus the
// address guard), the decision log, and dial + splice.
package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/egret-proxy/egret/allowlists"
	"github.com/egret-proxy/egret/telemetry"
)

var noDeadline time.Time

// Server serves the explicit and transparent listeners with the
// current Rules.
type Server struct {
	log   *DecisionLog
	tel   *telemetry.Telemetry
	rules atomic.Pointer[Rules]

	active atomic.Int64 // client connections being served
	mu     sync.Mutex
	lns    []net.Listener
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup

	// originalDst finds where a redirected connection was going
	// (SO_ORIGINAL_DST); tests without netfilter replace it.
	originalDst func(net.Conn) (netip.AddrPort, error)

	// dns is what the DNS door answered (WithDNSAnswers); nil without one.
	dns DNSAnswers
}

// Option configures a Server.
type Option func(*Server)

// WithTelemetry makes the server trace and measure its decisions with t.
// Without it the server uses telemetry.Nop(): trace IDs, no export, no
// metrics.
func WithTelemetry(t *telemetry.Telemetry) Option {
	return func(s *Server) { s.tel = t }
}

// NewServer returns a server deciding with r and logging to log.
func NewServer(log *DecisionLog, r *Rules, opts ...Option) *Server {
	s := &Server{log: log, tel: telemetry.Nop(), conns: map[net.Conn]struct{}{}, originalDst: originalDst}
	for _, o := range opts {
		o(s)
	}
	s.SetRules(r)
	return s
}

// SetRules swaps in new rules; connections already open keep theirs for
// the request they are serving, and open tunnels are not touched.
func (s *Server) SetRules(r *Rules) {
	r.Limits = r.Limits.withDefaults()
	r.transport = newTransport(r, s.tel.ObserveDial)
	if old := s.rules.Swap(r); old != nil && old.transport != nil {
		old.transport.CloseIdleConnections()
	}
}

// Rules returns the rules in force.
func (s *Server) Rules() *Rules { return s.rules.Load() }

// Ready returns nil when the server can decide and log: a policy is
// loaded and the decision log is writable.
func (s *Server) Ready() error {
	if r := s.rules.Load(); r == nil || r.Policy == nil {
		return errors.New("no policy loaded")
	}
	return s.log.Err()
}

// ServeExplicit accepts proxy clients on l until l is closed.
func (s *Server) ServeExplicit(l net.Listener) error {
	s.tel.ListenerStarted(ListenerExplicit)
	return s.serve(l, s.serveExplicitConn, func(c net.Conn) {
		writeStatus(c, http.StatusServiceUnavailable, "", "egret: too many connections\n", true)
	})
}

// serve is the accept loop shared by the listeners: it caps concurrent
// connections (over the cap, refuse is called and the connection closed)
// and tracks them for Shutdown.
func (s *Server) serve(l net.Listener, handle func(net.Conn), refuse func(net.Conn)) error {
	s.mu.Lock()
	s.lns = append(s.lns, l)
	s.mu.Unlock()
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			if acceptRetryable(err) {
				time.Sleep(10 * time.Millisecond) // back off, keep serving
				continue
			}
			return err
		}
		if s.active.Add(1) > int64(s.rules.Load().Limits.MaxConns) {
			s.active.Add(-1)
			c.SetWriteDeadline(time.Now().Add(time.Second))
			refuse(c)
			c.Close()
			continue
		}
		s.track(c, true)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.active.Add(-1)
			defer s.track(c, false)
			defer c.Close()
			handle(c)
		}()
	}
}

// acceptRetryable reports whether an accept error passes: a timeout, the
// process or the system out of descriptors or memory (which connections
// closing will relieve; a client must not be able to end egret by opening
// too many), or a connection aborted before it was accepted.
func acceptRetryable(err error) bool {
	if isTimeout(err) {
		return true
	}
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func (s *Server) track(c net.Conn, add bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		s.conns[c] = struct{}{}
	} else {
		delete(s.conns, c)
	}
}

// Shutdown stops accepting, lets open connections finish until ctx is
// done, then closes the rest. It returns ctx.Err() if it had to.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	for _, l := range s.lns {
		l.Close()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		<-done
		return ctx.Err()
	}
}

// ActiveConns returns the number of client connections being served.
func (s *Server) ActiveConns() int64 { return s.active.Load() }

// outcome is a decision taken to the end: policy, mode, resolution and the
// address guard.
type outcome struct {
	decision string // allow, deny, would-deny
	reason   allowlists.Reason
	verdict  allowlists.Verdict
	addrs    []netip.Addr // checked addresses to dial; nil when the upstream proxy resolves
	err      error        // resolution failed: answer 502/504
}

func (o *outcome) proceed() bool { return o.decision != "deny" }

// decide applies the policy for client cl to d, then — for what may pass —
// resolves the name and checks every address with the guard. Policy comes
// first (an IP literal with no cidr rule is no-rule), the guard second
// (private-address, self), and the guard holds in report mode too.
func (s *Server) decide(ctx context.Context, r *Rules, cl *Client, d allowlists.Dest) outcome {
	v := r.Policy.Decide(cl.Identity, d)
	var addrs []netip.Addr
	var resolveErr error
	if !v.Allow && v.Reason == allowlists.ReasonNoRule && !d.IsIP() && r.Upstream == nil && cl.Identity.HasCIDRRules() {
		addrs, resolveErr = r.resolve(ctx, d)
		for _, a := range addrs {
			if v2 := r.Policy.Decide(cl.Identity, d.WithAddr(a)); v2.Allow || v2.Reason == allowlists.ReasonDenyEntry {
				v = v2
				break
			}
		}
	}
	o := outcome{decision: "allow", reason: v.Reason, verdict: v}
	if !v.Allow {
		if cl.Mode != ModeReport {
			o.decision = "deny"
			return o
		}
		o.decision = "would-deny"
	}
	if r.Upstream != nil && !d.IsIP() {
		return o
	}
	if addrs == nil && resolveErr == nil {
		addrs, resolveErr = r.resolve(ctx, d)
	}
	if resolveErr != nil {
		o.err = resolveErr
		return o
	}
	if o.decision == "allow" {
		if v = denyResolved(r, d, addrs, v); !v.Allow {
			o = outcome{decision: "deny", reason: v.Reason, verdict: v}
			if cl.Mode == ModeReport {
				o.decision = "would-deny"
			} else {
				return o
			}
		}
	}
	// Only an allowing cidr rule may open a guarded range: in report mode
	// the verdict may be a deny entry's, which must never open one.
	var opening *allowlists.Rule
	if v.Allow {
		opening = v.Rule
	}
	if why, _ := r.guardAll(addrs, d.Port, opening); why != allowlists.ReasonRule {
		return outcome{decision: "deny", reason: why, verdict: v}
	}
	o.addrs = addrs
	return o
}

// denyResolved turns an allow into a deny-entry deny when any address the
// name resolved to lies in a denied range: deny entries win over every
// allow rule, including one that matched the name.
func denyResolved(r *Rules, d allowlists.Dest, addrs []netip.Addr, v allowlists.Verdict) allowlists.Verdict {
	for _, a := range addrs {
		if rule := r.Policy.DenyEntry(d.WithAddr(a)); rule != nil {
			return allowlists.Verdict{Reason: allowlists.ReasonDenyEntry, Rule: rule}
		}
	}
	return v
}

// fill copies the outcome into the log event.
func (o *outcome) fill(ev *Event) {
	ev.Decision = o.decision
	ev.Reason = o.reason.String()
	if r := o.verdict.Rule; r != nil {
		ev.Rule, ev.Source = r.Pattern(), r.Source
		if o.verdict.Allow {
			ev.Product = r.Product
		}
	}
	if o.verdict.PathsUnenforced {
		ev.Paths = "unenforced"
	}
}

// dial connects to the decided destination: the checked addresses, or
// the upstream proxy. How long it took goes to the dial histogram.
func (s *Server) dial(ctx context.Context, r *Rules, d allowlists.Dest, o *outcome) (c net.Conn, ip netip.Addr, err error) {
	ctx, cancel := context.WithTimeout(ctx, r.Limits.DialTimeout)
	defer cancel()
	defer func(start time.Time) { s.tel.ObserveDial(time.Since(start), err) }(time.Now())
	dialer := &net.Dialer{}
	if r.Upstream != nil {
		c, err = r.dialViaUpstream(ctx, d.Host, d.Port, dialer)
		return c, netip.Addr{}, err
	}
	return dialChecked(ctx, o.addrs, d.Port, dialer)
}

func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap.Addr().Unmap()
}
