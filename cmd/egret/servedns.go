package main

import (
	"fmt"
	"io"
	"net"
	"net/netip"

	"github.com/egret-proxy/egret/allowlists"
	"github.com/egret-proxy/egret/config"
	"github.com/egret-proxy/egret/dns"
	"github.com/egret-proxy/egret/proxy"
)

// dnsDoor is the DNS door of egret serve (--dns): its sockets, opened
// with the other listeners, then the door serving on them.
type dnsDoor struct {
	pc      net.PacketConn
	ln      net.Listener
	answers *dns.Answers
	sets    *dns.Sets
	door    *dns.Server
}

// listenDNS opens the door's UDP and TCP sockets, or returns nil when
// there is no door.
func listenDNS(cfg *config.Config) (*dnsDoor, error) {
	if cfg.DNS == "" {
		return nil, nil
	}
	pc, ln, err := dns.Listen(cfg.DNS)
	if err != nil {
		return nil, fmt.Errorf("dns listen %s: %w", cfg.DNS, err)
	}
	return &dnsDoor{pc: pc, ln: ln, answers: dns.NewAnswers(0)}, nil
}

// close closes the sockets of a door that never served.
func (d *dnsDoor) close() {
	if d != nil {
		d.pc.Close()
		d.ln.Close()
	}
}

// serverOptions are the proxy options the door adds: the transparent
// listener compares original addresses with the door's answers.
func (d *dnsDoor) serverOptions() []proxy.Option {
	if d == nil {
		return nil
	}
	return []proxy.Option{proxy.WithDNSAnswers(d.answers)}
}

// start opens the nft sets, builds the door on srv's rules and serves;
// the serving goroutines report to served.
func (d *dnsDoor) start(cfg *config.Config, srv *proxy.Server, served chan<- error, stderr io.Writer) error {
	opts, err := dnsOptions(cfg, srv.Rules(), stderr)
	if err != nil {
		return err
	}
	doorOpts := []dns.Option{dns.WithAnswers(d.answers), dns.WithWarnings(func(err error) {
		fmt.Fprintf(stderr, "egret: dns: %v\n", err)
	})}
	if cfg.NftSets != "" {
		if d.sets, err = dns.OpenSets(cfg.NftSets); err != nil {
			return err
		}
		if n, err := d.sets.Check(); err != nil {
			fmt.Fprintf(stderr, "egret: warning: %v; answers go into its sets once it is loaded\n", err)
		} else {
			fmt.Fprintf(stderr, "egret: DNS door fills the %d sets of table inet %s\n", n, cfg.NftSets)
		}
		doorOpts = append(doorOpts, dns.WithSets(d.sets))
	}
	d.door = dns.New(srv, opts, doorOpts...)
	go func() { served <- d.door.ServeUDP(d.pc) }()
	go func() { served <- d.door.ServeTCP(d.ln) }()
	up := opts.Upstream
	if up == "" {
		up = "none (only --resolve pins are answered)"
	}
	fmt.Fprintf(stderr, "egret: DNS door on %s (udp, tcp), upstream %s, max TTL %s, denied names get %s\n",
		d.ln.Addr(), up, opts.MaxTTL, cfg.DNSDeny)
	return nil
}

// reload gives the door the reloaded configuration's settings; the
// rules come with the proxy server's.
func (d *dnsDoor) reload(cfg *config.Config, rules *proxy.Rules, stderr io.Writer) error {
	if d == nil || d.door == nil {
		return nil
	}
	opts, err := dnsOptions(cfg, rules, stderr)
	if err != nil {
		return err
	}
	d.door.SetOptions(opts)
	return nil
}

// dnsOptions are the door's settings. Without dns_upstream the first
// nameserver of /etc/resolv.conf is the upstream; if there is none the
// door answers only pins. An upstream that is the door itself (a
// resolv.conf that names egret) is an error: every query would loop.
func dnsOptions(cfg *config.Config, rules *proxy.Rules, stderr io.Writer) (dns.Options, error) {
	o := dns.Options{Upstream: cfg.DNSUpstream, MaxTTL: cfg.DNSMaxTTL, NXDomain: cfg.DNSDeny == "nxdomain"}
	if o.Upstream == "" {
		up, err := dns.DefaultUpstream()
		if err != nil {
			fmt.Fprintf(stderr, "egret: warning: %v; the DNS door answers only --resolve pins\n", err)
			return o, nil
		}
		o.Upstream = up
	}
	if ap, err := netip.ParseAddrPort(o.Upstream); err == nil && rules.Guard.Check(ap.Addr(), ap.Port(), nil) == allowlists.ReasonSelf {
		return o, fmt.Errorf("dns upstream %s is egret's own DNS door (does /etc/resolv.conf name egret?): set --dns-upstream to the site's resolver", o.Upstream)
	}
	return o, nil
}
