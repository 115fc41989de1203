package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	mdns "github.com/miekg/dns"
)

// ResolvConf is where the default upstream is read from.
var ResolvConf = "/etc/resolv.conf"

// DefaultUpstream returns the first nameserver of ResolvConf, as ip:port.
func DefaultUpstream() (string, error) {
	cfg, err := mdns.ClientConfigFromFile(ResolvConf)
	if err != nil {
		return "", fmt.Errorf("dns upstream: %w (set --dns-upstream)", err)
	}
	if len(cfg.Servers) == 0 {
		return "", fmt.Errorf("dns upstream: %s names no nameserver (set --dns-upstream)", ResolvConf)
	}
	return net.JoinHostPort(cfg.Servers[0], cfg.Port), nil
}

// forward asks the upstream for name and qtype, over UDP and again over
// TCP when the UDP answer is truncated. Only NOERROR and NXDOMAIN answers
// to the question asked come back; anything else is an error (the client
// gets SERVFAIL).
func forward(ctx context.Context, o *Options, name string, qtype uint16) (*mdns.Msg, error) {
	if o.Upstream == "" {
		return nil, errors.New("no upstream resolver")
	}
	ctx, cancel := context.WithTimeout(ctx, o.UpstreamTimeout)
	defer cancel()
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	m.SetEdns0(ednsSize, false)
	c := &mdns.Client{Net: "udp", UDPSize: ednsSize, Timeout: o.UpstreamTimeout}
	r, _, err := c.ExchangeContext(ctx, m, o.Upstream)
	if err == nil && r.Truncated {
		c.Net = "tcp"
		r, _, err = c.ExchangeContext(ctx, m, o.Upstream)
	}
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", o.Upstream, err)
	}
	if len(r.Question) != 1 || !strings.EqualFold(r.Question[0].Name, name) || r.Question[0].Qtype != qtype {
		return nil, fmt.Errorf("upstream %s: answered another question", o.Upstream)
	}
	if r.Rcode != mdns.RcodeSuccess && r.Rcode != mdns.RcodeNameError {
		return nil, fmt.Errorf("upstream %s: %s", o.Upstream, rcodeName(r.Rcode))
	}
	return r, nil
}
