// Package dns is egret's DNS door (DESIGN §8b): a resolver for the guarded
// segment that answers only the names the client's products allow.
//
// Every query is decided by the proxy's policy (allowlists.Policy.DecideName,
// with the proxy's identities: source address, then listener dns, then the
// default), answered only for A, AAAA, HTTPS and SVCB, forwarded upstream
// (or answered from a --resolve pin), and written as a decision line in the
// proxy's decision log. The addresses of an answer pass the proxy's address
// guard; the ech SvcParam is removed from HTTPS/SVCB records; TTLs are
// capped. What the door hands out is remembered for the transparent
// listener (Answers, a proxy.DNSAnswers) and added to the nftables sets of
// the rules that name the host (Sets).
package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/egret-proxy/egret/proxy"
	mdns "github.com/miekg/dns"
	"golang.org/x/net/netutil"
)

// Defaults of Options.
const (
	DefaultMaxTTL          = 300 * time.Second
	DefaultUpstreamTimeout = 2 * time.Second
	DefaultMaxInFlight     = 1000
	DefaultMaxTCPConns     = 256
)

// Options configure the door. A zero field takes its default.
type Options struct {
	// Upstream is the resolver allowed queries are forwarded to
	// (host:port, port 53 if none). If empty, the first nameserver of
	// /etc/resolv.conf.
	Upstream string
	// MaxTTL caps every TTL the door passes on, and so the life of the
	// set elements it adds (default 300s).
	MaxTTL time.Duration
	// NXDomain answers denied names with NXDOMAIN instead of REFUSED.
	// Refused query types always get REFUSED: NXDOMAIN would deny every
	// type of the name to a caching client.
	NXDomain bool
	// UpstreamTimeout bounds one exchange with the upstream (default 2s);
	// the client gets SERVFAIL after it.
	UpstreamTimeout time.Duration
	// MaxInFlight bounds the queries being decided or forwarded at once
	// (default 1000). Beyond it a query waits up to 100 ms for a slot,
	// then gets SERVFAIL without a decision line (as the proxy's
	// --max-conns closes without one), counted in Stats.Busy.
	MaxInFlight int
	// MaxTCPConns bounds the TCP connections served at once (default 256);
	// beyond it the listener stops accepting until one closes.
	MaxTCPConns int
}

