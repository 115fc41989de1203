package proxy

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"

	"github.com/egret-proxy/egret/allowlists"
)

// resolve returns the addresses of d: the literal, the --resolve pin, or
// what the resolver answers (Rules.Resolver, else the system's), within
// the dial timeout: a resolver that never answers costs a client no more
// than an upstream that never answers.
func (r *Rules) resolve(ctx context.Context, d allowlists.Dest) ([]netip.Addr, error) {
	if d.IsIP() {
		return []netip.Addr{d.Addr}, nil
	}
	if a, ok := r.Pins[d.Host]; ok {
		return []netip.Addr{a}, nil
	}
	res := r.Resolver
	if res == nil {
		res = net.DefaultResolver
	}
	if t := r.Limits.DialTimeout; t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
	}
	addrs, err := res.LookupNetIP(ctx, "ip", d.Host)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", d.Host, err)
	}
	for i := range addrs {
		addrs[i] = addrs[i].Unmap()
	}
	return addrs, nil
}

// guardAll checks every address: a name whose answers mix public and
// guarded addresses is refused, not filtered, since such an answer is how
// DNS rebinding starts.
func (r *Rules) guardAll(addrs []netip.Addr, port uint16, rule *allowlists.Rule) (allowlists.Reason, netip.Addr) {
	for _, a := range addrs {
		if why := r.Guard.Check(a, port, rule); why != allowlists.ReasonRule {
			return why, a
		}
	}
	return allowlists.ReasonRule, netip.Addr{}
}

// dialChecked connects to the first of the checked addresses that answers,
// within the dial timeout. It dials addresses, never names, so what is
// connected to is what was checked.
func dialChecked(ctx context.Context, addrs []netip.Addr, port uint16, d *net.Dialer) (net.Conn, netip.Addr, error) {
	var errs []error
	for _, a := range addrs {
		c, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(a, port).String())
		if err == nil {
			return c, a, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, netip.Addr{}, errors.Join(errs...)
}

// dialViaUpstream opens a tunnel to host:port through the upstream proxy
// with CONNECT. The upstream proxy resolves the name; egret's policy has
// already decided it.
func (r *Rules) dialViaUpstream(ctx context.Context, host string, port uint16, d *net.Dialer) (net.Conn, error) {
	u := r.Upstream
	c, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, fmt.Errorf("upstream proxy %s: %w", u.Host, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	authority := net.JoinHostPort(host, strconv.Itoa(int(port)))
	req := "CONNECT " + authority + " HTTP/1.1\r\nHost: " + authority + "\r\n"
	if u.User != nil {
		pw, _ := u.User.Password()
		req += "Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(u.User.Username()+":"+pw)) + "\r\n"
	}
	if _, err := c.Write([]byte(req + "\r\n")); err != nil {
		c.Close()
		return nil, fmt.Errorf("upstream proxy %s: %w", u.Host, err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("upstream proxy %s: %w", u.Host, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		c.Close()
		return nil, fmt.Errorf("upstream proxy %s answered CONNECT %s with %s", u.Host, authority, resp.Status)
	}
	c.SetDeadline(noDeadline)
	if br.Buffered() > 0 {
		c.Close()
		return nil, fmt.Errorf("upstream proxy %s sent bytes before the tunnel opened", u.Host)
	}
	return c, nil
}