func (o Options) withDefaults() Options {
	if o.MaxTTL <= 0 {
		o.MaxTTL = DefaultMaxTTL
	}
	if o.UpstreamTimeout <= 0 {
		o.UpstreamTimeout = DefaultUpstreamTimeout
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.MaxTCPConns <= 0 {
		o.MaxTCPConns = DefaultMaxTCPConns
	}
	return o
}

// SetAdder adds the addresses of an answer to named sets (Sets does, in
// an nftables table).
type SetAdder interface {
	// Add adds addrs to each of the sets (names of export.SetName; a set
	// of the other family, or one the table lacks, is skipped) with the
	// timeout ttl.
	Add(sets []string, addrs []netip.Addr, ttl time.Duration) error
}

// Server is the DNS door. It decides with the rules of the proxy server
// it was given, so a reload (proxy.Server.SetRules) reaches it at once.
type Server struct {
	proxy   *proxy.Server
	opts    atomic.Pointer[Options]
	answers *Answers
	sets    SetAdder // nil: no set filling
	slots   chan struct{}
	busy    atomic.Int64
	warn    func(error)

	mu      sync.Mutex
	servers []*mdns.Server
}

// Stats are the door's counters.
type Stats struct {
	// Busy counts the queries answered SERVFAIL because MaxInFlight were
	// being served.
	Busy int64
}

// Option configures a Server.
type Option func(*Server)

// WithAnswers makes the door remember its answers in a (one the proxy's
// transparent listener also holds, proxy.WithDNSAnswers) instead of a
// store of its own.
func WithAnswers(a *Answers) Option { return func(s *Server) { s.answers = a } }

// WithSets makes the door add the addresses it answers to the sets of the
// rules that name the host (Sets, for nft_sets).
func WithSets(sets SetAdder) Option { return func(s *Server) { s.sets = sets } }

// WithWarnings makes the door report errors that do not stop a query (a
// set that could not be written) to warn.
func WithWarnings(warn func(error)) Option { return func(s *Server) { s.warn = warn } }

// New returns a door deciding with p's rules.
func New(p *proxy.Server, o Options, opts ...Option) *Server {
	o = o.withDefaults()
	s := &Server{proxy: p, slots: make(chan struct{}, o.MaxInFlight), warn: func(error) {}}
	for _, opt := range opts {
		opt(s)
	}
	if s.answers == nil {
		s.answers = NewAnswers(0)
	}
	s.opts.Store(&o)
	return s
}

// SetOptions swaps in new options (on a reload). MaxInFlight and
// MaxTCPConns keep the values the door started with.
func (s *Server) SetOptions(o Options) {
	o = o.withDefaults()
	old := s.opts.Load()
	o.MaxInFlight, o.MaxTCPConns = old.MaxInFlight, old.MaxTCPConns
	s.opts.Store(&o)
}

// Answers is what the door handed out, for the transparent listener
// (proxy.WithDNSAnswers).
func (s *Server) Answers() *Answers { return s.answers }

// Stats returns the door's counters.
func (s *Server) Stats() Stats { return Stats{Busy: s.busy.Load()} }

// Listen opens UDP and TCP on addr (host:port). With port 0 both get the
// same port, the one the UDP socket was given.
func Listen(addr string) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, err
	}
	for try := 0; ; try++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, err
		}
		tcpAddr := net.JoinHostPort(host, strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port))
		l, err := net.Listen("tcp", tcpAddr)
		if err == nil {
			return pc, l, nil
		}
		pc.Close()
		if port != "0" || try == 10 {
			return nil, nil, fmt.Errorf("dns: tcp: %w", err)
		}
	}
}

// ServeUDP answers queries on pc until Shutdown.
func (s *Server) ServeUDP(pc net.PacketConn) error {
	return s.run(&mdns.Server{PacketConn: pc, Net: "udp", UDPSize: maxUDPSize, Handler: s.handler("udp"),
		MsgAcceptFunc: accept})
}

// ServeTCP answers queries on l until Shutdown; at most MaxTCPConns
// connections are served at once.
func (s *Server) ServeTCP(l net.Listener) error {
	n := s.opts.Load().MaxTCPConns
	return s.run(&mdns.Server{Listener: netutil.LimitListener(l, n), Net: "tcp", Handler: s.handler("tcp"),
		MsgAcceptFunc: accept, MaxTCPQueries: 128})
}

func (s *Server) run(srv *mdns.Server) error {
	s.mu.Lock()
	s.servers = append(s.servers, srv)
	s.mu.Unlock()
	err := srv.ActivateAndServe()
	if err != nil && errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Shutdown stops serving: the sockets close, queries being answered
// finish until ctx is done.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	servers := s.servers
	s.servers = nil
	s.mu.Unlock()
	var errs []error
	for _, srv := range servers {
		if err := srv.ShutdownContext(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *Server) handler(proto string) mdns.Handler {
	return mdns.HandlerFunc(func(w mdns.ResponseWriter, req *mdns.Msg) { s.serve(w, req, proto) })
}

// accept lets only queries with one question reach the handler: others
// (NOTIFY, UPDATE, responses, several questions) get NOTIMP or FORMERR
// from the library, or nothing, and no decision line: they ask for no
// name.
func accept(h mdns.Header) mdns.MsgAcceptAction {
	if opcode := int(h.Bits>>11) & 0xF; opcode == mdns.OpcodeNotify {
		return mdns.MsgRejectNotImplemented
	}
	return mdns.DefaultMsgAcceptFunc(h)
}
